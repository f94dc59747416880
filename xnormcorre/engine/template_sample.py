"""The frame sample of template estimation (NumPy; never imports xarray).

What estimation reads once from a movie -- up to 100 evenly spaced frames
(:func:`survey`) -- and what comes from it alone: the sensor defects, the intensity
scale, the noise model (:func:`calibrate`) and the initial template
(:func:`initial_template`: the densest cluster's median, the sample registered to it,
averaged and centred).  The iterations over the whole movie that follow are in
:mod:`xnormcorre.engine.template`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import ndimage

from .borders import fill_edges, fill_invalid
from .cluster import densest_cluster
from .config import Calibration, scale_for
from .defects import find_defects, inpaint, moving_points
from .fourier import fourier_shift_np
from .noise import UNIFORM, NoiseModel, fit_noise_model

if TYPE_CHECKING:  # pragma: no cover
    from .config import RigidParams

__all__ = [
    "Subsample",
    "Survey",
    "TemplateEstimate",
    "calibrate",
    "calibrate_survey",
    "centre",
    "displacement",
    "frame_sums",
    "initial_from_survey",
    "initial_template",
    "inside_range",
    "mean_of_sums",
    "nanmedian",
    "sample_indices",
    "survey",
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


def _at_bound(shifts: np.ndarray, params: RigidParams) -> np.ndarray:
    """Whether each shift (``(..., 2)``) reached the search bound (within 0.5 px) on
    either axis."""
    return ~(np.abs(shifts) < np.asarray(params.max_shifts, np.float64) - 0.5).all(axis=-1)


def inside_range(shifts: np.ndarray, params: RigidParams) -> np.ndarray:
    """Frames whose shift is not at the search bound (their registration is trusted)."""
    ok = ~_at_bound(shifts, params)
    return ok if ok.sum() >= max(3, len(ok) // 4) else np.ones(len(ok), bool)


def _pass(sample: np.ndarray, template: np.ndarray, params: RigidParams) -> tuple[np.ndarray, np.ndarray]:
    """Register ``sample`` to ``template``; mean of the frames inside the search range,
    centred on the range of all the frames' positions.  Returns ``(template, shifts)``."""
    # one registration: the mean of every frame, redone without the frames at the bound
    # only when there are such frames (the shifts do not depend on ``keep``)
    mean, shifts, _ = params.mean_registered(sample, template, 0, len(sample))
    keep = inside_range(shifts, params)
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
    shifts, frames, _ = probe.register(sample, template, origin=0)
    return shifts, frames


def _fit(frames: np.ndarray, mask) -> NoiseModel:
    """Photon-transfer fit on registered frames, sensor defects (dilated) left out."""
    valid = None if mask is None else ~ndimage.binary_dilation(mask, iterations=2)
    return fit_noise_model(frames, valid)


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
    acc, cnt = frame_sums(frames[inside_range(shifts, params)])
    return centre(mean_of_sums(acc, cnt), shifts), shifts, _fit(frames, mask)


def frame_sums(frames: np.ndarray, block: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel sum (float64) and count of the finite values of ``frames`` (N, H, W)."""
    acc = np.zeros(frames.shape[1:], np.float64)
    cnt = np.zeros(frames.shape[1:], np.float64)
    for i in range(0, len(frames), block):  # in frame order
        blk = frames[i : i + block]
        ok = np.isfinite(blk)
        acc += np.where(ok, blk, 0.0).sum(axis=0, dtype=np.float64)
        cnt += ok.sum(axis=0)
    return acc, cnt


def mean_of_sums(acc: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """The mean of each pixel over the frames that kept it in view; pixels never in view
    take the nearest mean (a template holds no NaN)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, acc / np.maximum(cnt, 1.0), np.nan)
    return fill_invalid(mean).astype(np.float32)


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


class Subsample:
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


def calibrate_survey(surveyed: Survey, params: RigidParams, defects) -> Calibration:
    """The movie's calibration from its survey alone (see :func:`calibrate`)."""
    return _first(surveyed, params, defects)[1]


def calibrate(movie, params: RigidParams, *, defects=True, n_init: int = 100) -> Calibration:
    """Sensor defects, noise model and intensity scale of a movie.

    Measured on the movie alone, as :func:`initial_template` measures them: the sensor
    defects and the scale on a sample of ``n_init`` evenly spaced frames, the noise model
    on that sample registered to its own first template (the median of its densest
    cluster of similar frames).  It does not depend on the template a run registers
    to, so a run given a template and a run that estimates one calibrate a movie
    alike.
    """
    return calibrate_survey(survey(movie, defects, n_init), params, defects)


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
    return initial_from_survey(survey(movie, defects, n_init), params, defects)


def initial_from_survey(
    surveyed: Survey, params: RigidParams, defects, weighted_pass: bool = True
) -> TemplateEstimate:
    tmpl, cal, shifts = _first(surveyed, params, defects)
    if weighted_pass:
        tmpl, shifts = _pass(surveyed.sample, tmpl, params.calibrated(cal))
    return TemplateEstimate(tmpl, cal, shifts)


def _first(surveyed: Survey, params: RigidParams, defects) -> tuple[np.ndarray, Calibration, np.ndarray]:
    """The first template of the sample, the movie's calibration and the sample's shifts:
    the densest cluster's median, one registration of the sample to it (bridged to a
    second position out of reach, see :func:`_bridged`) giving both the template and
    the noise model; found defects that moved with the tissue in that registration are
    content and are dropped from the mask (:func:`_static`).  Returns ``(template,
    calibration, shifts)``."""
    sample, mask = surveyed.sample, surveyed.mask
    cal = Calibration(mask, UNIFORM, surveyed.scale)
    p0 = params.calibrated(cal)
    est = sample if mask is None else np.asarray(inpaint(sample, mask))
    members = densest_cluster(est) if len(est) >= 6 else np.arange(len(est))
    first = nanmedian(est[members])
    # one registration of the sample: the first template and the noise model
    tmpl, shifts, noise = _first_pass(est, first, p0, mask)
    bridge = _bridged(est, members, first, shifts, p0)
    if bridge is not None:  # a second position out of reach: once more, from midway,
        again = _first_pass(est, bridge, p0, mask)
        if 2 * _n_at_bound(again[1], p0) <= _n_at_bound(shifts, p0):  # kept if it reaches them
            tmpl, shifts, noise = again
    return (
        tmpl,
        Calibration(_trusted(_static(mask, sample, shifts, defects), noise, defects), noise, cal.scale),
        shifts,
    )


def _static(mask, sample: np.ndarray, shifts: np.ndarray, defects):
    """Found defects less the points that moved with the tissue in the registered sample
    (content as sharp as a pixel, :func:`xnormcorre.engine.defects.moving_points`); a mask
    given is kept."""
    if mask is None or defects is not True:
        return mask
    mask = mask & ~moving_points(mask, sample, shifts)
    return mask if mask.any() else None


#: Share of the sample outside the densest cluster from which the other frames are looked
#: at as a second position (when the first registration put frames at the search bound).
BRIDGE_SHARE = 0.2


def _n_at_bound(shifts: np.ndarray, params: RigidParams) -> int:
    """Frames whose shift reached the search bound."""
    return int(_at_bound(shifts, params).sum())


def _bridged(
    est: np.ndarray, members: np.ndarray, first: np.ndarray, shifts: np.ndarray, params: RigidParams
) -> np.ndarray | None:
    """A first template midway between two positions of a movie further apart than
    ``max_shifts``, or None.

    The densest cluster (``members``) gives the template of one position (``first``);
    frames at another position more than ``max_shifts`` away cannot be registered to it
    (their shifts stop at the search bound or at a wrong match), and the template
    iterations that follow may then settle on a wrong match for every frame.  When the
    registration to ``first`` put frames at the search bound and at least
    :data:`BRIDGE_SHARE` of the sample lies outside the cluster, the densest cluster of
    the other frames gives a second position; if its displacement from the first
    (:func:`displacement`, searched up to twice ``max_shifts``) is out of reach, the
    template is placed midway, where both positions are in reach (the caller keeps it if
    it halves the frames at the bound at least: motion beyond any template's reach is
    left to the warnings).
    """
    if _n_at_bound(shifts, params) < 3:
        return None
    rest = np.setdiff1d(np.arange(len(est)), members)
    if len(rest) < max(3, BRIDGE_SHARE * len(est)):
        return None
    group = rest[densest_cluster(est[rest])] if len(rest) >= 6 else rest
    d = displacement(first, nanmedian(est[group]), 2 * np.asarray(params.max_shifts) - 1)
    if not _at_bound(d, params):
        return None  # the other frames are in reach after all
    return centre(first, np.stack([np.zeros(2), d]))


def displacement(a: np.ndarray, b: np.ndarray, radius) -> np.ndarray:
    """Integer displacement ``(dy, dx)`` of ``b``'s content relative to ``a``'s, up to
    ``radius`` px per axis: the peak of their phase correlation (Hann-windowed,
    smoothed by a 1-px Gaussian), for images with little noise such as medians of
    frames.

    Examples
    --------
    >>> a = np.random.default_rng(0).random((64, 64))
    >>> displacement(a, np.roll(a, (3, -9), axis=(0, 1)), (12, 12)).tolist()
    [3.0, -9.0]
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    h, w = a.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    cross = np.fft.rfft2((b - b.mean()) * win) * np.conj(np.fft.rfft2((a - a.mean()) * win))
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    smooth = np.exp(-2 * np.pi**2 * (fy**2 + fx**2))  # a Gaussian of 1 px
    cc = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-12 * np.abs(cross).max()) * smooth, s=(h, w))
    oy, ox = np.fft.fftfreq(h, 1.0 / h), np.fft.fftfreq(w, 1.0 / w)  # signed offsets
    ry, rx = np.broadcast_to(np.asarray(radius, np.float64), (2,))
    cc = np.where((np.abs(oy)[:, None] <= ry) & (np.abs(ox)[None, :] <= rx), cc, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(cc)), cc.shape)
    return np.array([oy[iy], ox[ix]])
