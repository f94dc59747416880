"""The simulated sensor: the camera noise model and static sensor defects."""

from __future__ import annotations

import numpy as np

from .common import finite, nonnegative, positive

__all__ = ["DEFECT_KINDS", "add_defects", "camera", "camera_parameters", "pixel_variance"]

DEFECT_KINDS = ("hot", "dead", "stuck", "line")


def camera_parameters(gain, offset, read_noise) -> tuple[float, float, float]:
    """The camera model's ``(gain, offset, read_noise)`` checked: ADU per photon > 0, a
    finite offset (ADU) and a read noise >= 0 (ADU)."""
    return positive(gain, "gain"), finite(offset, "offset"), nonnegative(read_noise, "read_noise")


def pixel_variance(mu: np.ndarray, gain: float, offset: float, read_noise: float) -> np.ndarray:
    """Variance (ADU²) of a pixel of expected value ``mu`` (ADU) under the :func:`camera`
    model: ``gain · (mu - offset) + read_noise²`` (Poisson plus Gaussian), at least
    ``read_noise²`` (and above 0).

    Examples
    --------
    >>> pixel_variance(np.array([100.0, 160.0]), 30.0, 100.0, 2.0).tolist()
    [4.0, 1804.0]
    """
    return np.maximum(gain * (mu - float(offset)) + read_noise**2, max(read_noise**2, 1e-12))


def camera(
    photons: np.ndarray,
    *,
    gain: float = 30.0,
    offset: float = 100.0,
    read_noise: float = 10.0,
    rng: np.random.Generator | int = 0,
) -> np.ndarray:
    """Camera model: ``gain * Poisson(photons) + offset + Normal(0, read_noise)`` in ADU (float32).

    Examples
    --------
    >>> adu = camera(np.full((200, 200), 4.0), gain=2.0, offset=10.0, read_noise=1.0, rng=0)
    >>> round(float(adu.mean()), 1), round(float(adu.var()), 0)
    (18.0, 17.0)
    """
    lam = np.asarray(photons, dtype=np.float64)
    if not np.all(np.isfinite(lam)) or lam.min(initial=0.0) < 0:
        raise ValueError("photons must be finite and >= 0")
    gain, offset, read_noise = camera_parameters(gain, offset, read_noise)
    rng = np.random.default_rng(rng)
    adu = gain * rng.poisson(lam).astype(np.float64) + offset
    if read_noise:
        adu += rng.normal(0.0, read_noise, lam.shape)
    return adu.astype(np.float32)


def add_defects(
    frames: np.ndarray,
    fraction: float = 0.005,
    kind: str = "hot",
    *,
    value: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Add static sensor defects (fixed in sensor coordinates, not moving with the tissue).

    Parameters
    ----------
    frames : ndarray (T, H, W)
        Movie in ADU (not modified).
    fraction : float
        Fraction of pixels affected, in (0, 1] (at least one pixel); for
        ``kind="line"`` the fraction of rows (at least one row).
    kind : {"hot", "dead", "stuck", "line"}
        ``"hot"``: ``value`` is added to the pixel's signal (dark current; default the
        movie's maximum, so the pixel reads up to about twice the movie maximum).
        ``"dead"``: the pixel reads ``value`` (default 0) in every frame.
        ``"stuck"``: the pixel reads a constant in every frame (default: a different
        random level per pixel between the movie's 1st and 99th percentile).
        ``"line"``: whole rows get ``value`` added (default the movie's maximum).
    value : float, optional
        Defect level, see ``kind``.
    seed : int
        Seed of the defect positions (and of the stuck levels).

    Returns
    -------
    frames : ndarray (T, H, W) float32
        A copy of the movie with the defects.
    mask : ndarray (H, W) bool
        True on defective pixels.

    Examples
    --------
    >>> movie = np.ones((3, 20, 20), np.float32)
    >>> bad, mask = add_defects(movie, 0.01, "dead", seed=0)
    >>> int(mask.sum()), float(bad[:, mask].max()), float(bad[:, ~mask].min())
    (4, 0.0, 1.0)
    """
    movie = np.asarray(frames)
    if movie.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {movie.shape}")
    fraction = finite(fraction, "fraction")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if kind not in DEFECT_KINDS:
        raise ValueError(f"kind must be one of {DEFECT_KINDS}, got {kind!r}")
    out = movie.astype(np.float32, copy=True)
    _, h, w = out.shape
    rng = np.random.default_rng([int(seed), 3])
    mask = np.zeros((h, w), bool)
    if kind == "line":
        rows = rng.choice(h, size=max(1, round(fraction * h)), replace=False)
        mask[rows] = True
        out[:, mask] += np.float32(float(movie.max()) if value is None else finite(value, "value"))
        return out, mask
    idx = rng.choice(h * w, size=max(1, round(fraction * h * w)), replace=False)
    mask.flat[idx] = True
    if kind == "hot":
        out[:, mask] += np.float32(float(movie.max()) if value is None else finite(value, "value"))
    elif kind == "dead":
        out[:, mask] = np.float32(0.0 if value is None else finite(value, "value"))
    else:  # stuck
        if value is None:
            lo, hi = np.percentile(movie, [1, 99])
            levels = rng.uniform(lo, hi, idx.size).astype(np.float32)
        else:
            levels = np.full(idx.size, finite(value, "value"), np.float32)
        out[:, mask] = levels[np.argsort(idx)][None, :]  # frames[:, mask] is in ascending flat order
    return out, mask
