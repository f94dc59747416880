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

import inspect
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine.config import Calibration
from ..engine.noise import UNIFORM, NoiseModel
from ..engine.runner import kernel_batch
from ..engine.template import initial_template
from ..qc.diagnose import conclude
from .grid import patch_grid
from .loader import as_movie
from .movie import Frames, check_reference, register_block, registration_inputs, resolve_min_mov
from .options import pw_options, rigid_options
from .pwrigid import pwrigid
from .result import base_dataset, finish, template_da
from .rigid import rigid
from .template import calibrate_for

__all__ = ["FORMAT_VERSION", "Corrector"]

#: Version of the file layout written by :meth:`Corrector.save`; a file of another
#: version is refused by :meth:`Corrector.load`.
FORMAT_VERSION = 1
_FORMAT_ATTR = "xnormcorre_corrector_format"

#: Keywords of rigid()/pwrigid() that are not registration options of the corrector.
_NOT_OPTIONS = ("movie", "template", "reference", "defects", "clip", "scan_phase")


def _defaults(fn) -> dict[str, Any]:
    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if k not in _NOT_OPTIONS and p.default is not inspect.Parameter.empty
    }


#: Every keyword of rigid()/pwrigid() with its default (template estimation included:
#: recorded in the results as the batch functions record them).
_RIGID_KW = _defaults(rigid)
_PW_KW = _defaults(pwrigid)


def _calibration_from_attrs(ds: xr.Dataset) -> Calibration | None:
    """The calibration a result (or a saved corrector) recorded, or None if it has none."""
    attrs = ds.attrs
    if "intensity_scale" not in attrs or "noise_model" not in attrs:
        return None
    mask = None
    if sc.DEFECT_MASK in ds:
        m = np.asarray(ds[sc.DEFECT_MASK].transpose(sc.DIM_Y, sc.DIM_X).values).astype(bool)
        mask = m if m.any() else None
    fitted = str(attrs["noise_model"]) == "poisson-gaussian"
    noise = (
        NoiseModel(float(attrs["noise_gain"]), float(attrs["noise_intercept"]), fitted) if fitted else UNIFORM
    )
    return Calibration(mask, noise, float(attrs["intensity_scale"]))


class Corrector:
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
    strides, overlaps, max_deviation_rigid, upsample_factor_grid
        Given ``strides``, the corrector is piecewise rigid, as :func:`xnormcorre.pwrigid`
        with these parameters; otherwise rigid.
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
    once, against the template, from the first frames the corrector sees
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
        if np.ndim(template) != 2:
            raise ValueError(f"template must be 2-D (y, x), got shape {np.shape(template)}")
        shape = tuple(int(s) for s in np.shape(template))
        self.template = vd.as_template(template, shape)
        self.shape: tuple[int, int] = shape  # type: ignore[assignment]
        self.piecewise = kw.get("strides") is not None
        defaults = _PW_KW if self.piecewise else _RIGID_KW
        unknown = sorted(set(kw) - set(defaults))
        if unknown:
            raise TypeError(f"Corrector got unexpected parameters {unknown}")
        self._kw = {**defaults, **kw}
        self._opts = (pw_options if self.piecewise else rigid_options)(shape, **self._kw)
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
        defaults = _PW_KW if method == sc.PWRIGID else _RIGID_KW
        kw = {k: v for k, v in params.items() if k in defaults}
        cal = _calibration_from_attrs(result)
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
        """Measure the calibration (sensor defects, noise model, scale) against the
        template from ``frames`` (``(time, y, x)``, up to 100 evenly spaced frames are
        read; the shifts are estimated on ``reference`` if given), and ``min_mov`` for
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
        self._cal = calibrate_for(source, self._opts, self.template, defects=self._defects)
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
        movie = as_movie(frames, name=name)
        shape = (movie.sizes[sc.DIM_Y], movie.sizes[sc.DIM_X])
        if shape != self.shape:
            raise ValueError(f"{name} must have the template's frame shape {self.shape} (y, x), got {shape}")
        return movie

    def correct(self, frames, *, reference=None) -> xr.Dataset:
        """Register ``frames`` to the template: a result Dataset as :func:`xnormcorre.rigid`
        (or :func:`xnormcorre.pwrigid`) returns it.

        Parameters
        ----------
        frames : DataArray, ndarray or frame reader, (time, y, x)
            Frames of the template's shape (anything :func:`xnormcorre.as_movie` takes);
            a dask-backed movie stays lazy.
        reference : DataArray or ndarray (time, y, x), optional
            Frames of the same sizes to estimate the shifts on (another channel, or a
            filtered copy); the shifts are applied to ``frames``.

        Returns
        -------
        xarray.Dataset
            ``corrected``, ``shifts``, ``correlation``, ``template``, the quality flags,
            ``defect_mask`` and the attrs of a :func:`xnormcorre.rigid` result
            (``template_source="user"``).
        """
        movie = self._movie(frames)
        vd.check_finite(movie, "frames")
        ref = check_reference(reference, movie)
        self._ensure(movie, ref)
        return _result(self, movie, ref)

    def lazy(self, movie, *, reference=None, chunks: int | None = None) -> xr.DataArray:
        """The corrected movie, dask-backed: each time chunk is registered when it is read.

        Reading frame ``i`` (``lazy.isel(time=i).values``) registers only the chunk that
        holds it; every chunk gives the same bits as :meth:`correct`.

        Parameters
        ----------
        movie : DataArray, ndarray or frame reader, (time, y, x)
        reference : optional
            As in :meth:`correct`.
        chunks : int, optional
            Frames per time chunk: default the movie's own chunks if it is dask-backed,
            otherwise the frames of one compiled kernel call
            (:func:`xnormcorre.engine.runner.kernel_batch`: 64 at 128², 16 at 256²).

        Notes
        -----
        A corrector that is not calibrated yet calibrates here, reading up to 100
        frames of ``movie`` (:meth:`calibrate`).
        """
        mv = self._movie(movie, "movie")
        ref = check_reference(reference, mv)
        self._ensure(mv, ref)
        if chunks is not None or mv.chunks is None:
            t = vd.integer(chunks, "chunks") if chunks is not None else kernel_batch(self.shape)
            mv = mv.chunk({sc.DIM_TIME: t})
            ref = None if ref is None else ref.chunk({sc.DIM_TIME: t})
        params = self._params(mv.sizes[sc.DIM_TIME])
        out = _apply(self, mv, ref, params)[0]
        da = xr.DataArray(
            out,
            coords=dict(mv.coords),
            name=sc.CORRECTED,
            attrs=sc.corrected_attrs(mv.attrs.get("units", "a.u."), _comment(self)),
        )
        return da

    # ------------------------------------------------------------------ single frames
    def _registrar(self, frame):
        if self._fast is None:
            if self._cal is None or (self._opts.border == "min" and self._min_mov is None):
                f = np.asarray(frame)
                if f.shape != self.shape:
                    raise ValueError(f"frame must have the template's shape {self.shape}, got {f.shape}")
                self._ensure(self._movie(f[None], "frame"), None)
            from ..engine.fast import FrameRegistrar

            self._fast = FrameRegistrar(self._params(1), self.template)
        return self._fast

    def shift(self, frame: np.ndarray) -> np.ndarray:
        """The displacement of one frame's content relative to the template (the fast path).

        NumPy in, NumPy out: no labels and no checks beyond the frame's shape and dtype
        (a frame holding NaN gives NaN shifts), compiled once per frame shape.

        Parameters
        ----------
        frame : ndarray (y, x)
            One frame of the template's shape, integer or float.

        Returns
        -------
        ndarray
            ``(2,)`` float32 shift ``(y, x)`` (rigid), or ``(patch_y, patch_x, 2)`` patch
            shifts (piecewise rigid); ``frame(r) ≈ template(r - shift)``.
        """
        return (self._fast or self._registrar(frame)).shift(frame)

    def correct_frame(
        self, frame: np.ndarray, *, reference: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame registered and corrected (the fast path, as :meth:`shift`).

        Parameters
        ----------
        frame : ndarray (y, x)
            The frame to correct.
        reference : ndarray (y, x), optional
            The same frame in another channel (or filtered) to estimate the shift on;
            the shift is then applied to ``frame``.

        Returns
        -------
        corrected : ndarray (y, x) float32
            The frame moved by ``-shift`` (read-only).
        shift : ndarray
            As returned by :meth:`shift`.
        """
        reg = self._fast or self._registrar(frame if reference is None else reference)
        out, shift, _ = reg.correct(frame, reference)
        return out, shift

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the corrector (template, parameters, calibration) to a NetCDF file.

        The file is written next to ``path`` under a temporary name and then renamed,
        so a failed write leaves no partial file.  An existing file is replaced only
        with ``overwrite=True``.  Returns the path.
        """
        target = Path(path)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        ds = self._to_dataset()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
        try:
            ds.to_netcdf(tmp)
            if overwrite:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)  # fails if the target appeared meanwhile: never overwritten
                os.unlink(tmp)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return target

    def _to_dataset(self) -> xr.Dataset:
        ds = xr.Dataset()
        ds[sc.TEMPLATE] = xr.DataArray(
            self.template, dims=(sc.DIM_Y, sc.DIM_X), attrs=sc.template_attrs("a.u.", "user")
        )
        attrs: dict[str, Any] = {
            _FORMAT_ATTR: FORMAT_VERSION,
            "method": self.method,
            "parameters": json.dumps(
                {k: sc.netcdf_safe(v) for k, v in self.parameters.items()}, sort_keys=True
            ),
            "calibrated": int(self.calibrated),
            "defects": "mask"
            if isinstance(self._defects, np.ndarray)
            else ("find" if self._defects else "none"),
        }
        mask = self._defects if isinstance(self._defects, np.ndarray) else None
        if self._cal is not None:
            mask = self._cal.defects
            attrs.update(
                noise_model="poisson-gaussian" if self._cal.noise.fitted else "uniform",
                noise_gain=float(self._cal.noise.gain),
                noise_intercept=float(self._cal.noise.intercept),
                intensity_scale=float(self._cal.scale),
                n_defects=self._cal.n_defects,
            )
        if mask is not None or self._cal is not None:
            m = np.zeros(self.shape, np.int8)
            if mask is not None:
                m[np.asarray(mask, bool)] = 1
            ds[sc.DEFECT_MASK] = xr.DataArray(m, dims=(sc.DIM_Y, sc.DIM_X), attrs=dict(sc.DEFECT_MASK_ATTRS))
        attrs.update(sc.package_versions())
        ds.attrs = attrs
        return ds

    @classmethod
    def load(cls, path: str | os.PathLike) -> Corrector:
        """Read a corrector written by :meth:`save`.

        A file of another format version (or not written by :meth:`save`) raises one
        ``ValueError`` saying so.
        """
        with xr.open_dataset(path) as f:
            ds = f.load()
        version = ds.attrs.get(_FORMAT_ATTR)
        if version is None:
            raise ValueError(f"{path} is not a saved xnormcorre Corrector (no {_FORMAT_ATTR!r} attribute)")
        if int(version) != FORMAT_VERSION:
            raise ValueError(
                f"{path} was saved in Corrector format version {int(version)} (xnormcorre "
                f"{ds.attrs.get('xnormcorre_version', 'unknown')}); this xnormcorre reads version "
                f"{FORMAT_VERSION}: make it again with Corrector.from_result(result) or Corrector(template, ...)"
            )
        params = sc.parameters_from_attrs(ds.attrs)
        clip = bool(params.pop("clip", True))
        how = ds.attrs.get("defects", "find")
        cal = _calibration_from_attrs(ds) if int(ds.attrs.get("calibrated", 0)) else None
        defects = np.asarray(ds[sc.DEFECT_MASK].values, bool) if how == "mask" else how == "find"
        self = cls.__new__(cls)
        self._setup(ds[sc.TEMPLATE].values, params, defects=defects, clip=clip, calibration=cal)
        return self


# ---------------------------------------------------------------------- the result Dataset
def _comment(corr: Corrector) -> str:
    return (sc.PW_COMMENT if corr.piecewise else sc.RIGID_COMMENT) + corr._opts.border


def _apply(corr: Corrector, movie: xr.DataArray, ref: xr.DataArray | None, params):
    """``apply_ufunc`` of the registration over time chunks, as the batch functions run it."""
    if corr.piecewise:
        ny, nx = params.grid_shape
        shift_dims = [[sc.DIM_AXIS], [*sc.PATCH_DIMS, sc.DIM_AXIS]]
        shapes = [(2,), (ny, nx, 2)]
        sizes = {sc.DIM_AXIS: 2, "patch_y": ny, "patch_x": nx}
    else:
        shift_dims, shapes, sizes = [[sc.DIM_AXIS]], [(2,)], {sc.DIM_AXIS: 2}
    return xr.apply_ufunc(
        register_block,
        *registration_inputs(movie, ref),
        input_core_dims=[[sc.DIM_Y, sc.DIM_X], [], *([[sc.DIM_Y, sc.DIM_X]] * (0 if ref is None else 1))],
        output_core_dims=[[sc.DIM_Y, sc.DIM_X], *shift_dims, []],
        kwargs={"template": corr.template, "params": params, "shift_shapes": shapes},
        dask="parallelized",
        output_dtypes=[np.float32] * (2 + len(shapes)),
        dask_gufunc_kwargs={"output_sizes": sizes},
    )


def _result(corr: Corrector, movie: xr.DataArray, ref: xr.DataArray | None) -> xr.Dataset:
    """The result Dataset of :meth:`Corrector.correct`, built as rigid()/pwrigid() build theirs."""
    opts = corr._opts
    params = corr._params(movie.sizes[sc.DIM_TIME])
    tmpl_da = template_da(movie, corr.template, "user")
    outputs = _apply(corr, movie, ref, params)
    min_mov = corr._min_mov if opts.border == "min" else opts.min_mov
    ds = base_dataset(movie, outputs[0], outputs[-1], tmpl_da, _comment(corr))
    run: dict[str, Any] = {"max_shifts": opts.max_shifts}
    if corr.piecewise:
        rigid_shifts, pshifts = outputs[1], outputs[2]
        ds = ds.assign_coords(patch_grid(corr.shape, opts.strides, opts.overlaps).coords)
        ds[sc.SHIFTS] = xr.DataArray(pshifts, attrs=dict(sc.PW_SHIFT_ATTRS))
        ds[sc.RIGID_SHIFTS] = xr.DataArray(
            rigid_shifts, attrs=sc.with_frame_size(sc.RIGID_SHIFTS_ATTRS, corr.shape)
        )
        run.update(
            strides=opts.strides,
            overlaps=opts.overlaps,
            max_deviation_rigid=opts.max_deviation_rigid,
            upsample_factor=opts.upsample_factor,
            upsample_factor_grid=opts.upsample_factor_grid,
            frames_per_split=opts.frames_per_split,
            num_splits_to_process_rig=opts.num_splits_to_process,
            niter_rig=opts.niter,
            num_splits_to_process_els=opts.num_splits_to_process_els,
            niter_els=opts.niter_els,
        )
        clip = params.rigid.clip
    else:
        ds[sc.SHIFTS] = xr.DataArray(outputs[1], attrs=sc.with_frame_size(sc.SHIFT_ATTRS, corr.shape))
        run.update(
            upsample_factor=opts.upsample_factor,
            frames_per_split=opts.frames_per_split,
            num_splits_to_process=opts.num_splits_to_process,
            niter=opts.niter,
        )
        clip = params.clip
    run.update(
        max_template_frames=opts.max_template_frames,
        min_mov=min_mov,
        border=opts.border,
        batch_size=params.batch_size,
        seed=opts.seed,
        clip=clip,
        scan_phase=None,  # a corrector takes frames as they are (correct the scan phase first)
        **opts.estimator(),
    )
    ds = finish(ds, corr.method, run, movie, ref, tmpl_da, opts.max_shifts)
    return conclude(ds, corr._cal, None, opts.max_shifts)
