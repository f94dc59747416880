"""Bidirectional scan phase: estimate and remove the odd/even line offset (NumPy, unlabeled).

A resonant scanner writes every other line while the mirror sweeps back, so a small
error in the line timing displaces all the lines of one direction along ``x`` relative
to the other: edges look combed.

**Sign convention.**  The *phase* is the displacement along ``x`` of the content of the
odd scan lines (rows 1, 3, 5, ... of the full frame) relative to the even lines:
``odd_row(x) = scene(x - phase)`` when ``even_row(x) = scene(x)``.  It is corrected by
moving the odd lines by ``-phase``.  This is the package's shift convention applied to
the odd lines.  NoRMCorre's ``col_shift`` (``correct_bidirectional_offset.m``) and
suite2p's ``bidiphase`` (``registration/bidiphase.py``) report the correction, i.e.
``-phase``.

**Estimation.**  Each odd line is compared with the average of the two even lines
around it (and each even line with the average of its two odd neighbours), which
removes the half-line vertical offset between the two sets: for a scene whose
statistics do not depend on position, the cross-correlation of a line with the average
of its neighbours is symmetric about the true phase.  The phase is the ``d`` that
maximizes the Pearson correlation, over the frame interior, of the odd lines moved by
``-d/2`` and the even lines moved by ``+d/2`` (cubic B-spline interpolation; moving
both halves by opposite half-shifts makes the interpolation errors of the two sides
mirror images, so they do not bias ``d``).  The lines are first smoothed along ``x``
with a 1-px Gaussian: a filter along ``x`` cannot move the peak, and it keeps photon
noise out of the frequencies where the interpolation smooths, whose effect on the
noise would otherwise pull the estimate towards whole pixels.  A grid search over ``[-max_phase,
max_phase]`` in 0.5 px steps finds the peak, a bounded Brent search refines it.
NoRMCorre instead upsamples the odd and even halves (``imresize``) and takes the argmax
of their circular cross-correlation (0.1 px steps); suite2p takes the integer argmax of
a phase correlation.

**Correction.**  The odd lines are resampled at ``x + phase`` with a cubic B-spline,
positions beyond the frame edge take the edge value (no wrap-around); even lines are
left untouched.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..stacklevel import warn

__all__ = [
    "MIN_COLUMNS",
    "MIN_ROWS",
    "estimate_scan_phase",
    "interpolate_window_phases",
    "search_range",
    "shift_odd_rows",
    "smooth_window_phases",
    "window_bounds",
]

#: Smallest frame the estimator accepts: one odd line with an even line on each side.
MIN_ROWS = 3
#: Smallest frame width the estimator accepts.
MIN_COLUMNS = 24

_GRID_STEP = 0.5
#: The lines are smoothed along x with a Gaussian of this sigma (px) before comparison.
_PRESMOOTH = 1.0
#: Columns kept clear of the edges beyond half the search range (the presmoothing's reach).
_EDGE = 6


def search_range(width: int, max_phase: float) -> float:
    """The phase search range actually used for a frame ``width`` px wide.

    The comparison is made over the columns ``[m, width - m)`` with
    ``m = ceil(range / 2) + 6``, which must leave at least 8 columns, so the range is
    ``min(max_phase, width - 20)``.

    Examples
    --------
    >>> search_range(512, 10.0), search_range(26, 10.0)
    (10.0, 6.0)
    """
    return float(min(max_phase, width - 20))


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 2:
        raise ValueError(f"the scan phase is estimated on a 2-D (y, x) image, got shape {image.shape}")
    h, w = image.shape
    if h < MIN_ROWS or w < MIN_COLUMNS:
        raise ValueError(
            f"the scan phase needs a frame of at least {MIN_ROWS} rows and {MIN_COLUMNS} columns "
            f"(one odd line between two even lines, and room to compare them), got {h} x {w}"
        )


def _line_pairs(image: np.ndarray, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """``(odd, even)`` line pairs at the same vertical position, each ``(n_pairs, W)``.

    An odd line is paired with the mean of the even lines above and below it, an even
    line with the mean of its odd neighbours; lines without two neighbours are skipped.
    """
    h = image.shape[0]
    mid = np.arange(1, h - 1)
    neighbours = (image[:-2] + image[2:]) / 2
    is_odd = (mid + first_row) % 2 == 1
    odd = np.where(is_odd[:, None], image[1:-1], neighbours)
    even = np.where(is_odd[:, None], neighbours, image[1:-1])
    return odd, even


_SPLINE_WEIGHTS = (
    lambda t: (1 - t) ** 3 / 6,
    lambda t: (3 * t**3 - 6 * t**2 + 4) / 6,
    lambda t: (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
    lambda t: t**3 / 6,
)


def _spline_at(coef: np.ndarray, start: int, stop: int, shift: float) -> np.ndarray:
    """Cubic B-spline with coefficients ``coef`` (last axis) at ``x + shift``, ``start <= x < stop``.

    The caller keeps ``start + shift - 1 >= 0`` and ``stop + shift + 2 <= width``.
    """
    base = math.floor(shift)
    t = shift - base
    out = np.zeros((*coef.shape[:-1], stop - start))
    for k, weight in zip(range(-1, 3), _SPLINE_WEIGHTS, strict=True):
        a = start + base + k
        out += weight(t) * coef[..., a : a + stop - start]
    return out


def estimate_scan_phase(
    image: np.ndarray, *, max_phase: float = 10.0, first_row: int = 0
) -> tuple[float, float]:
    """Odd/even line offset of a (mean) image, in px along ``x``, and its correlation.

    Parameters
    ----------
    image : (H, W) array
        A mean image (the mean of many frames: noise in single frames biases nothing
        but makes the estimate noisy).  At least 3 rows and 24 columns.
    max_phase : float
        Largest offset searched, in px (it is reduced to ``W - 20`` on narrow frames,
        see :func:`search_range`).
    first_row : int
        Scan line number of the image's first row (only its parity matters): 0 when
        the image starts at the top of the frame, 1 for a crop starting on an odd line.

    Returns
    -------
    phase : float
        Displacement of the odd lines' content relative to the even lines, in px along
        ``x`` (correct it by moving the odd lines by ``-phase``).
    correlation : float
        Pearson correlation of the odd and even lines once aligned (NaN for a flat
        image, whose phase is reported as 0).

    Warns
    -----
    RuntimeWarning
        If the image has no structure (phase reported as 0), or if the best offset is
        at the edge of the search range (increase ``max_phase``).

    Examples
    --------
    >>> y, x = np.mgrid[:64, :64]
    >>> scene = lambda x, y: np.sin(x / 3.0) * np.cos(y / 5.0) + np.sin((x + y) / 7.0)
    >>> img = np.where(y % 2 == 1, scene(x - 1.5, y), scene(x, y))  # odd lines moved by +1.5 px
    >>> phase, corr = estimate_scan_phase(img)
    >>> round(phase, 2)
    1.5
    """
    image = np.asarray(image, dtype=np.float64)
    _check_image(image)
    if not np.isfinite(image).all():
        raise ValueError("the image to estimate the scan phase on holds NaN or Inf values")
    if not math.isfinite(max_phase) or max_phase <= 0:
        raise ValueError(f"max_phase must be a positive number of pixels, got {max_phase!r}")
    w = image.shape[1]
    rng = search_range(w, float(max_phase))
    # a filter along x commutes with the x offset: it cannot move the correlation peak,
    # but it band-limits the noise to frequencies the cubic spline interpolates without
    # smoothing, so the noise variance no longer depends on the fractional shift (which
    # otherwise pulls the estimate towards whole pixels)
    smoothed = ndimage.gaussian_filter1d(image, _PRESMOOTH, axis=1, mode="nearest")
    odd, even = _line_pairs(smoothed, int(first_row))
    odd_c = ndimage.spline_filter1d(odd, order=3, axis=-1, mode="mirror")
    even_c = ndimage.spline_filter1d(even, order=3, axis=-1, mode="mirror")
    m = math.ceil(rng / 2) + _EDGE
    start, stop = m, w - m

    def corr(d: float) -> float:
        a = _spline_at(odd_c, start, stop, d / 2)
        b = _spline_at(even_c, start, stop, -d / 2)
        a = a - a.mean()
        b = b - b.mean()
        den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
        return float((a * b).sum()) / den if den > 0 else math.nan

    grid = np.arange(-math.floor(rng / _GRID_STEP), math.floor(rng / _GRID_STEP) + 1) * _GRID_STEP
    values = np.array([corr(d) for d in grid])
    if not np.isfinite(values).any():
        warn(
            "the image has no structure to estimate the scan phase on (flat lines); "
            "reporting 0 -- estimate on a mean image of more frames or a brighter channel",
            RuntimeWarning,
        )
        return 0.0, math.nan
    k = int(np.nanargmax(values))
    lo, hi = max(grid[k] - _GRID_STEP, -rng), min(grid[k] + _GRID_STEP, rng)
    from scipy import optimize  # here: SciPy's optimizers take 0.15 s to import, and most runs need none

    res = optimize.minimize_scalar(
        lambda d: -corr(d), bounds=(lo, hi), method="bounded", options={"xatol": 1e-4}
    )
    phase = float(res.x)
    if abs(phase) > rng - 0.5 * _GRID_STEP:
        warn(
            f"the scan phase {phase:+.2f} px is at the edge of the search range +/-{rng:g} px; "
            "it may be larger: increase max_phase",
            RuntimeWarning,
        )
    return phase, float(-res.fun)


def shift_odd_rows(
    frames: np.ndarray, phase: float | np.ndarray, *, first_row: int = 0, dtype: np.dtype | str = np.float32
) -> np.ndarray:
    """Remove a scan phase: move the odd lines of ``frames`` by ``-phase`` along ``x``.

    Parameters
    ----------
    frames : (..., H, W) array
        Frames (any leading dims: time, channel, ...).
    phase : float or array
        The phase (px, see the module's sign convention), one value or one per
        leading index (broadcastable to ``frames.shape[:-2]``).
    first_row : int
        Scan line number of the first row (its parity says which rows are odd).
    dtype : dtype
        Output dtype (default float32).

    Returns
    -------
    array of ``frames.shape`` and ``dtype``
        Even lines unchanged; odd lines resampled at ``x + phase`` (cubic B-spline;
        positions beyond the edges take the edge value).

    Examples
    --------
    >>> f = np.tile(np.arange(20.0), (4, 1))  # a ramp along x
    >>> out = shift_odd_rows(f, 1.0)
    >>> out[1, 3:6], out[0, 3:6], out[1, -1]
    (array([4., 5., 6.], dtype=float32), array([3., 4., 5.], dtype=float32), np.float32(19.0))
    """
    frames = np.asarray(frames)
    if frames.ndim < 2:
        raise ValueError(f"frames must be (..., y, x), got shape {frames.shape}")
    lead = frames.shape[:-2]
    h, w = frames.shape[-2:]
    phases = np.broadcast_to(np.asarray(phase, dtype=np.float64), lead)
    if not np.isfinite(phases).all():
        raise ValueError("the scan phase holds NaN or Inf values")
    out = np.array(frames, dtype=dtype, order="C")  # C order: the reshaped views below write into it
    rows = np.arange((1 - first_row) % 2, h, 2)
    if rows.size == 0 or w < 2:
        return out
    flat_out = out.reshape(-1, h, w)
    flat_in = frames.reshape(-1, h, w)
    flat_ph = phases.reshape(-1)
    x = np.arange(w, dtype=np.float64)
    for value in np.unique(flat_ph):
        if value == 0:
            continue
        sel = np.flatnonzero(flat_ph == value)
        lines = flat_in[sel][:, rows].astype(np.float64)
        coef = ndimage.spline_filter1d(lines, order=3, axis=-1, mode="mirror")
        # mirror-extend the coefficients by one on each side (the 'mirror' spline is symmetric)
        coef = np.concatenate([coef[..., 1:2], coef, coef[..., -2:-1]], axis=-1)
        u = np.clip(x + value, 0, w - 1)
        i0 = np.minimum(np.floor(u).astype(np.intp), w - 2)
        t = u - i0
        acc = np.zeros(lines.shape)
        for k, weight in zip(range(-1, 3), _SPLINE_WEIGHTS, strict=True):
            acc += weight(t) * coef[..., i0 + k + 1]
        flat_out[sel[:, None], rows[None, :]] = acc.astype(dtype, copy=False)
    return out


# --------------------------------------------------------------------------- time windows
def window_bounds(n_frames: int, window: int) -> list[tuple[int, int]]:
    """Frames ``[start, stop)`` of consecutive windows of ``window`` frames.

    A last window shorter than half a window is merged into the one before it.

    Examples
    --------
    >>> window_bounds(10, 4), window_bounds(9, 4), window_bounds(3, 4)
    ([(0, 4), (4, 8), (8, 10)], [(0, 4), (4, 9)], [(0, 3)])
    """
    if n_frames < 1 or window < 1:
        raise ValueError(f"need n_frames >= 1 and window >= 1, got {n_frames} and {window}")
    starts = list(range(0, n_frames, window))
    bounds = [(a, min(a + window, n_frames)) for a in starts]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < window / 2:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def smooth_window_phases(phases: np.ndarray, smooth: int) -> np.ndarray:
    """Running median of ``smooth`` windows (odd; 1 = none): robust to a bad window, keeps drifts.

    A median of an odd number of consecutive values keeps a monotonic drift unchanged
    and removes a single outlying window.

    Examples
    --------
    >>> smooth_window_phases(np.array([0.0, 0.1, 3.0, 0.3, 0.4, 0.5]), 3)
    array([0. , 0.1, 0.3, 0.4, 0.4, 0.5])
    """
    phases = np.asarray(phases, dtype=np.float64)
    if smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smooth must be an odd number of windows >= 1, got {smooth}")
    if smooth == 1 or phases.size < 3:
        return phases.copy()
    size = min(smooth, phases.size if phases.size % 2 else phases.size - 1)
    return ndimage.median_filter(phases, size=size, mode="nearest")


def interpolate_window_phases(bounds: list[tuple[int, int]], phases: np.ndarray, n_frames: int) -> np.ndarray:
    """Per-frame phase: linear between window centres, extended linearly beyond the first/last.

    Examples
    --------
    >>> interpolate_window_phases([(0, 4), (4, 8)], np.array([0.0, 1.0]), 8)
    array([-0.375, -0.125,  0.125,  0.375,  0.625,  0.875,  1.125,  1.375])
    """
    phases = np.asarray(phases, dtype=np.float64)
    centres = np.array([(a + b - 1) / 2 for a, b in bounds])
    t = np.arange(n_frames, dtype=np.float64)
    if phases.size == 1:
        return np.full(n_frames, phases[0])
    out = np.interp(t, centres, phases)
    first = t < centres[0]
    last = t > centres[-1]
    slope0 = (phases[1] - phases[0]) / (centres[1] - centres[0])
    slope1 = (phases[-1] - phases[-2]) / (centres[-1] - centres[-2])
    out[first] = phases[0] + slope0 * (t[first] - centres[0])
    out[last] = phases[-1] + slope1 * (t[last] - centres[-1])
    return out
