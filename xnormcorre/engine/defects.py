"""Static sensor defects: find them from a movie's temporal statistics, fill them for estimation.

Hot, dead and stuck pixels and bright or dark lines sit at fixed *sensor* coordinates, so they do
not move with the tissue. Left in the frames they pull every correlation peak towards zero lag.
:func:`find_defects` finds them in a sample of raw frames; :func:`inpaint` replaces them by the mean
of their valid neighbours before shifts are estimated (the corrected output keeps the raw values).
The registration kernels fill the same values by :func:`inpaint_at`, which visits only the defects
and their neighbourhoods (:func:`inpaint_plan`), not every pixel of every frame.

Only NumPy, SciPy and JAX are used here (no xarray, no other package modules).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from . import compile_cache

compile_cache.enable()  # before the first kernel compiles: later processes load it from disk

__all__ = [
    "FOLLOW_RATIO",
    "MOVE_SHARE",
    "find_defects",
    "inpaint",
    "inpaint_at",
    "inpaint_plan",
    "moving_points",
]

# Thresholds, in robust standard deviations of the statistic they apply to.
_K_POINT = 6.0  # a pixel (or a 1x2, 2x1, 2x2 cluster) above all / below all pixels around it
_K_LINE = 6.0  # a row / column segment offset from both rows / columns beside it
_STUCK_RATIO = 0.2  # temporal SD below this fraction of its neighbours' and of the quiet pixels'
_LINE_WINDOW = 15  # running-median length (px) along a line; segments of >= 8 px are found
_TRIM = 0.2  # fraction trimmed at each end for the temporal (trimmed) mean


def _robust_sd(x: np.ndarray) -> float:
    """Robust SD of ``x`` about its median: MAD, or a wider quantile where the MAD is 0."""
    dev = np.abs(x - np.median(x)).ravel()
    for q, z in ((0.5, 0.6744897501960817), (0.9, 1.6448536269514722), (0.99, 2.5758293035489004)):
        s = float(np.quantile(dev, q)) / z
        if s > 0:
            return s
    return 0.0


def _box_extremes(a: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """For every ``shape`` box (top-left at each pixel): the min and max over the box and over the
    one-pixel ring around it (the ring's pixels outside the frame are left out).

    Returns ``(inner_min, inner_max, ring_min, ring_max)``, each ``(H, W)``.
    """
    h, w = a.shape
    by, bx = shape
    p = np.pad(a, ((1, by), (1, bx)), constant_values=np.nan)
    inner, ring = [], []
    for dy in range(-1, by + 1):
        for dx in range(-1, bx + 1):
            s = p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            (inner if (0 <= dy < by and 0 <= dx < bx) else ring).append(s)
    inner_a, ring_a = np.stack(inner), np.stack(ring)
    with np.errstate(invalid="ignore"):
        return inner_a.min(0), inner_a.max(0), np.nanmin(ring_a, 0), np.nanmax(ring_a, 0)


def _spread_box(flags: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mark every pixel of each ``shape`` box whose top-left pixel is flagged."""
    out = np.zeros_like(flags)
    h, w = flags.shape
    for dy in range(shape[0]):
        for dx in range(shape[1]):
            out[dy:, dx:] |= flags[: h - dy, : w - dx]
    return out


def _neighbours(a: np.ndarray, outside: float | None = None) -> np.ndarray:
    """The 8 neighbours of each pixel, ``(8, H, W)``: mirror padded, or ``outside`` beyond the frame."""
    h, w = a.shape
    p = np.pad(a, 1, mode="reflect") if outside is None else np.pad(a, 1, constant_values=outside)
    return np.stack(
        [p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    )


def _median_of_neighbours(a: np.ndarray) -> np.ndarray:
    """``np.median(_neighbours(a), axis=0)`` (the same bits), computed pixel-major: the mean of the
    4th and 5th of each pixel's 8 sorted neighbours."""
    h, w = a.shape
    p = np.pad(a, 1, mode="reflect")
    nb = np.empty((h, w, 8), a.dtype)
    i = 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                nb[..., i] = p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                i += 1
    nb.sort(axis=-1)
    return (nb[..., 3] + nb[..., 4]) / 2


def _temporal_stats(a: np.ndarray, trim: float, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ``trim``-trimmed temporal mean and temporal SD of ``a`` (N, H, W), in float64.

    The same bits as ``np.sort(a64, axis=0)[k : N - k].mean(0)`` and ``a64.std(0)`` of the float64
    copy ``a64``, computed on blocks of pixels in ``a``'s own dtype: each block is sorted pixel-major
    (contiguous rows: several times faster than sorting a float64 stack along time), then its middle
    values are added in sorted order in float64, as the stack's mean adds them.  Blocks of ~1000
    pixels keep the transposes in cache."""
    n, h, w = a.shape
    k = int(trim * n)
    flat = a.reshape(n, h * w)
    level = np.empty(h * w, np.float64)
    sd = np.empty(h * w, np.float64)
    for c in range(0, h * w, block):
        blk = flat[:, c : c + block]
        sd[c : c + block] = blk.astype(np.float64).std(0)
        srt = np.ascontiguousarray(blk.T)
        srt.sort(axis=1)
        level[c : c + block] = np.ascontiguousarray(srt[:, k : n - k].T).astype(np.float64).mean(0)
    return level.reshape(h, w), sd.reshape(h, w)


def _beside(a: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows before / after each row along ``axis``; beyond the first / last row, the linear
    extrapolation of the next two (so a smooth gradient at the border is not a line)."""
    t = np.take
    before = np.concatenate(
        [2 * t(a, [1], axis) - t(a, [2], axis), t(a, range(a.shape[axis] - 1), axis)], axis
    )
    after = np.concatenate(
        [t(a, range(1, a.shape[axis]), axis), 2 * t(a, [-2], axis) - t(a, [-3], axis)], axis
    )
    return before, after


def _beside_rows(frames: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_beside(frames, 1)`` at ``rows`` only (the same values, without moving every frame), float64."""
    n = frames.shape[1]
    f64 = np.float64
    # indexing, not np.take: take copies a transposed (column-pass) view whole first
    before = frames[:, np.maximum(rows - 1, 0)].astype(f64)
    first = rows == 0
    if first.any():
        before[:, first] = 2 * frames[:, [1]].astype(f64) - frames[:, [2]]
    after = frames[:, np.minimum(rows + 1, n - 1)].astype(f64)
    last = rows == n - 1
    if last.any():
        after[:, last] = 2 * frames[:, [-2]].astype(f64) - frames[:, [-3]]
    return before, after


def _running_median(x: np.ndarray, size: int, cval: float = 0.0, chunk: int = 1 << 20) -> np.ndarray:
    """Median of the ``size`` (odd) values centred on each element along the last axis, ``cval``
    beyond the ends: ``ndimage.median_filter(x, size=(1, ..., size), mode="constant", cval=cval)``
    (the same values: the middle element of each window), by partitioning sliding windows, a few
    times faster than the generic rank filter.  Rows are done ``chunk // size`` elements at a time."""
    r = size // 2
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    step = max(1, chunk // (size * x.shape[-1]))
    for i in range(0, flat.shape[0], step):
        p = np.pad(flat[i : i + step], ((0, 0), (r, r)), constant_values=cval)
        win = sliding_window_view(p, size, axis=1).copy()
        win.partition(r, axis=-1)
        out[i : i + step] = win[..., r]
    return out.reshape(x.shape)


def _line_rows(level: np.ndarray, noise: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Bright or dark row segments (rows only; call on transposes for columns).

    Candidates come from the temporal level ``level`` (H, W); a candidate is kept only where the
    median over the ``frames`` (N, H, W; float32 or float64, computed in float64) of the per-frame
    offset is at least half the level's offset, i.e. where the line is there in most frames, not a
    moving dendrite that visits that row."""
    up, down = _beside(level, 0)
    flags = np.zeros(level.shape, bool)
    for sign in (1.0, -1.0):
        d = np.minimum(sign * (level - up), sign * (level - down))
        # beyond the frame: the frame's typical value (mirroring would double a short segment there)
        run = _running_median(d, _LINE_WINDOW, cval=float(np.median(d)))
        z = run - np.median(run)
        scale = max(_robust_sd(run), float(np.median(noise)) / np.sqrt(_LINE_WINDOW))
        cand = z > _K_LINE * scale if scale > 0 else z > 0
        rows = np.unique(np.nonzero(cand)[0])
        if rows.size == 0:
            continue
        # unbiased (linear) offsets for the temporal check
        lin = _running_median(sign * (level - (up + down) / 2)[rows], _LINE_WINDOW)
        f_up, f_down = _beside_rows(frames, rows)
        per_frame = sign * (frames[:, rows].astype(np.float64) - (f_up + f_down) / 2)
        per_frame = _running_median(per_frame, _LINE_WINDOW)
        steady = np.median(per_frame, axis=0) >= 0.5 * lin
        found = np.zeros_like(flags)
        found[rows] = cand[rows] & steady
        # a line is a segment of at least half the window: drop shorter runs
        runs, _ = ndimage.label(found, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])
        size = np.bincount(runs.ravel())
        found &= (size >= _LINE_WINDOW // 2 + 1)[runs]
        # a running median can stop a pixel or two short of a segment's end: grow the segments
        # along the line over pixels that are themselves offset by half the threshold
        strong = d - np.median(run) > 0.5 * _K_LINE * scale
        for _ in range(2):
            side = np.zeros_like(found)
            side[:, 1:] |= found[:, :-1]
            side[:, :-1] |= found[:, 1:]
            found |= side & strong
        flags |= found
        if sign > 0 and flags.any():
            # bright lines found: fill them from the rows beside, so the row next to one is not dark
            level = np.where(flags, (up + down) / 2, level)
            frames = frames.astype(np.float64)  # (rare) filled in float64
            f_up, f_down = _beside(frames, 1)
            frames = np.where(flags, (f_up + f_down) / 2, frames)
            up, down = _beside(level, 0)
    return flags


def _noise_of_level(level: np.ndarray, sd: np.ndarray, ref: np.ndarray, bins: int = 16) -> np.ndarray:
    """Temporal noise SD expected at each pixel from its neighbours' level.

    The temporal SD of a pixel is its noise plus the change of the content moving over it. The
    noise depends on the brightness (Poisson-Gaussian): in each of ``bins`` brightness bins, the
    lower quartile of the temporal SD (the pixels where the content hardly changes) is taken as the
    noise at that brightness, interpolated at the median level of each pixel's 8 neighbours (so a
    defect does not set its own noise: ``ref``, the median of those neighbours)."""
    edges = np.quantile(level, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, level.ravel(), side="right") - 1, 0, bins - 1)
    centres, floor = [], []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            centres.append(float(np.median(level.ravel()[sel])))
            floor.append(float(np.quantile(sd.ravel()[sel], 0.25)))
    return np.interp(ref, centres, floor)


def find_defects(sample: np.ndarray) -> np.ndarray:
    """Static sensor defects (hot, dead, stuck pixels, bright or dark lines) of a raw movie sample.

    Parameters
    ----------
    sample : ndarray, shape (N, H, W)
        Raw (unregistered) frames spread evenly through the movie, ``N >= 3`` (20-100 is typical).
        Finite values; any real dtype (computed in float64).

    Returns
    -------
    ndarray of bool, shape (H, W)
        True where a pixel is a defect.

    Notes
    -----
    Two per-pixel temporal statistics are formed: the level ``m`` (the 20 %-trimmed temporal mean)
    and the temporal SD ``s``. The noise of ``m`` is ``n = max(noise(b), s_nb / 2) / sqrt(N)``,
    where ``b`` and ``s_nb`` are the median level and median ``s`` of the pixel's 8 neighbours (a
    defect never sets its own noise) and ``noise(b)`` is the lower quartile of ``s`` among pixels of
    brightness ``b`` (16 brightness bins: the pixels where moving content adds least, so the
    Poisson-Gaussian noise at that brightness). Every threshold is in robust SD units (median
    absolute deviation, or a wider quantile where the MAD is 0) of a statistic measured on the
    sample itself, so the mask does not change when the movie is scaled or offset. A pixel is a
    defect when

    * **hot / dead point**: for a 1x1, 1x2, 2x1 or 2x2 box, the lowest ``m`` inside the box exceeds
      the highest ``m`` on the one-pixel ring around it (or the highest inside is below the lowest
      on the ring) by more than 6 SD, where the SD is the larger of ``n`` and the robust SD of
      ``m - median of its 8 neighbours`` over the frame (content texture). A thin line or an edge
      always has ring pixels as bright as the box, so it is never a point;
    * **stuck**: ``s`` is below 0.2 times both the 4th-lowest ``s`` of its 8 neighbours (so up to a
      2x2 cluster is found) and the 5th percentile of ``s`` over the frame. In movies where more
      than 5 % of the pixels are constant (noise-free renderings) that percentile is 0: nothing is
      stuck in them;
    * **line**: along a row, the 15-px running median of ``min(m - m_above, m - m_below)`` (bright)
      or ``min(m_above - m, m_below - m)`` (dark) exceeds its frame median by more than 6 robust SD
      of that running-median image (or ``median(n) / sqrt(15)``, if larger), over a run of at least
      8 px, and the line is there in most frames: the median over frames of each frame's own offset
      ``f - (f_above + f_below) / 2`` (15-px running median) is at least half the level's. A moving
      dendrite that visits a row in a minority of the frames fails that test. Runs are then grown
      by up to 2 px along the line over pixels offset by half the threshold (the running median
      can stop short of a segment's end). Bright lines are found and filled first, so that the row
      beside a bright line is not taken for a dark one. The same for columns; beyond the first and
      last row the linear extrapolation of the next two rows stands in for the missing neighbour.

    Defects too faint for these tests at the sample's noise (e.g. a hot pixel at 3x the median of
    a 1-photon/px movie with 20 frames) are not found; the more frames, the fainter the defects found.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sample = rng.normal(100.0, 10.0, (20, 32, 32)).astype(np.float32)
    >>> sample[:, 5, 7] = 1000.0  # hot pixel
    >>> sample[:, 20, :] += 40.0  # bright row
    >>> mask = find_defects(sample)
    >>> bool(mask[5, 7]), bool(mask[20].all()), int(mask.sum())
    (True, True, 33)
    """
    a = np.asarray(sample)
    if a.ndim != 3 or a.shape[0] < 3 or min(a.shape[1:]) < 3:
        raise ValueError(f"sample must be (N, H, W) with N >= 3 and H, W >= 3; got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise TypeError(f"sample must be a real numeric array; got dtype {a.dtype}")
    # float32 holds these exactly: the statistics are computed on them as they are (in float64)
    exact32 = a.dtype in (np.float32, np.float16) or (a.dtype.kind in "iu" and a.dtype.itemsize <= 2)
    a = a.astype(np.float32 if exact32 else np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError("sample must be finite (no NaN or inf)")
    n = a.shape[0]
    level, sd = _temporal_stats(a, _TRIM)

    # half the neighbours' temporal SD bounds it from below where moving content dominates the
    # temporal SD (noise-free or very bright movies: the content's own change is the uncertainty)
    around = _median_of_neighbours(level)
    noise = np.maximum(_noise_of_level(level, sd, around), 0.5 * _median_of_neighbours(sd)) / np.sqrt(n)
    texture = _robust_sd(level - around)
    scale = np.maximum(noise, texture)

    mask = np.zeros(level.shape, bool)
    for shape in ((1, 1), (1, 2), (2, 1), (2, 2)):
        in_min, in_max, ring_min, ring_max = _box_extremes(level, shape)
        thr = _K_POINT * scale
        point = ((in_min - ring_max) > thr) | ((ring_min - in_max) > thr)
        mask |= _spread_box(point, shape)

    quiet = float(np.quantile(sd, 0.05))
    ref = np.minimum(np.partition(_neighbours(sd, np.inf), 3, axis=0)[3], quiet)
    mask |= sd < _STUCK_RATIO * ref

    mask |= _line_rows(level, noise, a)
    mask |= _line_rows(level.T, noise.T, a.transpose(0, 2, 1)).T
    return mask


#: :func:`moving_points` decides only where at most this share of the frames sits within
#: half a pixel of the frames' median position: with less motion, a static defect and
#: content look alike in the raw frames and in the registered ones.
MOVE_SHARE = 0.5
#: A point is content when its contrast in registered coordinates is at least this
#: fraction of its contrast in the raw frames (a static defect keeps about the share of
#: frames at the median position, content keeps all of it or sharpens).
FOLLOW_RATIO = 0.75


def _contrast(frames: np.ndarray, inner: np.ndarray, ring: np.ndarray) -> float:
    """Mean over ``frames`` (N, h, w) of the mean of the ``inner`` pixels less the mean of
    the ``ring`` pixels."""
    return float(np.mean(frames[:, inner].mean(axis=1) - frames[:, ring].mean(axis=1)))


def moving_points(mask: np.ndarray, sample: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """The points of ``mask`` that move with the tissue: content, not sensor defects.

    :func:`find_defects` sees the raw frames only, and a bright speck of content as sharp
    as a pixel passes its point test as a hot pixel would. Once the sample is registered,
    the two differ: a sensor defect stays at its pixel while the tissue moves, content
    moves with it. For each point of ``mask`` (a connected group of at most 2x2 px), its
    contrast against the one-pixel ring around it is measured in the raw frames and in
    the frames moved by their integer shifts relative to the frames' median position; it
    moves with the tissue when the registered contrast has the same sign and at least
    :data:`FOLLOW_RATIO` of the raw one (a static defect keeps only the share of frames that
    sit at the median position). Points whose pixels do not fluctuate as the ring does
    (stuck, saturated or dead pixels: content always fluctuates) and lines are never
    returned, and nothing is returned when more than :data:`MOVE_SHARE` of the frames sit
    within half a pixel of the median position (too little motion to tell).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        Defects found in ``sample`` (:func:`find_defects`).
    sample : ndarray, shape (N, H, W)
        The raw frames the mask was found in.
    shifts : ndarray, shape (N, 2)
        Displacement ``(y, x)`` of each frame's content relative to one template.

    Returns
    -------
    ndarray of bool, shape (H, W)
        True on the points of ``mask`` that moved with the tissue.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> walk = rng.integers(-3, 4, (41, 2))
    >>> walk -= np.median(walk, axis=0).astype(int)  # the speck's median position: (20, 20)
    >>> scene = rng.normal(100.0, 3.0, (48, 48))
    >>> scene[20, 20] = 400.0  # a bright speck of content
    >>> sample = np.stack([np.roll(scene, tuple(s), (0, 1)) for s in walk])
    >>> sample = sample + rng.normal(0.0, 3.0, sample.shape)
    >>> sample[:, 30, 10] += 300.0  # a hot pixel
    >>> mask = np.zeros((48, 48), bool)
    >>> mask[20, 20] = mask[30, 10] = True  # as a raw-frame test might flag them
    >>> moved = moving_points(mask, sample, walk.astype(float))
    >>> bool(moved[20, 20]), bool(moved[30, 10])
    (True, False)
    """
    mask = np.asarray(mask, bool)
    a = np.asarray(sample)  # read only around the points, in float64 there
    shifts = np.asarray(shifts, np.float64)
    if a.ndim != 3 or mask.shape != a.shape[1:] or shifts.shape != (len(a), 2):
        raise ValueError(
            "moving_points needs sample (N, H, W), mask (H, W) and shifts (N, 2); got "
            f"sample {a.shape}, mask {mask.shape}, shifts {shifts.shape}"
        )
    out = np.zeros(mask.shape, bool)
    if not mask.any() or len(a) < 3:
        return out
    n, h, w = a.shape
    d = np.rint(shifts - np.median(shifts, axis=0)).astype(np.int64)
    if np.mean(np.all(d == 0, axis=1)) > MOVE_SHARE:
        return out
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
    for k, (sy, sx) in enumerate(ndimage.find_objects(labels), start=1):
        if sy.stop - sy.start > 2 or sx.stop - sx.start > 2:
            continue  # a line or a larger group: not a point
        y0, y1 = max(sy.start - 1, 0), min(sy.stop + 1, h)
        x0, x1 = max(sx.start - 1, 0), min(sx.stop + 1, w)
        inner = labels[y0:y1, x0:x1] == k
        ring = ~mask[y0:y1, x0:x1]
        if not ring.any():
            continue
        raw = a[:, y0:y1, x0:x1].astype(np.float64)
        sd = raw.std(axis=0)
        if sd[inner].min() < 0.5 * np.median(sd[ring]):
            continue  # stuck, saturated or dead: content fluctuates
        c_raw = _contrast(raw, inner, ring)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        py, px = yy[None] + d[:, 0, None, None], xx[None] + d[:, 1, None, None]
        ok = (py.min(axis=(1, 2)) >= 0) & (px.min(axis=(1, 2)) >= 0)
        ok &= (py.max(axis=(1, 2)) < h) & (px.max(axis=(1, 2)) < w)
        if ok.sum() < n // 2 or c_raw == 0.0:
            continue
        t = np.nonzero(ok)[0]
        c_reg = _contrast(a[t[:, None, None], py[t], px[t]].astype(np.float64), inner, ring)
        if c_reg / c_raw >= FOLLOW_RATIO:
            out |= labels == k
    return out


def _box_sum(x: jax.Array, r: int) -> jax.Array:
    """Sum over the (2r+1)^2 box around each pixel of the last two axes (zero outside the frame)."""
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)]
    p = jnp.pad(x, pad)
    rows = sum(p[..., i : i + h, :] for i in range(2 * r + 1))
    return sum(rows[..., :, j : j + w] for j in range(2 * r + 1))


@compile_cache.kernel_jit
def inpaint(frames: jax.Array, mask: jax.Array) -> jax.Array:
    """Replace masked pixels by the mean of their unmasked neighbours (float32, jittable).

    Parameters
    ----------
    frames : array, float32, shape (H, W) or (B, H, W)
    mask : array of bool, shape (H, W)
        True where a pixel is replaced.

    Returns
    -------
    array, float32, same shape as ``frames``
        Unmasked pixels unchanged (same bits). A masked pixel gets the mean of its unmasked
        8-neighbours; where all 8 are masked, the mean of the unmasked pixels of its 5x5
        neighbourhood; where those are all masked too, the mean of the frame's unmasked pixels
        (0 if every pixel is masked). Never NaN for finite input.

    Examples
    --------
    >>> f = jnp.arange(16, dtype=jnp.float32).reshape(4, 4)
    >>> m = jnp.zeros((4, 4), bool).at[1, 1].set(True)
    >>> float(inpaint(f, m)[1, 1])  # mean of 0, 1, 2, 4, 6, 8, 9, 10
    5.0
    """
    frames = jnp.asarray(frames)
    if frames.dtype != jnp.float32:
        raise TypeError(f"frames must be float32; got {frames.dtype}")
    if frames.ndim not in (2, 3):
        raise ValueError(f"frames must be (H, W) or (B, H, W); got shape {frames.shape}")
    mask = jnp.asarray(mask, bool)
    if mask.shape != frames.shape[-2:]:
        raise ValueError(f"mask must have the frames' (H, W) shape {frames.shape[-2:]}; got {mask.shape}")
    valid = (~mask).astype(jnp.float32)
    x = jnp.where(mask, jnp.float32(0), frames)
    fill = jnp.zeros_like(frames)
    done = jnp.zeros(mask.shape, bool)
    for r in (1, 2):
        cnt = _box_sum(valid, r)
        tot = _box_sum(x, r)
        ok = (cnt > 0) & ~done
        fill = jnp.where(ok, tot / jnp.maximum(cnt, 1.0), fill)
        done = done | ok
    nvalid = valid.sum()
    glob = x.sum(axis=(-2, -1), keepdims=True) / jnp.maximum(nvalid, 1.0)
    fill = jnp.where(done, fill, glob)
    return jnp.where(mask, fill, frames)


#: Smallest number of entries of an :func:`inpaint_plan` (plans are padded to a power of two
#: at least this large, so that movies with up to this many defects -- most movies -- share
#: one compiled kernel; a plan's entries cost ~25 reads each per frame).
_PLAN_MIN = 256


def inpaint_plan(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where and from what :func:`inpaint_at` fills each defect of ``mask`` (NumPy, once per movie).

    :func:`inpaint` decides, for each masked pixel, from the mask alone whether its unmasked
    8-neighbours, the unmasked pixels of its 5x5 neighbourhood or the frame's unmasked pixels
    fill it. The plan records that choice: for each masked pixel its flat index, the flat
    indices of its 5x5 neighbourhood (ordered column offset by column offset, the order in which
    :func:`inpaint` adds them) and which of them count. Entries are padded to a power of two (at
    least 256) with an index past the frame, which :func:`inpaint_at` drops.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        True where a pixel is replaced.

    Returns
    -------
    target : int32 (K,)
        Flat index of each masked pixel (``H·W`` for padding).
    source : int32 (K, 25)
        Flat indices of its 5x5 neighbourhood (clamped to the frame).
    use : bool (K, 25)
        Which neighbours are averaged (none where the frame's mean fills the pixel).
    frame_mean : int32 (G,)
        Flat index of each masked pixel filled by the mean of the frame's unmasked pixels
        (usually none).
    n_valid : float32 ()
        Number of unmasked pixels.

    Examples
    --------
    >>> m = np.zeros((4, 4), bool); m[1, 1] = True
    >>> target, source, use, frame_mean, n_valid = inpaint_plan(m)
    >>> int(target[0]), int(use[0].sum()), len(frame_mean), float(n_valid), len(target)
    (5, 8, 0, 15.0, 256)
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W); got shape {m.shape}")
    h, w = m.shape
    ys, xs = np.nonzero(m)
    k = len(ys)
    off = np.arange(-2, 3)
    # (K, column offset j, row offset i): inpaint sums each column of the box over its rows first
    ny = ys[:, None, None] + off[None, None, :]
    nx = xs[:, None, None] + off[None, :, None]
    cy, cx = np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1)
    valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w) & ~m[cy, cx]
    near = (np.abs(off)[None, None, :] <= 1) & (np.abs(off)[None, :, None] <= 1)
    by8 = (valid & near).any(axis=(1, 2))
    by25 = ~by8 & valid.any(axis=(1, 2))
    use = np.where(by8[:, None, None], valid & near, by25[:, None, None] & valid)
    size = max(_PLAN_MIN, 1 << max(k - 1, 0).bit_length())
    target = np.full(size, h * w, np.int32)
    target[:k] = ys * w + xs
    source = np.zeros((size, 25), np.int32)
    source[:k] = (cy * w + cx).reshape(k, 25)
    use_p = np.zeros((size, 25), bool)
    use_p[:k] = use.reshape(k, 25)
    frame_mean = target[:k][~by8 & ~by25].astype(np.int32)
    return target, source, use_p, frame_mean, np.float32(h * w - k)


def inpaint_at(frames: jax.Array, plan) -> jax.Array:
    """:func:`inpaint` by an :func:`inpaint_plan`: the same values, reading only the masked
    pixels' neighbourhoods (jittable; frames ``(..., H, W)`` float32).

    Each fill is the same sum in the same order as :func:`inpaint`'s, so the two agree bit
    for bit (except that the frame's mean, for a pixel with no unmasked pixel within 2 px,
    may be summed in another order).

    Examples
    --------
    >>> f = jnp.arange(16, dtype=jnp.float32).reshape(4, 4)
    >>> m = np.zeros((4, 4), bool); m[1, 1] = True
    >>> float(inpaint_at(f, inpaint_plan(m))[1, 1])  # mean of 0, 1, 2, 4, 6, 8, 9, 10
    5.0
    """
    target, source, use, frame_mean, n_valid = plan
    h, w = frames.shape[-2:]
    lead = frames.shape[:-2]
    flat = frames.reshape(lead + (h * w,))
    vals = jnp.where(use, flat[..., source], jnp.float32(0)).reshape(lead + (-1, 5, 5))
    cnts = use.astype(jnp.float32).reshape(-1, 5, 5)
    tot = sum(sum(vals[..., j, i] for i in range(5)) for j in range(5))
    cnt = sum(sum(cnts[..., j, i] for i in range(5)) for j in range(5))
    out = flat.at[..., target].set(tot / jnp.maximum(cnt, 1.0), mode="drop")
    if frame_mean.shape[0]:
        zeroed = flat.at[..., target].set(jnp.float32(0), mode="drop")
        mean = zeroed.sum(axis=-1, keepdims=True) / jnp.maximum(n_valid, 1.0)
        out = out.at[..., frame_mean].set(jnp.broadcast_to(mean, lead + frame_mean.shape))
    return out.reshape(frames.shape)
