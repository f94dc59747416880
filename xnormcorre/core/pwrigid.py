"""Labeled piecewise-rigid registration: ``xnormcorre.pwrigid`` (xarray in, xarray out)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..stacklevel import warn
from .docstrings import fill_doc
from .grid import patch_grid
from .movie import register_lazily, run_inputs
from .options import options_for
from .planes import by_plane, wants_planes
from .result import base_dataset, complete
from .resume import run_with_store, wants_store
from .scanphase import scan_phase_inputs
from .template import template_for_run

__all__ = ["pwrigid"]


@fill_doc
def pwrigid(
    movie: xr.DataArray | np.ndarray,
    *,
    template: xr.DataArray | np.ndarray | None = None,
    reference: xr.DataArray | np.ndarray | None = None,
    max_shifts: int | tuple[int, int] = (6, 6),
    strides: int | tuple[int, int] = (96, 96),
    overlaps: int | tuple[int, int] = (32, 32),
    max_deviation_rigid: int | tuple[int, int] = 3,
    refine_patches: bool | None = None,
    upsample_factor: int = 10,
    upsample_factor_grid: int = 4,
    frames_per_split: int = 1000,
    num_splits_to_process_rig: int | None = None,
    niter_rig: int = 1,
    num_splits_to_process_els: int | None = None,
    niter_els: int = 1,
    max_template_frames: int | None = 300,
    min_mov: float | None = None,
    border: str = "copy",
    batch_size: int | None = None,
    seed: int = 0,
    phase_corr: bool = True,
    smooth_sigma: float = 1.15,
    taper: float | None = None,
    defects: bool | xr.DataArray | np.ndarray = True,
    clip: bool = True,
    scan_phase: None | str | float | xr.DataArray = None,
    store: str | os.PathLike | None = None,
    resume: bool = False,
    planes: str | None = None,
    plane_dim: str = "z",
    **aliases: Any,
) -> xr.Dataset:
    """Piecewise-rigid motion correction (NoRMCorre) of a movie.

    Each frame is first registered rigidly (as in :func:`xnormcorre.rigid`); the frame
    is then cut into overlapping patches of ``strides + overlaps`` pixels (see
    :func:`patch_grid`) and each patch is registered to the same patch of the template,
    its peak searched only within ``rigid ± max_deviation_rigid`` and located to
    subpixel precision (with ``refine_patches``, refined further as in
    :func:`xnormcorre.rigid`).  The grid of patch shifts is interpolated bilinearly
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
    %(movie)s
    %(template)s
    %(reference)s
    %(max_shifts)s
    strides : int or (int, int)
        Distance between patch starts (NoRMCorre ``grid_size``), pixels.
    overlaps : int or (int, int)
        Overlap added to each patch (patch size = strides + overlaps; NoRMCorre's
        ``overlap_pre`` is half of it on each side); ``0 <= overlaps < strides``.
    max_deviation_rigid : int or (int, int)
        Largest deviation of a patch shift from the frame's rigid shift, pixels.
    refine_patches : bool or None
        Refine each patch's correlation peak as the rigid shift is refined: by a
        noise-weighted Gauss-Newton step of the patch against the template patch
        (only pixels whose source lies inside the frame; a robust reweighting leaves
        out cells that light up), kept within ``rigid ± max_deviation_rigid``.
        Default (None): False for frames, True for volumes (``planes="volume"``: on
        simulated deformed volumes it halves the patch error, RMSE z/y/x 0.08/0.07/0.07
        -> 0.03/0.04/0.03, for about twice the time).  On simulated movies with shot noise it brings the patch shifts
        much closer to the best precision the noise allows (Cramér-Rao bound):
        efficiency 0.21/0.16/0.11 -> 0.69/0.74/0.81 at 1/5/20 photons per pixel under
        rigid motion, 0.17/0.07/0.02 -> 0.66/0.52/0.22 under non-rigid motion.  It
        makes the piecewise-rigid registration about 1.3x slower (1.1-1.8x measured
        on a CPU at 256² px with 96- and 48-px patches), and on a real two-photon movie (Neurofinder) it did not raise the
        correlation of the corrected frames with the template.  No effect with
        ``upsample_factor=1`` (integer shifts).
    %(upsample_factor)s
    upsample_factor_grid : int
        Recorded for compatibility (see above); must be ``>= 1``.  A value other than
        the default 4 warns that it has no effect.
    %(frames_per_split)s
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
        Bound on the frames registered per template iteration, rigid and piecewise
        rigid: with ``num_splits_to_process_rig`` (``_els``) None, at most
        ``max(1, max_template_frames // frames_per_split)`` splits (seeded draw), or,
        when ``max_template_frames`` is smaller than a split, that many frames evenly
        spaced through the movie (default 300); ``None`` registers every split
        (jnormcorre/CaImAn).
    %(min_mov, border, batch_size, seed)s
    %(phase_corr, smooth_sigma, taper)s
    %(defects, clip, scan_phase, store, resume)s
    planes : {None, "independent", "volume"}
        How a movie with a plane dim ``(time, z, y, x)`` is registered:
        ``"independent"`` registers each plane in 2-D to its own template (multi-plane
        rigs whose planes are not a contiguous volume), equal to a loop over the planes;
        every result variable then has the plane dim (``shifts (time, z, patch_y,
        patch_x, axis)``, ``template (z, y, x)``).  ``"volume"`` (the default for such a
        movie): 3-D piecewise-rigid registration, patches along z too.  ``max_shifts``,
        ``strides``, ``overlaps`` and ``max_deviation_rigid`` then have 3 entries (z, y,
        x; an integer stands for the same value on each axis, except ``max_shifts``),
        e.g. ``strides=(4, 48, 48), overlaps=(2, 16, 16), max_deviation_rigid=(1, 3, 3)``
        for a stack of 8-30 planes; a patch axis shorter than 16 planes is edge-padded
        rather than tapered.  The volume is resampled (Keys cubic, in 3-D) along the
        dense field interpolated linearly between patch centres along each axis.  The
        result has ``shifts (time, patch_z, patch_y, patch_x, axis)`` with ``axis = ["z",
        "y", "x"]`` (patch centres as coordinates, in pixels or planes),
        ``rigid_shifts (time, axis)``, ``template (z, y, x)``, ``corrected (time, z, y,
        x)``.  ``reference``, ``scan_phase``, a ``defects`` mask and
        ``num_splits_to_process_*`` are not available for volumes.
    plane_dim : str
        Name of the plane dim of a multi-plane movie (default ``"z"``).
    %(aliases)s

    Returns
    -------
    xarray.Dataset
        ``corrected (time, y, x)``, ``shifts (time, patch_y, patch_x, axis)`` (patch
        centres as coordinates, patch bounds as ``patch_*_start/stop``),
        ``rigid_shifts (time, axis)``, ``template (y, x)``, ``correlation (time)``, and
        every parameter plus package versions in attrs; with ``scan_phase``, the phase
        used (``scan_phase``, scalar or ``(time,)``, px).

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
    if wants_planes(movie, planes, plane_dim):
        return by_plane(pwrigid, movie, planes, plane_dim, locals())
    if wants_store(store, resume):
        return run_with_store(pwrigid, locals())
    movie = vd.as_movie(movie)
    refine_patches = False if refine_patches is None else refine_patches
    shape = (movie.sizes[sc.DIM_Y], movie.sizes[sc.DIM_X])
    opts = options_for(pwrigid, locals(), shape, movie.sizes[sc.DIM_TIME])
    if opts.upsample_factor_grid != 4:
        warn(
            f"upsample_factor_grid={opts.upsample_factor_grid} has no effect: the patch shifts are "
            "interpolated to a dense displacement field, the limit of an infinitely upsampled patch "
            "grid; leave it at its default",
            UserWarning,
        )
    movie, reference, phase = scan_phase_inputs(movie, reference, scan_phase)
    user_template, min_mov, ref = run_inputs(movie, template, reference, opts.border, opts.min_mov, shape)
    params = opts.pw_params(shape, movie.sizes[sc.DIM_TIME], fill_min=min_mov or 0.0)
    params = replace(params, rigid=replace(params.rigid, clip=vd.check_bool(clip, "clip")))
    tmpl_da, cal, sample_shifts = template_for_run(movie, ref, opts, user_template, defects, params)
    params = params.calibrated(cal)
    grid = patch_grid(shape, opts.strides, opts.overlaps)
    ny, nx = params.grid_shape
    corrected, rigid, pshifts, corr = register_lazily(
        movie, ref, tmpl_da.values, params, {(sc.DIM_AXIS,): (2,), (*sc.PATCH_DIMS, sc.DIM_AXIS): (ny, nx, 2)}
    )
    ds = base_dataset(movie, corrected, corr, tmpl_da, sc.PW_COMMENT + opts.border)
    ds = ds.assign_coords(grid.coords)
    ds[sc.SHIFTS] = xr.DataArray(pshifts, attrs=dict(sc.PW_SHIFT_ATTRS))
    ds[sc.RIGID_SHIFTS] = xr.DataArray(rigid, attrs=sc.with_frame_size(sc.RIGID_SHIFTS_ATTRS, shape))
    return complete(
        ds,
        sc.PWRIGID,
        opts,
        params.rigid,
        movie=movie,
        ref=ref,
        tmpl_da=tmpl_da,
        min_mov=min_mov,
        scan_phase=scan_phase,
        phase=phase,
        cal=cal,
        sample_shifts=sample_shifts,
    )
