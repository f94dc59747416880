"""Poisson-Gaussian noise model of a movie, from its registered frames (NumPy).

Two-photon and camera pixels are photon counts times a gain plus an offset and read
noise, so the temporal variance of a pixel is a line in its mean (the photon-transfer
curve): ``var = gain · mean + c``.  The line is fitted to registered frames; the
registration weights each pixel by ``1 / var`` evaluated on the template
(:func:`pixel_weights`).  Never imports xarray.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["NoiseModel", "UNIFORM", "fit_noise_model", "pixel_weights"]


class NoiseModel(NamedTuple):
    """``var = gain · intensity + intercept``; ``fitted`` is False for the uniform fallback."""

    gain: float
    intercept: float
    fitted: bool


#: Equal weights: noise-free or unfitted movies (plain least squares).
UNIFORM = NoiseModel(0.0, 1.0, False)


def fit_noise_model(frames: np.ndarray, valid: np.ndarray | None = None, n_bins: int = 24) -> NoiseModel:
    """Fit the photon-transfer line ``var = gain · mean + intercept`` to registered frames.

    Per-pixel temporal mean and variance of ``frames`` ``(N, H, W)`` (NaN-aware; pixels
    outside ``valid`` or not finite in every frame are left out); pixels are binned by
    their mean (``n_bins`` quantile bins), each bin contributes the 25th percentile of
    its variances (calcium activity and residual motion only add variance, so the lower
    part of each bin is closest to pure noise), and a least-squares line goes through
    the bins.  Returns :data:`UNIFORM` when the fit is not meaningful: fewer than 8
    frames, too few pixels, a negative slope or variance, or a movie without noise.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> mu = np.linspace(5, 50, 64 * 64).reshape(64, 64)
    >>> frames = rng.poisson(mu, size=(60, 64, 64)) * 30.0 + 100.0
    >>> m = fit_noise_model(frames)
    >>> m.fitted and 20 < m.gain < 35
    True
    """
    x = np.asarray(frames)
    if x.ndim != 3 or x.shape[0] < 8:
        return UNIFORM
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    m, v, ok = _temporal_moments(x.reshape(x.shape[0], -1))
    if valid is not None:
        ok &= np.asarray(valid, bool).ravel()
    if ok.sum() < 10 * n_bins:
        return UNIFORM
    m, v = m[ok], v[ok]
    edges = np.quantile(m, np.linspace(0.0, 1.0, n_bins + 1))
    idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, n_bins - 1)
    # the pixels of each bin, in their order (a stable sort by bin): one pass, not one per bin
    order = np.argsort(idx, kind="stable")
    ends = np.cumsum(np.bincount(idx, minlength=n_bins))
    bm, bv = [], []
    for b in range(n_bins):
        sel = order[(ends[b - 1] if b else 0) : ends[b]]
        if sel.size >= 10:
            bm.append(np.median(m[sel]))
            bv.append(np.percentile(v[sel], 25))
    bm, bv = np.asarray(bm), np.asarray(bv)
    if bm.size < 4 or np.ptp(bm) <= 0:
        return UNIFORM
    # the line on standardised brightness (well conditioned at any scale of the movie)
    mu, sd = float(bm.mean()), float(bm.std())
    slope, at_mean = np.linalg.lstsq(np.vstack([(bm - mu) / sd, np.ones_like(bm)]).T, bv, rcond=None)[0]
    gain = slope / sd
    intercept = at_mean - gain * mu
    med = float(np.median(m))
    typical = gain * med + intercept
    scale = float(np.ptp(m)) ** 2
    if (
        not (np.isfinite(gain) and np.isfinite(intercept))
        or gain < 0
        or typical <= 1e-12 * max(scale, 1e-300)
    ):
        return UNIFORM
    return NoiseModel(float(gain), float(intercept), True)


def _temporal_moments(x: np.ndarray, block: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel temporal mean, variance (``ddof=1``, two passes) and all-finite flag of ``x`` (N, P).

    In float64, ``block`` frames at a time (each step a contiguous, vectorised row sum; no
    float64 copy of the whole stack).  A value that is not finite makes its pixel's sums
    not finite, which is the flag."""
    n, p = x.shape
    total = np.zeros(p, np.float64)
    for i in range(0, n, block):
        total += x[i : i + block].sum(axis=0, dtype=np.float64)
    m = total / n
    sq = np.zeros(p, np.float64)
    buf = np.empty((min(block, n), p), np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(0, n, block):
            d = np.subtract(x[i : i + block], m, out=buf[: min(block, n - i)])
            np.multiply(d, d, out=d)
            sq += d.sum(axis=0)
    return m, sq / (n - 1), np.isfinite(total) & np.isfinite(sq)


def pixel_weights(template: np.ndarray, model: NoiseModel) -> np.ndarray:
    """``1 / var(r)`` of the noise model on ``template``, floored at 5 % of the median
    variance, normalised to mean 1 (float32).

    Examples
    --------
    >>> pixel_weights(np.array([[1.0, 3.0]]), NoiseModel(1.0, 1.0, True)).tolist()
    [[1.3333333730697632, 0.6666666865348816]]
    """
    t = np.asarray(template, np.float64)
    if not model.fitted:
        return np.ones(t.shape, np.float32)
    var = model.gain * t + model.intercept
    med = float(np.median(var))
    if not np.isfinite(med) or med <= 0:
        return np.ones(t.shape, np.float32)
    w = 1.0 / np.maximum(var, 0.05 * med)
    return (w / w.mean()).astype(np.float32)
