"""A reusable corrector: ``xnormcorre.Corrector`` (a template, its parameters, compiled kernels).

A :class:`Corrector` registers any later frames to a fixed template with fixed
parameters -- those of a finished run (:meth:`Corrector.from_result`) or given -- so
that a user need not carry the template and the parameters from call to call:

* :meth:`Corrector.correct` -- a movie in, a result Dataset out, the same bits as
  :func:`xnormcorre.rigid` / :func:`xnormcorre.pwrigid` with ``template=`` and the same
  calibration;
* :meth:`Corrector.shift` / :meth:`Corrector.correct_frame` -- one frame in, NumPy out,
  at millisecond latency (:class:`xnormcorre.engine.fast.FrameRegistrar`);
* :meth:`Corrector.lazy` -- a dask-backed corrected movie registered chunk by chunk on
  access (a viewer's frame ``i`` registers only the chunk that holds it);
* :meth:`Corrector.save` / :meth:`Corrector.load` -- a small NetCDF file.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine.config import Calibration
from ..engine.template import initial_template
from .corrector_file import (
    FORMAT_VERSION,
    calibration_from_attrs,
    corrector_dataset,
    read_corrector,
    write_atomically,
)
from .corrector_frames import SingleFrames
from .corrector_run import PW_KEYWORDS, RIGID_KEYWORDS, Movies
from .loader import as_movie
from .movie import Frames, check_reference, resolve_min_mov
from .options import pw_options, rigid_options
from .template import calibrate_for

__all__ = ["FORMAT_VERSION", "Corrector"]


def _refuse_volume(name: str, shape: tuple) -> None:
    """A Corrector registers (y, x) frames: refuse a volume, naming the alternatives."""
    want = "2-D (y, x)" if name == "template" else "3-D (time, y, x)"
    raise ValueError(
        f"{name} must be {want}: a Corrector registers (y, x) frames; got shape {tuple(shape)}, a volume.  "
        "Register a "
        "volumetric movie (time, z, y, x) with xnormcorre.rigid(movie, max_shifts=(z, y, x), template=...) "
        "(3-D rigid), or plane by plane with one Corrector per plane (template.isel(z=i))"
    )


class Corrector(Movies, SingleFrames):
    """Register frames to a fixed template with fixed parameters, again and again.

    Parameters
    ----------
    template : DataArray or ndarray (y, x)
        The template (e.g. ``res.template`` of a run, or :func:`xnormcorre.estimate_template`).
    max_shifts, upsample_factor, border, min_mov, batch_size, phase_corr, smooth_sigma, taper, clip
        As in :func:`xnormcorre.rigid`.
    defects : bool or DataArray or ndarray (y, x)
        Sensor defects left out of the estimate: found in the frames the corrector is
        calibrated on (True), none (False) or a boolean mask.
    strides, overlaps, max_deviation_rigid, upsample_factor_grid, refine_patches
        Given ``strides``, the corrector is piecewise rigid, as :func:`xnormcorre.pwrigid`
        with these parameters (``refine_patches=None``: pwrigid's default); otherwise rigid.
    calibration : xnormcorre.engine.config.Calibration, optional
        The movie's calibration (sensor defects, noise model, intensity scale), e.g.
        from :func:`xnormcorre.engine.template.initial_template`; default: measured
        from the first frames corrected (see Notes).

    Notes
    -----
    **Calibration.**  The registration weights pixels by the movie's noise model,
    leaves out its sensor defects and scales it by a power of two
    (the calibration of :func:`xnormcorre.rigid`).  A corrector made by
    :meth:`from_result` uses the run's recorded calibration; otherwise it is measured
    once from the first frames the corrector sees (on those frames alone, registered to
    their own first template, as the batch functions measure it)
    (:meth:`calibrate`, or the first call of :meth:`correct`, :meth:`lazy`,
    :meth:`shift` or :meth:`correct_frame`) and kept.  A single frame gives no noise
    model (uniform weights) and finds no defects: call :meth:`calibrate` with a
    hundred frames or more before a stream of single frames.  ``border="min"`` without
    ``min_mov`` takes the floor of those first frames, likewise.

    **Same bits.**  ``Corrector(template, **kw).correct(movie)`` is
    ``xnormcorre.rigid(movie, template=template, **kw)`` (``pwrigid`` with ``strides``)
    bit for bit when the corrector is calibrated on ``movie`` (its first call), and
    ``Corrector.from_result(res).correct(movie)`` reproduces ``res`` on the movie
    ``res`` was computed from.  The single-frame path (:meth:`shift`,
    :meth:`correct_frame`) runs the same kernels on a batch of one frame and agrees
    with :meth:`correct` to float32 rounding.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=40, shape=(64, 64), max_shift=3, seed=0)
    >>> res = xnormcorre.rigid(movie, max_shifts=6)
    >>> corr = xnormcorre.Corrector.from_result(res)
    >>> out = corr.correct(movie[:20])
    >>> bool((out.corrected == res.corrected[:20]).all())
    True
    >>> corr.shift(movie[5].values).shape
    (2,)
    """

    def __init__(
        self,
        template: xr.DataArray | np.ndarray,
        *,
        max_shifts: int | tuple[int, int] = (6, 6),
        upsample_factor: int = 10,
        border: str = "copy",
        min_mov: float | None = None,
        batch_size: int | None = None,
        phase_corr: bool = True,
        smooth_sigma: float = 1.15,
        taper: float | None = None,
        defects: bool | xr.DataArray | np.ndarray = True,
        clip: bool = True,
        strides: int | tuple[int, int] | None = None,
        overlaps: int | tuple[int, int] = (32, 32),
        max_deviation_rigid: int | tuple[int, int] = 3,
        upsample_factor_grid: int = 4,
        refine_patches: bool | None = None,
        calibration: Calibration | None = None,
    ):
        kw: dict[str, Any] = {
            "max_shifts": max_shifts,
            "upsample_factor": upsample_factor,
            "border": border,
            "min_mov": min_mov,
            "batch_size": batch_size,
            "phase_corr": phase_corr,
            "smooth_sigma": smooth_sigma,
            "taper": taper,
        }
        if strides is not None:
            kw.update(
                strides=strides,
                overlaps=overlaps,
                max_deviation_rigid=max_deviation_rigid,
                upsample_factor_grid=upsample_factor_grid,
            )
            if refine_patches is not None:  # None: pwrigid's default
                kw["refine_patches"] = refine_patches
        if calibration is not None and not isinstance(calibration, Calibration):
            raise TypeError(
                "calibration must be an xnormcorre.engine.config.Calibration (or None: measured from the "
                f"first frames), got {type(calibration).__name__}"
            )
        self._setup(template, kw, defects=defects, clip=clip, calibration=calibration)

    # ------------------------------------------------------------------ construction
    def _setup(self, template, kw: dict[str, Any], *, defects, clip, calibration=None) -> None:
        if isinstance(template, xr.DataArray) and set(template.dims) == {sc.DIM_Y, sc.DIM_X}:
            template = template.transpose(sc.DIM_Y, sc.DIM_X)
        if np.ndim(template) == 3:
            _refuse_volume("template", np.shape(template))
        if np.ndim(template) != 2:
            raise ValueError(f"template must be 2-D (y, x), got shape {np.shape(template)}")
        shape = tuple(int(s) for s in np.shape(template))
        self.template = vd.as_template(template, shape)
        self.shape: tuple[int, int] = shape  # type: ignore[assignment]
        self.piecewise = kw.get("strides") is not None
        defaults = PW_KEYWORDS if self.piecewise else RIGID_KEYWORDS
        unknown = sorted(set(kw) - set(defaults))
        if unknown:
            raise TypeError(f"Corrector got unexpected parameters {unknown}")
        self._kw = {**defaults, **kw}
        self._opts = (pw_options if self.piecewise else rigid_options)(shape, **self._kw)
        if self.piecewise:  # a flag read back from attrs is 0/1
            self._kw["refine_patches"] = self._opts.refine_patches
        self.clip = vd.check_bool(clip, "clip")
        self._defects = vd.check_defects(defects, shape)
        self._cal: Calibration | None = calibration
        self._min_mov: float | None = self._opts.min_mov
        self._fast = None

    @classmethod
    def from_frames(cls, frames, **kwargs: Any) -> Corrector:
        """A corrector whose template is estimated from ``frames`` alone (the start of a
        stream), with the calibration measured on them.

        The initial template of the batch functions
        (:func:`xnormcorre.engine.template.initial_template`) over every frame given:
        the densest group of mutually similar frames, registered, averaged and centred
        on the range of their positions, then a noise-weighted pass.  For a whole
        movie :func:`xnormcorre.rigid` (or :func:`xnormcorre.estimate_template`) gives
        a better template.

        Parameters
        ----------
        frames : DataArray, ndarray or frame reader, (time, y, x)
            The frames (e.g. the first 200 of a recording).
        **kwargs
            The parameters of :class:`Corrector` (not ``template`` or ``calibration``).
            ``border="min"`` without ``min_mov`` takes the minimum of ``frames``.
        """
        for name in ("template", "calibration"):
            if name in kwargs:
                raise TypeError(f"Corrector.from_frames() got an unexpected keyword argument {name!r}")
        if len(getattr(frames, "shape", ())) == 4:
            _refuse_volume("frames", frames.shape)
        movie = as_movie(frames, name="frames")
        shape = (movie.sizes[sc.DIM_Y], movie.sizes[sc.DIM_X])
        vd.check_finite(movie, "frames")
        probe = cls(np.zeros(shape, np.float32), **{**kwargs, "defects": False})  # validates the parameters
        if probe._opts.border == "min" and probe._opts.min_mov is None:
            kwargs["min_mov"] = resolve_min_mov(movie, None)
        n = movie.sizes[sc.DIM_TIME]
        rigid = probe._opts.rigid_params(shape, n, border="copy")
        defects = vd.check_defects(kwargs.get("defects", True), shape)
        est = initial_template(Frames(movie), rigid, n_init=n, defects=defects)
        return cls(est.template, calibration=est.calibration, **kwargs)

    @classmethod
    def from_result(cls, result: xr.Dataset) -> Corrector:
        """A corrector with the template, parameters and calibration of a finished run.

        Parameters
        ----------
        result : xarray.Dataset
            The result of :func:`xnormcorre.rigid` or :func:`xnormcorre.pwrigid` (also
            read back from a file): its ``template``, the parameters recorded in its
            attrs (:func:`xnormcorre.parameters_from_attrs`) and its calibration
            (``defect_mask`` and the ``noise_*`` and ``intensity_scale`` attrs).
        """
        if not isinstance(result, xr.Dataset) or sc.TEMPLATE not in result:
            raise TypeError(
                "result must be the Dataset returned by xnormcorre.rigid or xnormcorre.pwrigid "
                f"(with a 'template' variable), got {type(result).__name__}"
            )
        method = result.attrs.get("method")
        if method not in (sc.RIGID, sc.PWRIGID):
            raise ValueError(f"result attrs 'method' must be 'rigid' or 'pwrigid', got {method!r}")
        params = sc.parameters_from_attrs(result.attrs)
        defaults = PW_KEYWORDS if method == sc.PWRIGID else RIGID_KEYWORDS
        kw = {k: v for k, v in params.items() if k in defaults}
        cal = calibration_from_attrs(result)
        tmpl = result[sc.TEMPLATE].transpose(sc.DIM_Y, sc.DIM_X)
        self = cls.__new__(cls)
        defects = True if cal is None else (cal.defects if cal.defects is not None else False)
        self._setup(tmpl.values, kw, defects=defects, clip=bool(params.get("clip", True)), calibration=cal)
        if method == sc.PWRIGID and not self.piecewise:
            raise ValueError("the piecewise-rigid result records no strides")
        return self

    # ------------------------------------------------------------------ properties
    @property
    def method(self) -> str:
        """``"rigid"`` or ``"pwrigid"``."""
        return sc.PWRIGID if self.piecewise else sc.RIGID

    @property
    def parameters(self) -> dict[str, Any]:
        """The keyword arguments of :func:`xnormcorre.rigid` / :func:`xnormcorre.pwrigid`
        this corrector registers with (``clip`` included; ``min_mov`` once resolved)."""
        out = dict(self._kw, clip=self.clip)
        if self._min_mov is not None:
            out["min_mov"] = self._min_mov
        return out

    @property
    def calibrated(self) -> bool:
        """Whether the calibration (noise model, defects, scale) is known."""
        return self._cal is not None

    def __repr__(self) -> str:
        h, w = self.shape
        state = "calibrated" if self.calibrated else "not calibrated yet"
        return (
            f"<xnormcorre.Corrector {self.method} {h}x{w}, max_shifts={self._opts.max_shifts}, "
            f"border={self._opts.border!r}, {state}>"
        )

    def update_template(self, template: xr.DataArray | np.ndarray) -> Corrector:
        """Register to ``template`` (same shape) from now on, keeping the parameters and
        the calibration (online template updates); nothing is compiled again.  Returns
        the corrector."""
        tmpl = vd.as_template(template, self.shape)
        if self._fast is not None:
            self._fast.set_template(tmpl)
        self.template = tmpl
        return self

    # ------------------------------------------------------------------ calibration
    def calibrate(self, frames, *, reference=None) -> Corrector:
        """Measure the calibration (sensor defects, noise model, scale) on ``frames``
        (``(time, y, x)``, up to 100 evenly spaced frames are read, registered to their
        own first template as :func:`xnormcorre.rigid` measures it; the shifts are
        estimated on ``reference`` if given), and ``min_mov`` for
        ``border="min"`` if unset.  Replaces any earlier calibration.  Returns the corrector.
        """
        movie = self._movie(frames)
        ref = check_reference(reference, movie)
        self._calibrate(movie, ref)
        return self

    def _calibrate(self, movie: xr.DataArray, ref: xr.DataArray | None) -> None:
        source = movie if ref is None else ref
        if self._opts.border == "min" and self._opts.min_mov is None:
            self._min_mov = resolve_min_mov(movie, None)
        self._cal = calibrate_for(source, self._opts, defects=self._defects)
        self._fast = None

    def _ensure(self, movie: xr.DataArray, ref: xr.DataArray | None) -> None:
        if self._cal is None:
            self._calibrate(movie, ref)
        elif self._opts.border == "min" and self._min_mov is None:
            self._min_mov = resolve_min_mov(movie, None)
            self._fast = None

    def _params(self, n_frames: int):
        """The calibrated engine parameters of a pass over ``n_frames`` frames (as the batch functions build them)."""
        fill = self._min_mov or 0.0
        if self.piecewise:
            p = self._opts.pw_params(self.shape, n_frames, fill_min=fill)
            p = replace(p, rigid=replace(p.rigid, clip=self.clip))
        else:
            p = replace(self._opts.rigid_params(self.shape, n_frames, fill_min=fill), clip=self.clip)
        return p.calibrated(self._cal)

    # ------------------------------------------------------------------ movies
    def _movie(self, frames, name: str = "frames") -> xr.DataArray:
        if len(getattr(frames, "shape", ())) == 4:
            _refuse_volume(name, frames.shape)
        movie = as_movie(frames, name=name)
        shape = (movie.sizes[sc.DIM_Y], movie.sizes[sc.DIM_X])
        if shape != self.shape:
            raise ValueError(f"{name} must have the template's frame shape {self.shape} (y, x), got {shape}")
        return movie

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the corrector (template, parameters, calibration) to a NetCDF file.

        The file is written next to ``path`` under a temporary name and then renamed,
        so a failed write leaves no partial file.  An existing file is replaced only
        with ``overwrite=True``.  Returns the path.
        """
        ds = corrector_dataset(self.template, self.method, self.parameters, self._defects, self._cal)
        return write_atomically(ds, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Corrector:
        """Read a corrector written by :meth:`save`.

        A file of another format version (or not written by :meth:`save`) raises one
        ``ValueError`` saying so.
        """
        template, params, defects, clip, cal = read_corrector(path)
        self = cls.__new__(cls)
        self._setup(template, params, defects=defects, clip=clip, calibration=cal)
        return self
