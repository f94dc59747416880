"""Static sensor defects: detection from temporal statistics and inpainting."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SHAPE = (128, 128)
N_FRAMES = 30


def tissue_scene(shape: tuple[int, int], seed: int, dendrites: bool = True) -> np.ndarray:
    """Tissue-like scene: smooth neuropil texture, soft somata, sharp 1-2 px dendrites in many directions."""
    rng = np.random.default_rng(seed)
    h, w = shape
    base = ndimage.gaussian_filter(rng.normal(size=shape), 3.0)
    base = 0.6 + 0.4 * (base - base.min()) / np.ptp(base)
    yy, xx = np.mgrid[:h, :w].astype(float)
    for _ in range(h * w // 500):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3.5, 6.0)
        d = np.hypot(yy - cy, xx - cx)
        base += rng.uniform(0.8, 2.5) / (1 + np.exp((d - r) / 0.7))
    if dendrites:
        # exact horizontal, vertical and diagonal ones plus random angles, widths 1 and 2 px
        angles = [0.0, 90.0, 45.0, 135.0, 0.0, 90.0] + list(rng.uniform(0, 180, 6))
        for i, ang in enumerate(angles):
            t = np.deg2rad(ang)
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            dist = np.abs(-(yy - cy) * np.cos(t) + (xx - cx) * np.sin(t))
            width = 1.0 if i % 2 == 0 else 2.0
            base += rng.uniform(0.8, 1.5) * (dist < width / 2 + 0.01 * (i % 2 == 0))
    return base


def tissue_movie(
    n: int = N_FRAMES,
    shape: tuple[int, int] = SHAPE,
    seed: int = 0,
    photons: float | None = 5.0,
    gain: float = 30.0,
    read_noise: float = 10.0,
    offset: float = 100.0,
    max_shift: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """(frames float32 (n, H, W), integer shifts (n, 2)): the scene moving along a clipped random walk,
    Poisson photons x gain + offset + Gaussian read noise (``photons=None``: noise-free)."""
    rng = np.random.default_rng(seed + 1000)
    m = max_shift
    scene = tissue_scene((shape[0] + 2 * m, shape[1] + 2 * m), seed)
    walk = rng.integers(-m, m + 1, size=(n, 2))  # the sample frames are far apart in time
    frames = np.stack([scene[m + dy : m + dy + shape[0], m + dx : m + dx + shape[1]] for dy, dx in walk])
    if photons is None:
        return (frames * 1000.0).astype(np.float32), walk
    lam = frames / frames.mean() * photons
    out = gain * rng.poisson(lam) + offset + rng.normal(0, read_noise, frames.shape)
    return out.astype(np.float32), walk


def plant(movie: np.ndarray, kind: str, frac: float = 0.005, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Plant ``kind`` defects at ``frac`` of the pixels (at least one); returns (movie, truth mask)."""
    rng = np.random.default_rng(seed)
    out = movie.copy()
    n, h, w = out.shape
    truth = np.zeros((h, w), bool)
    med, top = float(np.median(movie)), float(movie.max())
    if kind.startswith("line") or kind.startswith("seg"):
        n_lines = max(1, int(round(frac * h * w / (w if kind.startswith("line") else 24))))
        used: set[int] = set()
        for _ in range(n_lines):
            col = rng.random() < 0.5
            pos = int(rng.choice([i for i in range(h) if not used & {i - 1, i, i + 1}]))
            used.add(pos)
            lo, hi = (0, w) if kind.startswith("line") else sorted(rng.choice(w, 2, replace=False))
            if kind.startswith("seg"):
                lo = int(rng.integers(0, w - 24))
                hi = lo + int(rng.integers(12, 24))
            sl = (slice(None), slice(lo, hi), pos) if col else (slice(None), pos, slice(lo, hi))
            out[sl] = out[sl] + 0.5 * med if kind.endswith("bright") else out[sl] * 0.4
            truth[sl[1:]] = True
        return out, truth
    n_pts = max(1, int(round(frac * h * w / (4 if kind.endswith("2x2") else 1))))
    size = 2 if kind.endswith("2x2") else 1
    # spaced out so that two planted points never touch
    cells = rng.choice((h // 4) * (w // 4), n_pts, replace=False)
    for c in cells:
        y, x = (
            4 * (c // (w // 4)) + rng.integers(0, 3 - size + 1),
            4 * (c % (w // 4)) + rng.integers(0, 3 - size + 1),
        )
        sl = (slice(None), slice(y, y + size), slice(x, x + size))
        if kind.startswith("hot_max"):
            out[sl] = 2.0 * top
        elif kind.startswith("hot"):
            out[sl] = out[sl] + 2.0 * med  # about 3x the median, still noisy (dark current)
        elif kind.startswith("dead0"):
            out[sl] = 0.0
        elif kind.startswith("dead"):
            out[sl] = out[sl] * 0.1
        elif kind.startswith("stuck"):
            out[sl] = out[0][sl[1:]]
        truth[sl[1:]] = True
    return out, truth
