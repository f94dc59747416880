"""Labeled template estimation: ``xnormcorre.estimate_template`` (xarray in, xarray out)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine import template as _tmpl
from ..schema import DIM_TIME, DIM_X, DIM_Y
from .docstrings import fill_doc
from .movie import Frames
from .options import Options, options_for
from .result import template_da

__all__ = ["calibrate_for", "estimate_for", "estimate_template", "template_for_run"]


@fill_doc
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
    max_template_frames: int | None = 300,
    **aliases: Any,
) -> xr.DataArray:
    """Estimate a registration template from a movie (NoRMCorre/CaImAn batch scheme).

    The initial template is the median of up to 100 evenly spaced frames, registered
    to that median and averaged.  Then, ``niter`` times, the frames of each split of
    ``frames_per_split`` consecutive frames are registered to the current template and
    the new template is the median of the split means.  With
    ``num_splits_to_process`` only that many splits, drawn without replacement by
    ``numpy.random.default_rng(seed)``, are used per iteration (deterministic).
    When ``num_splits_to_process`` is None, ``max_template_frames`` bounds the work:
    at most ``max(1, max_template_frames // frames_per_split)`` splits are drawn, or,
    below a split, ``max_template_frames`` frames evenly spaced through the movie
    (``None`` registers all splits, the jnormcorre/CaImAn behaviour).  After each
    step the template is moved to the centre of the range of frame positions.
    Frames are read one batch at a time, so memory stays bounded for lazy movies.

    Parameters
    ----------
    %(movie)s
    %(max_shifts)s
    %(upsample_factor)s
    %(frames_per_split)s
    %(num_splits_to_process)s
    %(niter)s
    %(seed)s
    %(phase_corr)s
    %(smooth_sigma)s
    %(taper)s
    %(batch_size)s
    %(max_template_frames)s
    %(aliases)s

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 template with the movie's ``y``/``x`` coordinates.  For a
        volumetric movie ``(time, z, y, x)`` (a 4-D array: z second): the ``(z, y, x)``
        template of 3-D rigid registration (``max_shifts`` then takes 3 values, z y x),
        the template :func:`xnormcorre.rigid` estimates for it.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(64, 64), max_shift=2)
    >>> xnormcorre.estimate_template(movie, max_shifts=4).shape
    (64, 64)
    """
    from .volume import is_volume_movie, volume_template

    if is_volume_movie(movie):  # (time, z, y, x): the volume template of rigid(..., planes="volume")
        return volume_template(movie, locals())
    movie = vd.as_movie(movie)
    shape = (movie.sizes[DIM_Y], movie.sizes[DIM_X])
    opts = options_for(
        estimate_template, locals(), shape, movie.sizes[sc.DIM_TIME], min_mov=None, border="copy"
    )
    return template_da(movie, estimate_for(movie, opts).template, "estimated")


def template_for_run(
    movie: xr.DataArray, ref: xr.DataArray | None, opts: Options, user_template, defects, pw=None
) -> tuple[xr.DataArray, _tmpl.Calibration, np.ndarray | None]:
    """The template of a run (given, or estimated on the reference or the movie) as a
    labeled DataArray, the calibration of the movie it is estimated on, and the shifts
    of the template's last pass (None for a given template): ``(template, calibration,
    shifts)``.  ``pw``: piecewise-rigid engine parameters (see :func:`estimate_for`)."""
    source = movie if ref is None else ref
    defects = vd.check_defects(defects, (source.sizes[DIM_Y], source.sizes[DIM_X]))
    if user_template is None:
        est = estimate_for(source, opts, pw, defects=defects)
        return template_da(movie, est.template, "estimated"), est.calibration, est.shifts
    cal = calibrate_for(source, opts, defects=defects)
    return template_da(movie, user_template, "user"), cal, None


def calibrate_for(source: xr.DataArray, opts: Options, *, defects=True) -> _tmpl.Calibration:
    """Sensor defects, noise model and scale of ``source``
    (:func:`xnormcorre.engine.template.calibrate`: measured on the movie alone)."""
    n = source.sizes[DIM_TIME]
    shape = (source.sizes[DIM_Y], source.sizes[DIM_X])
    rigid = opts.rigid_params(shape, n, border="copy")
    return _tmpl.calibrate(Frames(source), rigid, defects=defects)


def estimate_for(source: xr.DataArray, opts: Options, pw=None, *, defects=True) -> _tmpl.TemplateEstimate:
    """The template of a run with options ``opts``, estimated on ``source``, with the
    movie's calibration (:class:`xnormcorre.engine.template.TemplateEstimate`).

    The rigid template (``num_splits_to_process``/``niter``); with piecewise-rigid engine
    parameters ``pw``, then refined by ``niter_els`` piecewise-rigid iterations (the rigid
    iterations then register the frames of the 100-frame sample only, at most
    ``max_template_frames``; the piecewise-rigid ones ``max_template_frames`` frames).
    ``defects``: find sensor defects (True), ignore them (False) or a ``(y, x)`` mask.
    """
    n = source.sizes[DIM_TIME]
    shape = (source.sizes[DIM_Y], source.sizes[DIM_X])
    frames = Frames(source)
    # the rigid template step of a piecewise-rigid run reads as its pass does
    rigid = opts.rigid_params(shape, n, border="copy", batch_size=None if pw is None else pw.rigid.batch_size)
    common = {
        "frames_per_split": opts.frames_per_split,
        "max_frames": opts.max_template_frames,
        "defects": defects,
        "sample": _tmpl.survey(frames, defects),  # read once for both steps
    }
    rigid_common = common
    if pw is not None and opts.max_template_frames is not None:
        # the piecewise-rigid iterations register max_template_frames frames from this
        # template: its own iteration registers the frames of the sample only (held, not read)
        rigid_common = {**common, "max_frames": min(opts.max_template_frames, len(common["sample"].index))}
    tmpl = _tmpl.estimate_template(
        frames,
        rigid,
        num_splits_to_process=opts.num_splits_to_process,
        niter=opts.niter,
        seed=opts.seed,
        **rigid_common,
    )
    if pw is None:
        return tmpl
    return _tmpl.estimate_template(
        frames,
        pw,
        num_splits_to_process=opts.num_splits_to_process_els,
        niter=opts.niter_els,
        seed=opts.seed + 1,
        init=tmpl.template,
        calibration=tmpl.calibration,
        **common,
    )
