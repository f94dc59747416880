"""Labeled rigid registration: ``xnormcorre.rigid`` (xarray in, xarray out)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import xarray as xr

from .. import conventions as cv
from ..engine import api as eng
from .qc import quality_flags

__all__ = ["rigid", "estimate_template", "resolve_min_mov"]

_MIN_MOV_FRAMES = 400


def resolve_min_mov(movie: xr.DataArray, min_mov: float | None) -> float:
    """The seed's ``min_mov``: the minimum of the first (up to) 400 frames."""
    if min_mov is not None:
        return float(min_mov)
    head = movie.isel(time=slice(0, _MIN_MOV_FRAMES))
    return float(np.nanmin(np.asarray(head.min(("y", "x")))))


def _alias(value, alias, name: str, alias_name: str, default):
    if alias is not None:
        if value is not None and value != alias:
            raise ValueError(f"give either {name} or its alias {alias_name}, not both")
        return alias
    return default if value is None else value


def _check_common(
    movie: xr.DataArray,
    *,
    template,
    max_shifts,
    upsample_factor,
    frames_per_split,
    num_splits_to_process,
    niter,
    batch_size,
    seed,
    border,
    smooth_sigma,
    taper,
    min_mov,
) -> SimpleNamespace:
    """Validate the parameters shared by rigid and piecewise-rigid registration."""
    shape = (movie.sizes["y"], movie.sizes["x"])
    out = SimpleNamespace(
        max_shifts=cv.check_max_shifts(max_shifts, shape),
        upsample_factor=cv.integer(upsample_factor, "upsample_factor"),
        frames_per_split=cv.integer(frames_per_split, "frames_per_split"),
        num_splits_to_process=cv.integer(num_splits_to_process, "num_splits_to_process", allow_none=True),
        niter=cv.integer(niter, "niter", minimum=0),
        batch_size=cv.integer(batch_size, "batch_size", allow_none=True),
        seed=cv.integer(seed, "seed", minimum=0),
        border=cv.check_border(border),
    )
    if smooth_sigma is None or smooth_sigma < 0:
        raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma!r}")
    if taper is not None and taper < 0:
        raise ValueError(f"taper must be >= 0 or None, got {taper!r}")
    out.template = None if template is None else cv.as_template(template, shape)
    cv.check_finite(movie)
    out.min_mov = resolve_min_mov(movie, min_mov)
    if not np.isfinite(out.min_mov):
        raise ValueError(f"min_mov must be finite, got {out.min_mov!r}")
    return out


def _base_dataset(movie: xr.DataArray, corrected, corr, tmpl_da: xr.DataArray, comment: str) -> xr.Dataset:
    """Result Dataset skeleton: input coords, ``axis``, corrected, template, correlation."""
    ds = xr.Dataset(coords=dict(movie.coords))
    ds = ds.assign_coords(axis=("axis", ["y", "x"], {"long_name": "displacement component", "units": "1"}))
    ds["corrected"] = xr.DataArray(
        corrected,
        attrs={
            "long_name": "motion-corrected movie",
            "units": movie.attrs.get("units", "a.u."),
            "comment": comment,
        },
    )
    ds["template"] = tmpl_da.variable
    ds["correlation"] = xr.DataArray(
        corr,
        attrs={
            "long_name": "Pearson correlation of the corrected frame with the template",
            "units": "1",
        },
    )
    return ds


def _engine_params(movie: xr.DataArray, **kw) -> eng.RigidParams:
    shape = (movie.sizes["y"], movie.sizes["x"])
    return eng.make_rigid_params(shape, n_frames=movie.sizes["time"], **kw)


class _Frames:
    """Time-indexable view of a DataArray that reads only the requested frames."""

    def __init__(self, movie: xr.DataArray):
        self._movie = movie
        self.shape = tuple(movie.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        return np.asarray(self._movie.isel(time=key).values)


def _source(movie: xr.DataArray) -> str | None:
    return movie.encoding.get("source") or movie.attrs.get("source")


def estimate_template(
    movie: xr.DataArray | np.ndarray,
    *,
    max_shifts: int | tuple[int, int] = (6, 6),
    upsample_factor: int = 10,
    frames_per_split: int = 1000,
    num_splits_to_process: int | None = None,
    niter: int = 1,
    seed: int = 0,
    phase_corr: bool = True,
    smooth_sigma: float = 1.15,
    taper: float | None = None,
    batch_size: int | None = None,
    max_template_frames: int | None = 2000,
) -> xr.DataArray:
    """Estimate a registration template from a movie (NoRMCorre/CaImAn batch scheme).

    The initial template is the median of up to 100 evenly spaced frames, registered
    to that median and averaged.  Then, ``niter`` times, the frames of each split of
    ``frames_per_split`` consecutive frames are registered to the current template and
    the new template is the median of the split means.  With
    ``num_splits_to_process`` only that many splits, drawn without replacement by
    ``numpy.random.default_rng(seed)``, are used per iteration (deterministic).
    When ``num_splits_to_process`` is None, ``max_template_frames`` bounds the work:
    at most ``max(1, max_template_frames // frames_per_split)`` splits are drawn
    (``None`` registers all splits, the jnormcorre/CaImAn behaviour).  After each
    step the template is moved to the centre of the range of frame positions.
    Frames are read one batch at a time, so memory stays bounded for lazy movies.

    Parameters are as in :func:`rigid`.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 template with the movie's ``y``/``x`` coordinates.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(64, 64), max_shift=2)
    >>> xnormcorre.estimate_template(movie, max_shifts=4).shape
    (64, 64)
    """
    movie = cv.as_movie(movie)
    shape = (movie.sizes["y"], movie.sizes["x"])
    params = _engine_params(
        movie,
        max_shifts=cv.check_max_shifts(max_shifts, shape),
        upsample_factor=cv.integer(upsample_factor, "upsample_factor"),
        border="copy",
        batch_size=cv.integer(batch_size, "batch_size", allow_none=True),
        phase_corr=phase_corr,
        smooth_sigma=smooth_sigma,
        taper=taper,
    )
    tmpl = eng.estimate_template(
        _Frames(movie),
        params,
        frames_per_split=cv.integer(frames_per_split, "frames_per_split"),
        num_splits_to_process=cv.integer(num_splits_to_process, "num_splits_to_process", allow_none=True),
        niter=cv.integer(niter, "niter", minimum=0),
        seed=cv.integer(seed, "seed", minimum=0),
        max_frames=cv.integer(max_template_frames, "max_template_frames", allow_none=True),
    )
    return _template_da(movie, tmpl, "estimated")


def _template_da(movie: xr.DataArray, tmpl: np.ndarray, how: str) -> xr.DataArray:
    coords = {d: movie.coords[d] for d in ("y", "x") if d in movie.coords}
    return xr.DataArray(
        tmpl.astype(np.float32),
        dims=("y", "x"),
        coords=coords,
        name="template",
        attrs={
            "long_name": "registration template",
            "units": movie.attrs.get("units", "a.u."),
            "template_source": how,
        },
    )


def _register_block(block: np.ndarray, *ref: np.ndarray, template: np.ndarray, params: eng.RigidParams):
    """apply_ufunc kernel: one time-chunk ``(T, H, W)`` -> corrected, shifts, corr.

    With a reference chunk, the shifts (and correlation) come from the reference and
    are applied to ``block``.
    """
    if block.shape[0] == 0:  # dask meta probing
        h, w = template.shape
        return (np.empty((0, h, w), np.float32), np.empty((0, 2), np.float32), np.empty((0,), np.float32))
    cv.check_finite_block(ref[0] if ref else block, "reference" if ref else "movie")
    if not ref:
        shifts, corrected, corr = eng.register_frames(block, template, params)
        return corrected, shifts, corr
    shifts, _, corr = eng.register_frames(ref[0], template, params)
    corrected = eng.apply_shifts(
        block, shifts, border=params.border, fill_min=params.fill_min, batch_size=params.batch_size
    )
    return corrected, shifts, corr


def _check_reference(reference, movie: xr.DataArray) -> xr.DataArray | None:
    """Validate ``reference=``: a movie of the same (time, y, x) sizes."""
    if reference is None:
        return None
    ref = cv.as_movie(reference, "reference")
    if dict(ref.sizes) != dict(movie.sizes):
        raise ValueError(f"reference must have the movie's sizes {dict(movie.sizes)}, got {dict(ref.sizes)}")
    if not isinstance(reference, xr.DataArray):
        ref = ref.assign_coords({d: movie[d] for d in ("time", "y", "x") if d in movie.coords})
    cv.check_finite(ref, "reference")
    return ref


def _estimated_on(ref: xr.DataArray | None) -> str:
    if ref is None:
        return "movie"
    return f"reference ({ref.name})" if ref.name else "reference"


def _ref_inputs(movie: xr.DataArray, ref: xr.DataArray | None) -> list[xr.Variable]:
    """Variables to pass to apply_ufunc: the movie (and reference), y/x unchunked."""
    out = []
    for da in (movie, ref):
        if da is None:
            continue
        if da.chunks is not None:
            da = da.chunk({"y": -1, "x": -1})
        out.append(da.variable)
    if len(out) == 2 and (movie.chunks is None) != (ref.chunks is None):
        chunks = (movie if movie.chunks is not None else ref).chunks[0]
        out = [v.chunk({"time": chunks}) for v in out]
    return out


def rigid(
    movie: xr.DataArray | np.ndarray,
    *,
    template: xr.DataArray | np.ndarray | None = None,
    reference: xr.DataArray | np.ndarray | None = None,
    max_shifts: int | tuple[int, int] = (6, 6),
    upsample_factor: int = 10,
    frames_per_split: int = 1000,
    num_splits_to_process: int | None = None,
    niter: int | None = None,
    min_mov: float | None = None,
    border: str = "copy",
    batch_size: int | None = None,
    seed: int = 0,
    phase_corr: bool = True,
    smooth_sigma: float = 1.15,
    taper: float | None = None,
    niter_rig: int | None = None,
    num_splits_to_process_rig: int | None = None,
    max_template_frames: int | None = 2000,
) -> xr.Dataset:
    """Rigid subpixel motion correction (NoRMCorre's rigid step) of a movie.

    Each frame is registered to a template by FFT cross-correlation, its peak searched
    at integer lags within ``±max_shifts`` and refined to subpixel precision; the frame
    is then moved by a Fourier phase ramp, and pixels that left the field of view are
    filled per ``border`` (never wrapped around).  With the default phase correlation
    and ``smooth_sigma >= 0.75`` the correlation peak of a translated frame is a
    sampled Gaussian, located exactly by a Gaussian (log-parabola) fit of its integer
    samples; otherwise (``phase_corr=False`` or less smoothing) the peak is refined on
    a ``1/upsample_factor`` grid by an upsampled matrix DFT (Guizar-Sicairos et al.
    2008) plus a parabolic fit.

    **Sign convention:** ``shifts`` is the displacement of each frame's content
    relative to the template, ``frame(r) ≈ template(r - shift)``; ``corrected`` is the
    frame moved by ``-shift``.  (CaImAn/NoRMCorre report ``-shift``.)

    Parameters
    ----------
    movie : xarray.DataArray or array-like, (time, y, x)
        Movie of any integer or float dtype.  A dask-backed DataArray stays lazy:
        the template is estimated batch by batch and the registration is mapped over
        time chunks.
    template : DataArray or ndarray (y, x), optional
        Template to register to; estimated with :func:`estimate_template` if None.
    reference : DataArray or ndarray (time, y, x), optional
        Movie of the same sizes to *estimate* the template and shifts on (a structural
        channel, or a filtered copy such as :func:`xnormcorre.highpass`); the shifts
        are then applied to ``movie``.  ``correlation`` then refers to the registered
        reference.  The jnormcorre ``register_to_template_and_transfer_rigid`` step.
    max_shifts : int or (int, int)
        Largest displacement searched along (y, x), in pixels; ``>= 1`` and smaller
        than half the frame.
    upsample_factor : int
        ``>= 1``; 1 gives integer shifts.  Above 1, shifts are subpixel: the grid of
        the upsampled-DFT refinement (``1/upsample_factor`` px) where it is used (see
        above); the default Gaussian peak fit is not limited to a grid.
    frames_per_split : int
        Frames per split in template estimation (the seed's ``frames_per_split``).
    num_splits_to_process : int, optional
        Splits used per template iteration (all if None); drawn with ``seed``.
        Alias: ``num_splits_to_process_rig``.
    niter : int
        Template iterations (default 1; 0 = initial template only). Alias: ``niter_rig``.
    max_template_frames : int or None
        With ``num_splits_to_process=None``, each template iteration registers at most
        ``max(1, max_template_frames // frames_per_split)`` splits (seeded draw), so
        the cost of the template does not grow with the movie; ``None`` registers
        every split (jnormcorre/CaImAn).  Movies up to ``max_template_frames`` frames
        are unaffected.
    min_mov : float, optional
        Movie floor (the seed's ``min_mov``; default: minimum of the first 400 frames).
        Registration is invariant to a constant offset, so the seed's
        ``add_to_movie = -min_mov`` is not added; ``min_mov`` is the fill value of
        ``border="min"`` and is recorded in attrs.
    border : {"copy", "nan", "zero", "min"}
        Fill of pixels that moved in from outside the frame: nearest valid value,
        NaN, 0, or ``min_mov``.
    batch_size : int, optional
        Frames per JAX batch (padded, so one compilation per frame shape).
    seed : int
        Seed for the split sampling; same input and seed give the same bits.
    phase_corr : bool
        Whiten the cross-power spectrum (phase correlation, as NoRMCorre's
        ``phase_flag`` and suite2p).  Default True: more accurate on movies with
        strong low-frequency background; False gives NoRMCorre/CaImAn's plain
        cross-correlation.
    smooth_sigma : float
        Gaussian low-pass (px) applied to the correlation (suite2p's ``smooth_sigma``);
        0 disables it.
    taper : float, optional
        Width (px) of the edge apodization of the (mean-subtracted) template used for
        the estimate (default ``2·max_shift + 2``, at least 4); it keeps the frame
        border from pulling the peak towards zero shift.  0 disables it.

    Returns
    -------
    xarray.Dataset
        ``corrected (time, y, x)`` float32 with the input's coordinates,
        ``shifts (time, axis)`` float32 with ``axis = ["y", "x"]``,
        ``template (y, x)`` float32, ``correlation (time)`` (Pearson correlation of
        each corrected frame with the template over the pixels that stayed in view),
        and attrs holding every parameter (also as JSON in ``parameters``) and the
        versions of xnormcorre, JAX, NumPy and xarray.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=30, shape=(64, 64), max_shift=3, seed=0)
    >>> res = xnormcorre.rigid(movie, max_shifts=(5, 5))
    >>> res.shifts.dims, res.corrected.shape
    (('time', 'axis'), (30, 64, 64))
    >>> err = (res.shifts.sel(axis="y") - movie.true_shift_y)
    >>> float(abs(err - err.median()).max()) < 0.3
    True
    """
    movie = cv.as_movie(movie)
    a = _check_common(
        movie,
        template=template,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        frames_per_split=frames_per_split,
        num_splits_to_process=_alias(
            num_splits_to_process,
            num_splits_to_process_rig,
            "num_splits_to_process",
            "num_splits_to_process_rig",
            None,
        ),
        niter=_alias(niter, niter_rig, "niter", "niter_rig", 1),
        batch_size=batch_size,
        seed=seed,
        border=border,
        smooth_sigma=smooth_sigma,
        taper=taper,
        min_mov=min_mov,
    )
    ms, upsample_factor, frames_per_split = a.max_shifts, a.upsample_factor, a.frames_per_split
    num_splits_to_process, niter, batch_size, seed = a.num_splits_to_process, a.niter, a.batch_size, a.seed
    border, user_template, min_mov = a.border, a.template, a.min_mov
    ref = _check_reference(reference, movie)
    source = movie if ref is None else ref
    max_template_frames = cv.integer(max_template_frames, "max_template_frames", allow_none=True)

    est = {"phase_corr": bool(phase_corr), "smooth_sigma": float(smooth_sigma), "taper": taper}
    if user_template is None:
        tmpl_da = estimate_template(
            source,
            max_shifts=ms,
            upsample_factor=upsample_factor,
            frames_per_split=frames_per_split,
            num_splits_to_process=num_splits_to_process,
            niter=niter,
            seed=seed,
            batch_size=batch_size,
            max_template_frames=max_template_frames,
            **est,
        )
    else:
        tmpl_da = _template_da(movie, user_template, "user")
    params = _engine_params(
        movie,
        max_shifts=ms,
        upsample_factor=upsample_factor,
        border=border,
        batch_size=batch_size,
        fill_min=min_mov,
        **est,
    )
    corrected, shifts, corr = xr.apply_ufunc(
        _register_block,
        *_ref_inputs(movie, ref),
        input_core_dims=[["y", "x"]] * (1 if ref is None else 2),
        output_core_dims=[["y", "x"], ["axis"], []],
        kwargs={"template": tmpl_da.values, "params": params},
        dask="parallelized",
        output_dtypes=[np.float32, np.float32, np.float32],
        dask_gufunc_kwargs={"output_sizes": {"axis": 2}},
    )
    ds = _base_dataset(
        movie, corrected, corr, tmpl_da, "frame moved by -shifts (Fourier phase ramp); border: " + border
    )
    ds["shifts"] = xr.DataArray(shifts, attrs=dict(cv.SHIFT_ATTRS))
    run_params: dict[str, Any] = {
        "max_shifts": ms,
        "upsample_factor": upsample_factor,
        "frames_per_split": frames_per_split,
        "num_splits_to_process": num_splits_to_process,
        "niter": niter,
        "max_template_frames": max_template_frames,
        "min_mov": min_mov,
        "border": border,
        "batch_size": params.batch_size,
        "seed": seed,
        "phase_corr": bool(phase_corr),
        "smooth_sigma": float(smooth_sigma),
        "taper": taper,
    }
    ds.attrs = cv.provenance_attrs("rigid", run_params, _source(movie))
    ds.attrs["shifts_estimated_on"] = _estimated_on(ref)
    ds.attrs["template_source"] = tmpl_da.attrs["template_source"]
    ds = ds.assign(quality_flags(ds, max_shifts=ms))
    return ds
