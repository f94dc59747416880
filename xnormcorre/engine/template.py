"""Template estimation (NoRMCorre/CaImAn batch scheme; NumPy; never imports xarray).

The initial template is the median of up to 100 evenly spaced frames, registered to
that median and averaged (:func:`initial_template`); then, ``niter`` times, the frames
of each split are registered to the current template and the new template is the
median of the split means (:func:`estimate_template`).  The registration itself is the
pass's own (``params.mean_registered``: rigid or piecewise rigid), so this module does
not depend on the kind of registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import ndimage

from .borders import fill_edges, fill_invalid
from .cluster import densest_cluster
from .config import Calibration, scale_for
from .defects import find_defects, inpaint
from .fourier import fourier_shift_np
from .noise import UNIFORM, NoiseModel, fit_noise_model
from .runner import aligned_batch_size

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


def centre(template: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Move ``template`` to the centre of the range of positions of the frames registered
    to it (midpoint of their 5th and 95th shift percentiles: a few outlier frames do
    not move it).

    The ``±max_shifts`` search window is then centred on the motion rather than on
    wherever the initial frames happened to be, so fewer frames are clipped at the
    search bound (e.g. a movie that jumps between a few positions).  The move is a
    Fourier shift (float64), with the strip that wrapped around edge-replicated.
    """
    lo, hi = np.percentile(shifts, [5, 95], axis=0)
    med = (lo + hi) / 2
    # content moves by +med: the frames' shifts relative to the result are shifts - med
    moved = fourier_shift_np(template, med)
    return fill_edges(moved, np.minimum(-med, 0.0), np.maximum(-med, 0.0)).astype(np.float32)


def nanmedian(stack: np.ndarray) -> np.ndarray:
    """Per-pixel (NaN-)median over the first axis.

    Computed on a pixel-major copy, so that each median comes from one contiguous row.
    Without NaN the rows are sorted (NumPy's vectorized sort is several times faster
    than the partition behind :func:`numpy.median`) and the middle value, or the mean of
    the two middle values in the input's precision, is taken: the same bits as
    :func:`numpy.median`.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(6, 3, 4)).astype(np.float32)
    >>> np.array_equal(nanmedian(x), np.median(x, axis=0))
    True
    """
    n = stack.shape[0]
    if n == 1:
        return stack[0]
    flat = np.ascontiguousarray(stack.reshape(n, -1).T)
    if np.isnan(flat).any():
        return np.nanmedian(flat, axis=1).astype(np.float32).reshape(stack.shape[1:])
    flat.sort(axis=1)  # in place: flat is our own copy
    # even n, as numpy.median: the mean of the two middle values, in their dtype
    med = flat[:, n // 2] if n % 2 else (flat[:, n // 2 - 1] + flat[:, n // 2]) / flat.dtype.type(2)
    return med.astype(np.float32).reshape(stack.shape[1:])


def sample_indices(n_frames: int, n_init: int = 100) -> np.ndarray:
    """Up to ``n_init`` evenly spaced frame numbers of a movie of ``n_frames`` frames.

    Examples
    --------
    >>> sample_indices(10, 4).tolist()
    [0, 3, 6, 9]
    """
    return np.unique(np.linspace(0, n_frames - 1, min(n_frames, n_init)).round().astype(np.int64))


class TemplateEstimate(NamedTuple):
    """A template, the calibration of the movie it came from, and the shifts of the
    frames of its last pass relative to it (for diagnostics)."""

    template: np.ndarray
    calibration: Calibration
    shifts: np.ndarray


def _read_sample(movie, n_init: int) -> np.ndarray:
    idx = sample_indices(len(movie), n_init)
    # one read of the whole sample (one dask graph for a lazy movie), not one per frame
    sample = np.asarray(movie[idx], dtype=np.float32)
    bad = ~np.isfinite(sample)
    if bad.any():  # estimation only: the registration pass refuses such frames itself
        sample[bad] = np.median(sample[~bad]) if (~bad).any() else 0.0
    return sample


def _sensor_defects(sample: np.ndarray, defects) -> np.ndarray | None:
    if defects is None or defects is False:
        return None
    if defects is True:
        # on an evenly strided subset of at most ~2**18 values: a coarse scale for the tests below
        flat = sample.reshape(-1)
        spread = float(np.ptp(np.percentile(flat[:: max(1, flat.size >> 18)], [1, 99])))
        sd = sample.std(axis=0)
        # noise-free renderings (real sensors always have noise): no temporal statistics
        # tell a defect from content there
        quiet = float(np.median(sd)) <= 1e-6 * spread or float(np.mean(sd <= 1e-9 * spread)) > 0.01
        enough = sample.shape[0] >= 3 and not quiet
        mask = find_defects(sample) if enough else np.zeros(sample.shape[1:], bool)
    else:
        mask = np.asarray(defects, bool)
    return mask if mask.any() else None


def _inside(shifts: np.ndarray, params: RigidParams) -> np.ndarray:
    """Frames whose shift is not at the search bound (their registration is trusted)."""
    lim = np.asarray(params.max_shifts, np.float64) - 0.5
    ok = (np.abs(shifts) < lim).all(axis=1)
    return ok if ok.sum() >= max(3, len(ok) // 4) else np.ones(len(ok), bool)


def _pass(sample: np.ndarray, template: np.ndarray, params: RigidParams) -> tuple[np.ndarray, np.ndarray]:
    """Register ``sample`` to ``template``; mean of the frames inside the search range,
    centred on the range of all the frames' positions.  Returns ``(template, shifts)``."""
    # one registration: the mean of every frame, redone without the frames at the bound
    # only when there are such frames (the shifts do not depend on ``keep``)
    mean, shifts, _ = params.mean_registered(sample, template, 0, len(sample))
    keep = _inside(shifts, params)
    if not keep.all():
        mean = params.mean_registered(sample, template, 0, len(sample), keep)[0]
    # centred on every frame's position: a frame clipped at the bound still pulls the
    # centre towards it, so the next pass reaches it
    return centre(mean, shifts), shifts


def _registered(
    sample: np.ndarray, template: np.ndarray, params: RigidParams
) -> tuple[np.ndarray, np.ndarray]:
    """``(shifts, frames)`` of ``sample`` registered to ``template``, NaN outside the view,
    unclipped (the noise probe)."""
    probe = replace(params, border="nan", clip=False)
    shifts, frames, _ = probe.register(sample, template, with_corr=False, origin=0)
    return shifts, frames


def _fit(frames: np.ndarray, mask) -> NoiseModel:
    """Photon-transfer fit on registered frames, sensor defects (dilated) left out."""
    valid = None if mask is None else ~ndimage.binary_dilation(mask, iterations=2)
    return fit_noise_model(frames, valid)


def _noise(sample: np.ndarray, template: np.ndarray, params: RigidParams, mask) -> NoiseModel:
    """Photon-transfer fit on the sample registered to ``template`` (NaN outside the view)."""
    return _fit(_registered(sample, template, params)[1], mask)


def _first_pass(
    est: np.ndarray, template: np.ndarray, params: RigidParams, mask
) -> tuple[np.ndarray, np.ndarray, NoiseModel]:
    """One registration of the sample (sensor defects already inpainted in ``est``) to the
    first template: the mean of the frames inside the search range where each pixel stayed in
    view, centred on the range of the frames' positions (as :func:`_pass`), and the noise
    model fitted to the same registered frames.  Returns ``(template, shifts, noise)``."""
    # est: defects inpainted (the probe inpaints its estimate again, a no-op, and moves est):
    # the probe's program of the calibration, no other
    shifts, frames = _registered(est, template, params)
    acc, cnt = _sums(frames[_inside(shifts, params)])
    return centre(_mean(acc, cnt), shifts), shifts, _fit(frames, mask)


def _sums(frames: np.ndarray, block: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel sum (float64) and count of the finite values of ``frames`` (N, H, W)."""
    acc = np.zeros(frames.shape[1:], np.float64)
    cnt = np.zeros(frames.shape[1:], np.float64)
    for i in range(0, len(frames), block):  # in frame order
        blk = frames[i : i + block]
        ok = np.isfinite(blk)
        acc += np.where(ok, blk, 0.0).sum(axis=0, dtype=np.float64)
        cnt += ok.sum(axis=0)
    return acc, cnt


def _mean(acc: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """The mean of each pixel over the frames that kept it in view; pixels never in view
    take the nearest mean (a template holds no NaN)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, acc / np.maximum(cnt, 1.0), np.nan)
    return fill_invalid(mean).astype(np.float32)


def _probe_mean(params: RigidParams, movie, template: np.ndarray, start: int, stop: int):
    """``params.mean_registered`` (rigid, no sensor defects) on the noise probe's compiled
    program: ``(mean, shifts, None)`` of frames ``start:stop`` registered to ``template``,
    each pixel averaged over the frames that kept it in view.  One compiled program fewer
    in a run; the frames come back one read batch at a time (bounded memory)."""
    h, w = template.shape
    acc = np.zeros((h, w), np.float64)
    cnt = np.zeros((h, w), np.float64)
    shifts = np.empty((stop - start, 2), np.float32)
    step = aligned_batch_size(params.batch_size, (h, w))
    probe = replace(params, border="nan", clip=False)
    for a in range(start, stop, step):
        b = min(stop, a + step)
        s, frames, _ = probe.register(movie, template, start=a, stop=b, with_corr=False, origin=a - start)
        shifts[a - start : b - start] = s
        da, dc = _sums(frames)
        acc += da
        cnt += dc
    return _mean(acc, cnt), shifts, None


class Survey(NamedTuple):
    """What estimation reads once from a movie: the frame sample, the sensor defects
    found in it (or given), the intensity scale and the sample's frame numbers."""

    sample: np.ndarray
    mask: np.ndarray | None
    scale: float
    index: np.ndarray  # the frame numbers of ``sample`` (sorted)


def survey(movie, defects, n_init: int = 100) -> Survey:
    """Read the sample of ``n_init`` evenly spaced frames once: its sensor defects
    (``defects``: find them (True), none (False) or a mask) and intensity scale."""
    sample = _read_sample(movie, n_init)
    # the scale from an evenly strided subset of at most ~2**20 values: any power of two
    # near the data's magnitude gives the same registration, bit for bit
    flat = sample.reshape(-1)
    scale = scale_for(flat[:: -(-flat.size // (1 << 20))])
    return Survey(sample, _sensor_defects(sample, defects), scale, sample_indices(len(movie), n_init))


class _Subsample:
    """Frames ``index`` of ``movie`` as a movie of ``len(index)`` frames (``view[a:b]``);
    the frames the survey holds are taken from it, not read again."""

    def __init__(self, movie, index: np.ndarray, surveyed: Survey):
        self._movie, self._index, self._held = movie, index, surveyed.sample
        self._pos = np.searchsorted(surveyed.index, index).clip(max=len(surveyed.index) - 1)
        self._has = surveyed.index[self._pos] == index
        self.shape = (len(index), *surveyed.sample.shape[1:])

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, key: slice) -> np.ndarray:
        idx, pos, has = self._index[key], self._pos[key], self._has[key]
        out = np.empty((len(idx), *self.shape[1:]), np.float32)
        out[has] = self._held[pos[has]]
        if not has.all():
            out[~has] = np.asarray(self._movie[idx[~has]], np.float32)
        return out


def _calibrate(surveyed: Survey, params: RigidParams, template: np.ndarray, defects) -> Calibration:
    cal = Calibration(surveyed.mask, UNIFORM, surveyed.scale)
    noise = _noise(surveyed.sample, np.asarray(template, np.float32), params.calibrated(cal), surveyed.mask)
    return Calibration(_trusted(surveyed.mask, noise, defects), noise, surveyed.scale)


def calibrate(
    movie, params: RigidParams, template: np.ndarray, *, defects=True, n_init: int = 100
) -> Calibration:
    """Sensor defects, noise model and scale of a movie registered to a given ``template``."""
    return _calibrate(survey(movie, defects, n_init), params, template, defects)


def _trusted(mask, noise: NoiseModel, defects):
    """Found defects are trusted only where the movie has a measurable noise model: in a
    noise-free rendering nothing tells a defect from content.  A mask given is kept."""
    return mask if (noise.fitted or defects is not True) else None


def initial_template(movie, params: RigidParams, n_init: int = 100, *, defects=True) -> TemplateEstimate:
    """A robust initial template of a movie, and the movie's calibration.

    From up to ``n_init`` evenly spaced frames: sensor defects are found from their
    temporal statistics (:func:`xnormcorre.engine.defects.find_defects`) and left out of
    every estimate; the frames that belong together -- the densest group of mutually
    similar frames (:func:`xnormcorre.engine.cluster.densest_cluster`) -- give a first
    template (their median), so that a movie that jumps between positions or alternates
    between two never starts from a double image; the sample is registered to it, the
    frames inside the search range are averaged and the mean is centred on the range of
    their positions (the NoRMCorre ``init_batch`` step).  The noise model of the pixels
    is fitted to the same registered frames (:func:`xnormcorre.engine.noise.fit_noise_model`;
    one registration gives both) and a second, noise-weighted pass gives the template.
    (:func:`estimate_template` skips that second pass when template iterations follow: they
    register with the noise weights themselves.)
    """
    return _initial(survey(movie, defects, n_init), params, defects)


def _initial(surveyed: Survey, params: RigidParams, defects, weighted_pass: bool = True) -> TemplateEstimate:
    sample, mask = surveyed.sample, surveyed.mask
    cal = Calibration(mask, UNIFORM, surveyed.scale)
    p0 = params.calibrated(cal)
    est = sample if mask is None else np.asarray(inpaint(sample, mask))
    members = densest_cluster(est) if len(est) >= 6 else np.arange(len(est))
    # one registration of the sample: the first template and the noise model
    tmpl, shifts, noise = _first_pass(est, nanmedian(est[members]), p0, mask)
    cal = Calibration(_trusted(mask, noise, defects), noise, cal.scale)
    if weighted_pass:
        tmpl, shifts = _pass(sample, tmpl, params.calibrated(cal))
    return TemplateEstimate(tmpl, cal, shifts)


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
    final_calibration: bool = True,
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
    :func:`initial_template`, or is ``calibration`` (or measured against ``init`` by
    :func:`calibrate`) when ``init`` is given; every pass uses it.  The calibration
    returned is measured again against the final template (as a run given that template
    measures it), unless ``final_calibration`` is False: then it is the one the passes
    used (one registration of the sample and one noise fit fewer, for a caller that
    refines the template further and measures the calibration against its own result).
    Returns a :class:`TemplateEstimate`.
    """
    n = len(movie)
    # read once: the initial template and the calibrations
    surveyed = survey(movie, defects) if sample is None else sample
    if init is None:
        # the iterations register with the noise weights: no weighted pass of the sample first
        tmpl, calibration, last = _initial(surveyed, params.rigid, defects, weighted_pass=niter == 0)
    else:
        tmpl = np.asarray(init, np.float32)
        if calibration is None:
            calibration = _calibrate(surveyed, params.rigid, tmpl, defects)
        last = np.zeros((0, 2), np.float32)
    params = params.calibrated(calibration)
    splits = split_bounds(n, frames_per_split)
    if num_splits_to_process is None and max_frames is not None:
        if max_frames < min(n, frames_per_split):
            # a bounded, evenly spaced sample of the whole movie, as one split
            movie = _Subsample(movie, sample_indices(n, max_frames), surveyed)
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
    # the movie's calibration against the final template, as a run given that template
    # measures it: rigid(movie) and rigid(movie, template=rigid(movie).template) agree bit for bit
    if final_calibration:
        calibration = _calibrate(surveyed, params.rigid, tmpl, defects)
    return TemplateEstimate(tmpl, calibration, last)
