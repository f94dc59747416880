"""Template estimation (NoRMCorre/CaImAn batch scheme; NumPy; never imports xarray).

The initial template is the median of up to 100 evenly spaced frames, registered to
that median and averaged (:func:`initial_template`, from the frame sample of
:mod:`xnormcorre.engine.template_sample`); then, ``niter`` times, the frames
of each split are registered to the current template and the new template is the
median of the split means (:func:`estimate_template`).  The registration itself is the
pass's own (``params.mean_registered``: rigid or piecewise rigid), so this module does
not depend on the kind of registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from .config import Calibration
from .rigid import iter_registered
from .runner import aligned_batch_size
from .template_sample import (
    Subsample,
    Survey,
    TemplateEstimate,
    calibrate,
    calibrate_survey,
    centre,
    frame_sums,
    initial_from_survey,
    initial_template,
    mean_of_sums,
    nanmedian,
    sample_indices,
    survey,
)

if TYPE_CHECKING:  # pragma: no cover
    from .config import Params, RigidParams

__all__ = [
    "TemplateEstimate",
    "calibrate",
    "centre",
    "estimate_template",
    "initial_template",
    "nanmedian",
    "sample_indices",
    "split_bounds",
    "survey",
    "Survey",
]


def _probe_mean(params: RigidParams, movie, template: np.ndarray, start: int, stop: int):
    """``params.mean_registered`` (rigid, no sensor defects) on the final pass's compiled
    program (the border and clipping are traced arguments of the rigid kernel: NaN
    border, unclipped here): ``(mean, shifts, None)`` of frames ``start:stop``
    registered to ``template``, each pixel averaged over the frames that kept it in
    view.  One compiled program serves the template step, the noise probe and the final
    pass.  The frames are registered in one pass (every kernel thread busy) and summed
    one read batch at a time, in frame order (bounded memory; the same sums whatever the
    scheduling)."""
    h, w = template.shape
    acc = np.zeros((h, w), np.float64)
    cnt = np.zeros((h, w), np.float64)
    shifts = np.empty((stop - start, 2), np.float32)
    step = aligned_batch_size(params.batch_size, (h, w))
    probe = replace(params, border="nan", clip=False)
    held: list[np.ndarray] = []  # the corrected frames of the read batch being filled

    def add(frames: list[np.ndarray]) -> None:
        da, dc = frame_sums(np.concatenate(frames))
        np.add(acc, da, out=acc)
        np.add(cnt, dc, out=cnt)

    for a, b, out in iter_registered(movie, template, probe, start=start, stop=stop, origin=0):
        shifts[a:b] = out[0]
        held.append(out[1])
        if b % step == 0 or b == stop - start:
            add(held)
            held = []
    return mean_of_sums(acc, cnt), shifts, None


def split_bounds(n_frames: int, frames_per_split: int) -> list[tuple[int, int]]:
    """Consecutive, non-overlapping splits of ``frames_per_split`` frames.

    The last split holds the remainder (no frame is registered twice).

    Examples
    --------
    >>> split_bounds(10, 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    return [(a, min(n_frames, a + frames_per_split)) for a in range(0, n_frames, frames_per_split)]


def estimate_template(
    movie,
    params: Params,
    *,
    frames_per_split: int = 1000,
    num_splits_to_process: int | None = None,
    niter: int = 1,
    seed: int = 0,
    init: np.ndarray | None = None,
    calibration: Calibration | None = None,
    on_split: Callable[[], None] | None = None,
    max_frames: int | None = None,
    defects=True,
    sample: Survey | None = None,
) -> TemplateEstimate:
    """Estimate a template as in NoRMCorre/CaImAn's batch path.

    Start from :func:`initial_template` (or ``init``); then ``niter`` times: register
    the frames of each split (all splits, or ``num_splits_to_process`` of them drawn
    without replacement by ``numpy.random.default_rng(seed)``) to the current
    template and take the median of the split means.  After each step the template is
    moved (Fourier shift) to the centre of the range of positions of the frames registered to it, so
    that the ``±max_shifts`` window is centred on the motion.

    ``max_frames`` bounds the work when ``num_splits_to_process`` is None: at most
    ``max(1, max_frames // frames_per_split)`` splits are drawn per iteration, so a
    long movie is not registered in full for every template iteration; when
    ``max_frames`` is smaller than a split (and than the movie), each iteration
    registers ``max_frames`` evenly spaced frames of the whole movie instead (one split;
    the frames of the sample already read are not read again).

    ``sample``: the movie's :func:`survey`, when already read (e.g. by the rigid step
    before a piecewise-rigid one); read here otherwise.

    The movie's calibration (sensor defects, noise model, scale) comes from
    :func:`initial_template`, or is ``calibration`` (or measured by :func:`calibrate`)
    when ``init`` is given; every pass uses it.  It is measured on the movie's sample
    alone, not against a template, so a run given the estimated template calibrates
    the movie alike (the same bits).
    Returns a :class:`TemplateEstimate`.
    """
    n = len(movie)
    # read once: the initial template and the calibrations
    surveyed = survey(movie, defects) if sample is None else sample
    if init is None:
        # the iterations register with the noise weights: no weighted pass of the sample first
        tmpl, calibration, last = initial_from_survey(
            surveyed, params.rigid, defects, weighted_pass=niter == 0
        )
    else:
        tmpl = np.asarray(init, np.float32)
        if calibration is None:
            calibration = calibrate_survey(surveyed, params.rigid, defects)
        last = np.zeros((0, 2), np.float32)
    params = params.calibrated(calibration)
    splits = split_bounds(n, frames_per_split)
    if num_splits_to_process is None and max_frames is not None:
        if max_frames < min(n, frames_per_split):
            # a bounded, evenly spaced sample of the whole movie, as one split
            movie = Subsample(movie, sample_indices(n, max_frames), surveyed)
            splits = [(0, len(movie))]
        num_splits_to_process = max(1, max_frames // frames_per_split)
    rng = np.random.default_rng(seed)
    # rigid without sensor defects: on the noise probe's program (the kernel's own mean
    # step inpaints the defects in the frames it averages)
    if params.rigid is params and not params.inpaint_defects:
        mean_registered = partial(_probe_mean, params)
    else:
        mean_registered = params.mean_registered
    for _ in range(niter):
        chosen = splits
        if num_splits_to_process is not None and num_splits_to_process < len(splits):
            pick = np.sort(rng.choice(len(splits), size=num_splits_to_process, replace=False))
            chosen = [splits[i] for i in pick]
        means, shifts, devs = [], [], []
        for a, b in chosen:
            m, s, d = mean_registered(movie, tmpl, a, b)
            means.append(m)
            shifts.append(s)
            devs.append(d)
            if on_split is not None:
                on_split()
        last = np.concatenate(shifts)
        tmpl = centre(nanmedian(np.stack(means)), last)
        tmpl = params.recentre(tmpl, devs)
    return TemplateEstimate(tmpl, calibration, last)
