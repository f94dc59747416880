"""Labeled rigid registration: ``xnormcorre.rigid`` (xarray in, xarray out)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..qc.diagnose import conclude
from .movie import register_lazily, run_inputs
from .options import rigid_options, with_aliases
from .planes import by_plane, wants_planes
from .result import base_dataset, finish
from .scanphase import record_scan_phase, scan_phase_inputs, scan_phase_parameter
from .template import template_for_run

__all__ = ["rigid"]


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
    defects: bool | xr.DataArray | np.ndarray = True,
    clip: bool = True,
    scan_phase: None | str | float | xr.DataArray = None,
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
        Frames per split in template estimation (CaImAn's ``num_frames_split``).
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
        Movie floor, the fill value of ``border="min"`` (default: minimum of the first
        400 frames, read only for ``border="min"``).  Registration is invariant to a
        constant offset, so CaImAn's ``add_to_movie = -min_mov`` is not added.
    border : {"copy", "nan", "zero", "min"}
        Fill of pixels that moved in from outside the frame: nearest valid value,
        NaN, 0, or ``min_mov``.
    batch_size : int, optional
        Frames read from the movie at once (default: about 4 Mpixel).  Each read batch
        is registered in compiled calls of a fixed number of frames set by the frame
        shape, so the results do not depend on ``batch_size``.
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

    **aliases
        CaImAn/jnormcorre names with the same meaning are accepted: ``border_nan=True``
        (``border="nan"``), ``border_nan="copy"``, ``num_frames_split``
        (``frames_per_split``), ``splits_rig``/``splits_els`` (a number of splits:
        ``frames_per_split = ceil(n_frames / splits)``).  Other unknown keywords raise
        ``TypeError`` naming the closest valid one, or for a CaImAn/jnormcorre/NoRMCorre
        name (``gSig_filt``, ``pw_rigid``, ``shifts_opencv``, ``nonneg_movie``, ...) what
        to write instead.

    defects : bool or array (y, x), optional
        Sensor defects (stuck, hot or dead pixels and lines, fixed on the sensor while
        the tissue moves) are found from the movie's temporal statistics and left out
        of the estimate (default True); the corrected movie keeps their values.
        ``False`` uses every pixel; a boolean mask gives them explicitly.  The mask
        used is returned as ``defect_mask``.
    clip : bool
        Limit each corrected frame to its raw frame's range (default True, as
        NoRMCorre): Fourier or cubic interpolation would otherwise ring below the
        data's minimum and above its maximum next to sharp features (e.g. negative
        values in a uint16 movie).  ``False`` keeps the unclipped interpolation.
    scan_phase : None, "auto", float or DataArray
        Bidirectional scan phase removed before everything else (default None: none).
        The phase is the displacement along x of the odd scan lines' content (rows 1,
        3, 5, ...) relative to the even lines, in px; the correction moves the odd lines
        by ``-phase`` (NoRMCorre's ``col_shift`` and suite2p's ``bidiphase`` are
        ``-phase``).  ``"auto"`` estimates it with :func:`xnormcorre.scan_phase` -- on
        ``reference`` when given, and applies it to both; a number or a DataArray from
        :func:`xnormcorre.scan_phase` (one value, or one per frame) is applied as given.
        The movie is then registered as float32; the correction stays lazy on lazy
        input.  The phase used is returned as ``scan_phase`` (with its method in attrs).

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
    movie = vd.as_movie(movie)
    shape = (movie.sizes[sc.DIM_Y], movie.sizes[sc.DIM_X])
    given = dict(
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        frames_per_split=frames_per_split,
        num_splits_to_process=num_splits_to_process,
        num_splits_to_process_rig=num_splits_to_process_rig,
        niter=niter,
        niter_rig=niter_rig,
        max_template_frames=max_template_frames,
        min_mov=min_mov,
        border=border,
        batch_size=batch_size,
        seed=seed,
        phase_corr=phase_corr,
        smooth_sigma=smooth_sigma,
        taper=taper,
    )
    opts = rigid_options(shape, **with_aliases(rigid, given, aliases, movie.sizes[sc.DIM_TIME]))
    movie, reference, phase = scan_phase_inputs(movie, reference, scan_phase)
    user_template, min_mov, ref = run_inputs(movie, template, reference, opts.border, opts.min_mov, shape)
    tmpl_da, cal, sample_shifts = template_for_run(movie, ref, opts, user_template, defects)
    params = opts.rigid_params(shape, movie.sizes[sc.DIM_TIME], fill_min=min_mov or 0.0)
    params = replace(params, clip=vd.check_bool(clip, "clip")).calibrated(cal)
    corrected, shifts, corr = register_lazily(movie, ref, tmpl_da.values, params, {(sc.DIM_AXIS,): (2,)})
    ds = base_dataset(movie, corrected, corr, tmpl_da, sc.RIGID_COMMENT + opts.border)
    ds[sc.SHIFTS] = xr.DataArray(shifts, attrs=dict(sc.SHIFT_ATTRS))
    run_params: dict[str, Any] = {
        "max_shifts": opts.max_shifts,
        "upsample_factor": opts.upsample_factor,
        "frames_per_split": opts.frames_per_split,
        "num_splits_to_process": opts.num_splits_to_process,
        "niter": opts.niter,
        "max_template_frames": opts.max_template_frames,
        "min_mov": min_mov,
        "border": opts.border,
        "batch_size": params.batch_size,
        "seed": opts.seed,
        "clip": params.clip,
        "scan_phase": scan_phase_parameter(scan_phase),
        **opts.estimator(),
    }
    ds = finish(ds, sc.RIGID, run_params, movie, ref, tmpl_da, opts.max_shifts)
    ds = record_scan_phase(ds, phase)
    return conclude(ds, cal, sample_shifts, opts.max_shifts)
