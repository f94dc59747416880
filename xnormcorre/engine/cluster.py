"""A robust initial template: the densest group of mutually similar frames of a movie sample.

The median of frames spread through a movie that sits at two or three positions is a double
image, and registration converges to it. Building the first template from frames that share one
position avoids that. Only NumPy and SciPy are used here (no xarray, no other package modules).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import fft as sfft

__all__ = ["FrameCluster", "densest_cluster", "frame_cluster", "frame_similarity"]

_TARGET_SIDE = 128  # frames are block-averaged by the largest factor keeping this many px per side
_BAND = (1.5, 5.0)  # px of the binned frame: sigmas of the difference-of-Gaussians band-pass
_KEEP = 0.85  # a frame joins when its similarity to the medoid is >= this fraction of the reference


class FrameCluster(NamedTuple):
    """The densest group of frames: ``indices`` (sorted), its ``medoid`` and the ``similarity`` matrix."""

    indices: np.ndarray
    medoid: int
    similarity: np.ndarray


def frame_similarity(sample: np.ndarray) -> np.ndarray:
    """Correlation matrix ``(N, N)`` of the high-passed, z-normalised frames of ``sample`` (N, H, W).

    Frames are block-averaged by the largest integer factor that keeps >= 128 px on their shorter
    side, band-passed by a difference of Gaussians (sigmas 1.5 and 5 binned px, by FFT: pixel noise
    and slow shading removed) and z-normalised: ``C = Z Z^T / P``, one matrix product. Frames at the
    same position correlate by the content's share of their band-passed variance; the band-passed
    texture decorrelates within a few px, so frames further apart correlate much less.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> c = frame_similarity(rng.normal(size=(4, 32, 32)).astype(np.float32))
    >>> c.shape, bool(np.allclose(np.diag(c), 1.0))
    ((4, 4), True)
    """
    a = np.asarray(sample)
    if a.ndim != 3 or a.shape[0] < 2 or min(a.shape[1:]) < 8:
        raise ValueError(f"sample must be (N, H, W) with N >= 2 and H, W >= 8; got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise TypeError(f"sample must be a real numeric array; got dtype {a.dtype}")
    n, h, w = a.shape
    b = max(1, min(h, w) // _TARGET_SIDE)
    a = a[:, : h // b * b, : w // b * b].astype(np.float32, copy=False)
    if b > 1:
        a = sum(a[:, i::b, j::b] for i in range(b) for j in range(b))
    if not np.isfinite(a).all():
        raise ValueError("sample must be finite (no NaN or inf)")
    # difference-of-Gaussians band-pass, by FFT (a few px: noise and slow shading both removed)
    hh, ww = a.shape[1:]
    fy, fx = np.fft.fftfreq(hh)[:, None], np.fft.rfftfreq(ww)[None, :]
    f2 = (2 * np.pi) ** 2 * (fy**2 + fx**2) / 2
    band = np.exp(-f2 * _BAND[0] ** 2) - np.exp(-f2 * _BAND[1] ** 2)
    z = sfft.irfft2(sfft.rfft2(a, workers=-1) * band.astype(np.float32), s=(hh, ww), workers=-1)
    # the band-pass has no DC response: the band-passed frames have zero mean
    z = z.reshape(n, -1)
    # single-threaded (einsum, not BLAS): a multi-threaded BLAS product of this small matrix costs
    # 10-50x its arithmetic on a loaded machine (threads spinning while waiting for a core)
    c = np.einsum("ik,jk->ij", z, z).astype(np.float64)
    d = np.sqrt(np.clip(np.diag(c), 0, None))
    d = np.where(d > 0, d, 1.0)
    c = c / d[:, None] / d[None, :]
    c = (c + c.T) / 2
    np.fill_diagonal(c, 1.0)
    return c


def _otsu(values: np.ndarray) -> float:
    """The split of sorted ``values`` that maximises the between-class variance (Otsu)."""
    v = np.sort(values)
    if v.size < 2 or v[-1] - v[0] <= 1e-6:  # one class (to rounding)
        return float(v[0]) if v.size else 0.0
    csum = np.cumsum(v)
    k = np.arange(1, v.size)
    m0 = csum[:-1] / k
    m1 = (csum[-1] - csum[:-1]) / (v.size - k)
    between = k * (v.size - k) * (m0 - m1) ** 2
    i = int(np.argmax(between))
    return float((v[i] + v[i + 1]) / 2)


def frame_cluster(sample: np.ndarray, *, min_size: int | None = None) -> FrameCluster:
    """The densest group of mutually similar (same-position) frames of ``sample``, with its medoid.

    Parameters
    ----------
    sample : ndarray, shape (N, H, W)
        Unregistered frames spread evenly through the movie (N up to ~100).
    min_size : int, optional
        Fewest frames in the group, ``1 <= min_size <= N``; default ``max(3, N // 5)`` (capped at N).

    Returns
    -------
    FrameCluster
        ``indices``: sorted int indices of the group's frames (the medoid included); ``medoid``: the
        frame with the highest density; ``similarity``: the ``(N, N)`` matrix of
        :func:`frame_similarity`.

    Notes
    -----
    The density of frame ``i`` is the mean of its ``k = max(3, N // 4)`` highest correlations with
    other frames; the medoid is the densest frame (ties: the lowest index). The reference
    similarity ``r`` is the mean of the medoid's 3 highest correlations. A frame joins when its
    correlation with the medoid is above both the Otsu split of the medoid's correlations and
    ``0.85 r`` (about 2 px of displacement on tissue-like content); if that leaves fewer than ``min_size`` frames, the most correlated ones are added.
    Deterministic.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> scene = rng.normal(size=(48, 48)).astype(np.float32)
    >>> frames = np.stack([np.roll(scene, 6 * (i % 2), axis=1) for i in range(10)])
    >>> frames += rng.normal(scale=0.3, size=frames.shape).astype(np.float32)
    >>> res = frame_cluster(frames)
    >>> res.indices.size, len(set(res.indices % 2))  # the 5 frames of one position
    (5, 1)
    """
    c = frame_similarity(sample)
    n = c.shape[0]
    if min_size is None:
        min_size = min(n, max(3, n // 5))
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or not 1 <= min_size <= n:
        raise ValueError(f"min_size must be an integer in [1, {n}] (the number of frames); got {min_size!r}")
    if n == 1:
        return FrameCluster(np.array([0]), 0, c)
    off = c.copy()
    np.fill_diagonal(off, -np.inf)
    k = min(n - 1, max(3, n // 4))
    top = -np.sort(-off, axis=1)[:, :k]
    density = np.round(top.mean(axis=1), 6)  # ties (to rounding) go to the lowest index
    medoid = int(np.argmax(density))
    row = off[medoid]
    others = np.delete(np.arange(n), medoid)
    order = others[np.argsort(-row[others], kind="stable")]
    ref = float(row[order[: min(3, n - 1)]].mean())
    thr = max(_otsu(row[others]), _KEEP * ref)
    members = set(order[row[order] >= thr].tolist()) | {medoid}
    members |= set(order[: min_size - 1].tolist())
    return FrameCluster(np.array(sorted(members), dtype=np.intp), medoid, c)


def densest_cluster(sample: np.ndarray, *, min_size: int | None = None) -> np.ndarray:
    """Sorted int indices of the densest group of same-position frames (see :func:`frame_cluster`).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> scene = rng.normal(size=(40, 40)).astype(np.float32)
    >>> frames = np.stack([np.roll(scene, 8 * (i >= 3), axis=0) for i in range(10)])
    >>> densest_cluster(frames).tolist()
    [3, 4, 5, 6, 7, 8, 9]
    """
    return frame_cluster(sample, min_size=min_size).indices
