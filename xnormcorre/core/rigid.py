"""Labeled rigid registration: ``xnormcorre.rigid`` (xarray in, xarray out)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from .docstrings import fill_doc
from .movie import register_lazily, run_inputs
from .options import options_for
from .planes import by_plane, wants_planes
from .result import base_dataset, complete
from .resume import run_with_store, wants_store
from .scanphase import scan_phase_inputs
from .template import template_for_run

__all__ = ["rigid"]


@fill_doc
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
    max_template_frames: int | None = 300,
    defects: bool | xr.DataArray | np.ndarray = True,
    clip: bool = True,
    scan_phase: None | str | float | xr.DataArray = None,
    store: str | os.PathLike | None = None,
    resume: bool = False,
    planes: str | None = None,
    plane_dim: str = "z",
    **aliases: Any,
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
    %(movie)s
    %(template)s
    %(reference)s
    %(max_shifts)s
    %(upsample_factor)s
    %(frames_per_split)s
    %(num_splits_to_process)s
        Alias: ``num_splits_to_process_rig``.
    %(niter)s
        Alias: ``niter_rig``.
    %(max_template_frames)s
    %(min_mov, border, batch_size, seed)s
    %(phase_corr, smooth_sigma, taper)s
    %(defects, clip, scan_phase, store, resume)s
    planes : {None, "independent", "volume"}
        How a movie with a plane dim ``(time, z, y, x)`` is registered.  ``"volume"``
        (the default for such a movie, as NoRMCorre and CaImAn treat a 4-D movie): 3-D
        rigid registration of each volume to a volume template, ``max_shifts`` then has
        3 entries ``(z, y, x)``; ``shifts (time, axis)`` with ``axis = ["z", "y", "x"]``,
        ``template (z, y, x)``.  ``reference``, ``scan_phase`` and a ``defects`` mask are
        not available for volumes.  ``"independent"``: each plane registered in 2-D to
        its own template (multi-plane rigs whose planes are not a contiguous volume),
        equal to a loop over the planes; every result variable then has the plane dim
        (``shifts (time, z, axis)``, ``template (z, y, x)``).
    plane_dim : str
        Name of the plane dim of a multi-plane movie (default ``"z"``).
    %(aliases)s

    Returns
    -------
    xarray.Dataset
        ``corrected (time, y, x)`` float32 with the input's coordinates,
        ``shifts (time, axis)`` float32 with ``axis = ["y", "x"]``,
        ``template (y, x)`` float32, ``correlation (time)`` (Pearson correlation of
        each corrected frame with the template over the pixels that stayed in view),
        and attrs holding every parameter (also as JSON in ``parameters``) and the
        versions of xnormcorre, JAX, NumPy and xarray; with ``scan_phase``, the phase
        used (``scan_phase``, scalar or ``(time,)``, px).

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
    if wants_planes(movie, planes, plane_dim):
        return by_plane(rigid, movie, planes, plane_dim, locals())
    if wants_store(store, resume):
        return run_with_store(rigid, locals())
    movie = vd.as_movie(movie)
    shape = (movie.sizes[sc.DIM_Y], movie.sizes[sc.DIM_X])
    opts = options_for(rigid, locals(), shape, movie.sizes[sc.DIM_TIME])
    movie, reference, phase = scan_phase_inputs(movie, reference, scan_phase)
    user_template, min_mov, ref = run_inputs(movie, template, reference, opts.border, opts.min_mov, shape)
    tmpl_da, cal, sample_shifts = template_for_run(movie, ref, opts, user_template, defects)
    params = opts.rigid_params(shape, movie.sizes[sc.DIM_TIME], fill_min=min_mov or 0.0)
    params = replace(params, clip=vd.check_bool(clip, "clip")).calibrated(cal)
    corrected, shifts, corr = register_lazily(movie, ref, tmpl_da.values, params, {(sc.DIM_AXIS,): (2,)})
    ds = base_dataset(movie, corrected, corr, tmpl_da, sc.RIGID_COMMENT + opts.border)
    ds[sc.SHIFTS] = xr.DataArray(shifts, attrs=sc.with_frame_size(sc.SHIFT_ATTRS, shape))
    return complete(
        ds,
        sc.RIGID,
        opts,
        params,
        movie=movie,
        ref=ref,
        tmpl_da=tmpl_da,
        min_mov=min_mov,
        scan_phase=scan_phase,
        phase=phase,
        cal=cal,
        sample_shifts=sample_shifts,
    )
