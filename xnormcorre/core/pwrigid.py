"""Labeled piecewise-rigid registration: ``xnormcorre.pwrigid`` and the patch grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import conventions as cv
from ..engine import api as eng
from ..engine import pwrigid as _pw
from .qc import quality_flags
from .rigid import (
    _base_dataset,
    _check_common,
    _check_reference,
    _estimated_on,
    _Frames,
    _ref_inputs,
    _source,
    _template_da,
    estimate_template,
)

__all__ = ["patch_grid", "get_patch_start_and_end_coords", "pwrigid"]


def _check_grid(shape, strides, overlaps, max_shifts=None, max_deviation_rigid=None):
    st = cv.pair(strides, "strides", minimum=1)
    ov = cv.pair(overlaps, "overlaps", minimum=0)
    for s, o, n, ax in zip(st, ov, shape, "yx", strict=True):
        if o >= s:
            raise ValueError(
                f"overlaps must be smaller than strides along {ax}, got overlaps={overlaps!r}, strides={strides!r}"
            )
        if s + o > n:
            raise ValueError(
                f"patch size strides + overlaps = {s + o} along {ax} is larger than the frame ({n} px); "
                "use smaller strides/overlaps"
            )
    md = None
    if max_deviation_rigid is not None:
        md = cv.pair(max_deviation_rigid, "max_deviation_rigid", minimum=0)
        for m, d, s, o, ax in zip(max_shifts, md, st, ov, "yx", strict=True):
            if 2 * (m + d + 1) >= s + o:
                raise ValueError(
                    f"max_shifts + max_deviation_rigid + 1 must be smaller than half the patch size along {ax} "
                    f"({(s + o) / 2:g} px for strides + overlaps = {s + o}); got max_shifts={m}, "
                    f"max_deviation_rigid={d}"
                )
    return st, ov, md


def patch_grid(
    shape: tuple[int, int], strides: int | tuple[int, int], overlaps: int | tuple[int, int]
) -> xr.Dataset:
    """The piecewise-rigid patch grid of a frame, as labeled coordinates.

    Patch size is ``strides + overlaps`` (CaImAn/jnormcorre semantics).  Along each axis
    patches start every ``strides`` pixels, and a last patch is placed flush with the
    far edge, so the whole frame is covered by full-size patches.

    Returns
    -------
    xarray.Dataset
        Dimension coordinates ``patch_y`` / ``patch_x`` (patch centres, pixels) and
        coordinates ``patch_y_start``/``patch_y_stop``, ``patch_x_start``/``patch_x_stop``
        (so that ``frame[start:stop]`` is the patch).

    Examples
    --------
    >>> g = patch_grid((128, 100), strides=(48, 40), overlaps=(24, 16))
    >>> g.patch_y.values.tolist(), g.patch_y_start.values.tolist()
    ([35.5, 83.5, 91.5], [0, 48, 56])
    >>> g.patch_x_stop.values.tolist()
    [56, 96, 100]
    """
    st, ov, _ = _check_grid(shape, strides, overlaps)
    coords: dict[str, Any] = {}
    for ax, n, s, o in (("y", shape[0], st[0], ov[0]), ("x", shape[1], st[1], ov[1])):
        size = s + o
        starts = np.asarray(_pw.patch_starts(n, s, o), np.int64)
        dim = f"patch_{ax}"
        coords[dim] = (
            dim,
            _pw.patch_centres(list(starts), size),
            {"long_name": f"patch centre along {ax}", "units": "pixel"},
        )
        coords[f"{dim}_start"] = (
            dim,
            starts,
            {"long_name": f"first pixel of the patch along {ax}", "units": "pixel"},
        )
        coords[f"{dim}_stop"] = (
            dim,
            starts + size,
            {"long_name": f"one past the last pixel of the patch along {ax}", "units": "pixel"},
        )
    return xr.Dataset(coords=coords)


def get_patch_start_and_end_coords(
    x: int, y: int, strides_0: int, strides_1: int, overlaps_0: int, overlaps_1: int
) -> tuple[np.ndarray, np.ndarray]:
    """jnormcorre-compatible patch bounds: ``(start, end)``, each ``(n_patches, 2)``.

    ``x``/``y`` are the frame's first/second dimension sizes (jnormcorre's naming);
    patch ``k`` is ``frame[start[k, 0]:end[k, 0], start[k, 1]:end[k, 1]]`` and
    corresponds to ``res.shifts.stack(patch=("patch_y", "patch_x"))[:, k]``.

    Examples
    --------
    >>> start, end = get_patch_start_and_end_coords(96, 96, 48, 48, 24, 24)
    >>> start.tolist(), end.tolist()
    ([[0, 0], [0, 24], [24, 0], [24, 24]], [[72, 72], [72, 96], [96, 72], [96, 96]])
    """
    g = patch_grid((x, y), (strides_0, strides_1), (overlaps_0, overlaps_1))
    ys, xs = np.meshgrid(g.patch_y_start.values, g.patch_x_start.values, indexing="ij")
    ye, xe = np.meshgrid(g.patch_y_stop.values, g.patch_x_stop.values, indexing="ij")
    start = np.stack([ys.ravel(), xs.ravel()], axis=1)
    end = np.stack([ye.ravel(), xe.ravel()], axis=1)
    return start, end


def _pw_block(block: np.ndarray, *ref: np.ndarray, template: np.ndarray, params: eng.PwParams):
    """apply_ufunc kernel for one time chunk (shifts from ``ref`` if given)."""
    h, w = template.shape
    ny, nx = len(params.starts_y), len(params.starts_x)
    if block.shape[0] == 0:
        return (
            np.empty((0, h, w), np.float32),
            np.empty((0, 2), np.float32),
            np.empty((0, ny, nx, 2), np.float32),
            np.empty((0,), np.float32),
        )
    cv.check_finite_block(ref[0] if ref else block, "reference" if ref else "movie")
    if not ref:
        rigid, pshifts, corrected, corr = eng.register_pw_frames(block, template, params)
        return corrected, rigid, pshifts, corr
    rigid, pshifts, _, corr = eng.register_pw_frames(ref[0], template, params)
    corrected = eng.apply_pw_shifts(
        block,
        pshifts,
        params.wy,
        params.wx,
        border=params.rigid.border,
        fill_min=params.rigid.fill_min,
        batch_size=params.batch_size,
    )
    return corrected, rigid, pshifts, corr


def pwrigid(
    movie: xr.DataArray | np.ndarray,
    *,
    template: xr.DataArray | np.ndarray | None = None,
    reference: xr.DataArray | np.ndarray | None = None,
    max_shifts: int | tuple[int, int] = (6, 6),
    strides: int | tuple[int, int] = (96, 96),
    overlaps: int | tuple[int, int] = (32, 32),
    max_deviation_rigid: int | tuple[int, int] = 3,
    upsample_factor: int = 10,
    upsample_factor_grid: int = 4,
    frames_per_split: int = 1000,
    num_splits_to_process_rig: int | None = None,
    niter_rig: int = 1,
    num_splits_to_process_els: int | None = None,
    niter_els: int = 1,
    max_template_frames: int | None = 2000,
    min_mov: float | None = None,
    border: str = "copy",
    batch_size: int | None = None,
    seed: int = 0,
    phase_corr: bool = True,
    smooth_sigma: float = 1.15,
    taper: float | None = None,
) -> xr.Dataset:
    """Piecewise-rigid motion correction (NoRMCorre) of a movie.

    Each frame is first registered rigidly (as in :func:`xnormcorre.rigid`); the frame
    is then cut into overlapping patches of ``strides + overlaps`` pixels (see
    :func:`patch_grid`) and each patch is registered to the same patch of the template,
    its peak searched only within ``rigid ± max_deviation_rigid`` and refined to
    subpixel precision as in :func:`xnormcorre.rigid`.  The grid of patch shifts is interpolated bilinearly
    between patch centres into a dense displacement field and the frame is resampled
    once with a Keys cubic kernel (a = -0.75, OpenCV's ``INTER_CUBIC``, as CaImAn's
    default ``shifts_opencv`` path); pixels whose source lies outside the frame are
    filled per ``border``.

    Why a dense field rather than NoRMCorre's per-patch FFT shifts with overlap
    blending: a continuous field has no seams between patches and needs no "smearing"
    guard, and it costs a single interpolation per frame.  ``upsample_factor_grid`` is
    accepted (and recorded) for CaImAn/jnormcorre compatibility: the bilinear dense
    field is the limit of an infinitely upsampled patch grid, so it does not change
    the result.  The NoRMCorre FFT-blending application is not implemented.

    **Sign convention:** shifts are displacements of the frame content relative to the
    template; the corrected frame is the frame moved by ``-shift`` (locally).

    Parameters
    ----------
    movie, template, reference, max_shifts, upsample_factor, frames_per_split, min_mov,
    border, batch_size, seed, phase_corr, smooth_sigma, taper
        As in :func:`xnormcorre.rigid` (``reference``: estimate on it, apply to
        ``movie``; jnormcorre's ``register_to_template_and_transfer_pwrigid``).
    strides : int or (int, int)
        Distance between patch starts (NoRMCorre ``grid_size``), pixels.
    overlaps : int or (int, int)
        Overlap added to each patch (patch size = strides + overlaps; NoRMCorre's
        ``overlap_pre`` is half of it on each side); ``0 <= overlaps < strides``.
    max_deviation_rigid : int or (int, int)
        Largest deviation of a patch shift from the frame's rigid shift, pixels.
    upsample_factor_grid : int
        Recorded for compatibility (see above); must be ``>= 1``.
    num_splits_to_process_rig, niter_rig : int
        Rigid template estimation (as ``num_splits_to_process``/``niter`` of rigid).
    num_splits_to_process_els, niter_els : int
        Piecewise-rigid template iterations, starting from the rigid template.  After
        each, the template is deformed (dense field of the patches' mean deviation
        from the rigid shift over the frames of the iteration) to the frames' mean
        local geometry, so that on average every patch's shift equals the rigid
        shift: an averaged template otherwise keeps the rigid template's local
        geometry, which is off the mean deformation where the deformation is skewed.
    max_template_frames : int or None
        Bound on the frames registered per template iteration (rigid and pw), as in
        :func:`xnormcorre.rigid`.

    Returns
    -------
    xarray.Dataset
        ``corrected (time, y, x)``, ``shifts (time, patch_y, patch_x, axis)`` (patch
        centres as coordinates, patch bounds as ``patch_*_start/stop``),
        ``rigid_shifts (time, axis)``, ``template (y, x)``, ``correlation (time)``, and
        every parameter plus package versions in attrs.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=16, shape=(96, 96), max_shift=2, seed=0)
    >>> res = xnormcorre.pwrigid(movie, max_shifts=4, strides=(32, 32), overlaps=(16, 16))
    >>> res.shifts.dims, res.shifts.shape
    (('time', 'patch_y', 'patch_x', 'axis'), (16, 3, 3, 2))
    >>> res.shifts.sel(patch_y=40, patch_x=40, method="nearest").dims
    ('time', 'axis')
    """
    movie = cv.as_movie(movie)
    shape = (movie.sizes["y"], movie.sizes["x"])
    a = _check_common(
        movie,
        template=template,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        frames_per_split=frames_per_split,
        num_splits_to_process=num_splits_to_process_rig,
        niter=niter_rig,
        batch_size=batch_size,
        seed=seed,
        border=border,
        smooth_sigma=smooth_sigma,
        taper=taper,
        min_mov=min_mov,
    )
    ref = _check_reference(reference, movie)
    source = movie if ref is None else ref
    max_template_frames = cv.integer(max_template_frames, "max_template_frames", allow_none=True)
    st, ov, md = _check_grid(shape, strides, overlaps, a.max_shifts, max_deviation_rigid)
    upsample_factor_grid = cv.integer(upsample_factor_grid, "upsample_factor_grid")
    num_splits_to_process_els = cv.integer(
        num_splits_to_process_els, "num_splits_to_process_els", allow_none=True
    )
    niter_els = cv.integer(niter_els, "niter_els", minimum=0)
    est = {"phase_corr": bool(phase_corr), "smooth_sigma": float(smooth_sigma), "taper": taper}
    params = eng.make_pw_params(
        shape,
        strides=st,
        overlaps=ov,
        max_deviation_rigid=md,
        batch_size=a.batch_size,
        n_frames=movie.sizes["time"],
        max_shifts=a.max_shifts,
        upsample_factor=a.upsample_factor,
        border=a.border,
        fill_min=a.min_mov,
        **est,
    )
    if a.template is None:
        rigid_tmpl = estimate_template(
            source,
            max_shifts=a.max_shifts,
            upsample_factor=a.upsample_factor,
            frames_per_split=a.frames_per_split,
            num_splits_to_process=a.num_splits_to_process,
            niter=a.niter,
            seed=a.seed,
            batch_size=params.rigid.batch_size,
            max_template_frames=max_template_frames,
            **est,
        )
        tmpl = eng.estimate_template(
            _Frames(source),
            params,
            frames_per_split=a.frames_per_split,
            num_splits_to_process=num_splits_to_process_els,
            niter=niter_els,
            seed=a.seed + 1,
            init=rigid_tmpl.values,
            max_frames=max_template_frames,
        )
        tmpl_da = _template_da(movie, tmpl, "estimated")
    else:
        tmpl_da = _template_da(movie, a.template, "user")

    grid = patch_grid(shape, st, ov)
    ny, nx = grid.sizes["patch_y"], grid.sizes["patch_x"]
    corrected, rigid, pshifts, corr = xr.apply_ufunc(
        _pw_block,
        *_ref_inputs(movie, ref),
        input_core_dims=[["y", "x"]] * (1 if ref is None else 2),
        output_core_dims=[["y", "x"], ["axis"], ["patch_y", "patch_x", "axis"], []],
        kwargs={"template": tmpl_da.values, "params": params},
        dask="parallelized",
        output_dtypes=[np.float32] * 4,
        dask_gufunc_kwargs={"output_sizes": {"axis": 2, "patch_y": ny, "patch_x": nx}},
    )
    ds = _base_dataset(
        movie,
        corrected,
        corr,
        tmpl_da,
        "frame resampled (Keys cubic) at r + field(r), the field interpolated bilinearly from the patch "
        "shifts; border: " + a.border,
    )
    ds = ds.assign_coords(grid.coords)
    ds["shifts"] = xr.DataArray(
        pshifts,
        attrs={
            "long_name": "piecewise-rigid displacement of each patch relative to the template",
            "units": "pixel",
            "comment": cv.SIGN_CONVENTION,
        },
    )
    ds["rigid_shifts"] = xr.DataArray(
        rigid,
        attrs={
            "long_name": "rigid displacement the patch shifts are constrained around",
            "units": "pixel",
            "comment": cv.SIGN_CONVENTION,
        },
    )
    run_params: dict[str, Any] = {
        "max_shifts": a.max_shifts,
        "strides": st,
        "overlaps": ov,
        "max_deviation_rigid": md,
        "upsample_factor": a.upsample_factor,
        "upsample_factor_grid": upsample_factor_grid,
        "frames_per_split": a.frames_per_split,
        "num_splits_to_process_rig": a.num_splits_to_process,
        "niter_rig": a.niter,
        "num_splits_to_process_els": num_splits_to_process_els,
        "niter_els": niter_els,
        "max_template_frames": max_template_frames,
        "min_mov": a.min_mov,
        "border": a.border,
        "batch_size": params.batch_size,
        "seed": a.seed,
        **est,
    }
    ds = ds.assign(quality_flags(ds, max_shifts=a.max_shifts))
    ds.attrs = cv.provenance_attrs("pwrigid", run_params, _source(movie))
    ds.attrs["shifts_estimated_on"] = _estimated_on(ref)
    ds.attrs["template_source"] = tmpl_da.attrs["template_source"]
    return ds
