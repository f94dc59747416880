"""The simulated tissue: a static scene rendered on an oversampled grid (neuropil,
vessels, somata, optical blur), calcium traces of its somata, and pixel integration."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["block_mean", "calcium_traces", "render_scene", "soft_disk"]


def soft_disk(rho: np.ndarray, radius: float, edge: float) -> np.ndarray:
    return 0.5 * (1.0 - np.tanh((rho - radius) / edge))


def render_scene(
    rng: np.random.Generator, shape: tuple[int, int], os: int, psf_sigma: float, cell_density: float
):
    """Static scene on the fine grid: background image and soma footprints (coarse px units)."""
    hf, wf = shape[0] * os, shape[1] * os
    # neuropil: smoothed noise on two scales, log-normal so it stays positive
    fine = ndimage.gaussian_filter(rng.standard_normal((hf, wf)), 1.2 * os, mode="wrap")
    coarse = ndimage.gaussian_filter(rng.standard_normal((hf, wf)), 10.0 * os, mode="wrap")
    fine /= fine.std()
    coarse /= coarse.std()
    background = 0.6 * np.exp(0.35 * fine + 0.3 * coarse)

    # vessels (dark, smooth curves) and dark regions: a multiplicative transmission map
    yy = (np.arange(hf) + 0.5) / os - 0.5
    xx = (np.arange(wf) + 0.5) / os - 0.5
    n_vessels = max(1, round(shape[0] * shape[1] / 6000))
    trace = np.zeros((hf, wf), bool)
    widths = np.ones((hf, wf))
    for _ in range(n_vessels):
        p = rng.uniform([0, 0], shape)
        heading = rng.uniform(0, 2 * np.pi)
        width = rng.uniform(1.5, 3.5)
        for _step in range(int(4 * max(shape))):
            heading += rng.normal(0, 0.05)
            p = p + 0.5 * np.array([np.sin(heading), np.cos(heading)])
            iy, ix = int(p[0] * os), int(p[1] * os)
            if not (0 <= iy < hf and 0 <= ix < wf):
                break
            trace[iy, ix] = True
            widths[iy, ix] = width
    transmission = np.ones((hf, wf))
    if trace.any():
        dist, (iy, ix) = ndimage.distance_transform_edt(~trace, return_indices=True)
        w = widths[iy, ix]
        transmission -= 0.8 * np.exp(-((dist / os / w) ** 2))
    for _ in range(max(1, round(shape[0] * shape[1] / 10000))):
        cy, cx = rng.uniform([0, 0], shape)
        ry, rx = rng.uniform(4, 10, 2)
        transmission *= 1 - 0.5 * np.exp(-(((yy[:, None] - cy) / ry) ** 2 + ((xx[None, :] - cx) / rx) ** 2))

    # somata: filled or annular soft disks, log-normal brightness
    n_cells = max(1, round(cell_density * shape[0] * shape[1]))
    cells = []
    for _ in range(n_cells):
        cy, cx = rng.uniform([0, 0], shape)
        radius = rng.uniform(3.0, 6.5)
        brightness = 1.2 * rng.lognormal(0.0, 0.5)
        half = int(np.ceil((radius + 3) * os))
        iy0, ix0 = max(0, int(cy * os) - half), max(0, int(cx * os) - half)
        iy1, ix1 = min(hf, int(cy * os) + half), min(wf, int(cx * os) + half)
        if iy1 <= iy0 or ix1 <= ix0:
            continue
        rho = np.hypot(yy[iy0:iy1, None] - cy, xx[None, ix0:ix1] - cx)
        foot = soft_disk(rho, radius, 0.6)
        if rng.uniform() < 0.4:  # nuclear exclusion: a ring
            foot -= 0.75 * soft_disk(rho, 0.55 * radius, 0.6)
        foot *= brightness * transmission[iy0:iy1, ix0:ix1]
        cells.append((slice(iy0, iy1), slice(ix0, ix1), foot))

    base = background * transmission
    for sy, sx, foot in cells:
        base[sy, sx] += foot
    if psf_sigma > 0:
        base = ndimage.gaussian_filter(base, psf_sigma * os, mode="mirror")
        blurred = []
        for sy, sx, foot in cells:
            pad = int(np.ceil(4 * psf_sigma * os))
            ey0, ex0 = max(0, sy.start - pad), max(0, sx.start - pad)
            ey1, ex1 = min(hf, sy.stop + pad), min(wf, sx.stop + pad)
            big = np.zeros((ey1 - ey0, ex1 - ex0))
            big[sy.start - ey0 : sy.stop - ey0, sx.start - ex0 : sx.stop - ex0] = foot
            blurred.append(
                (
                    slice(ey0, ey1),
                    slice(ex0, ex1),
                    ndimage.gaussian_filter(big, psf_sigma * os, mode="constant"),
                )
            )
        cells = blurred
    return base, cells


def calcium_traces(rng: np.random.Generator, n_frames: int, n_cells: int, amplitude: float) -> np.ndarray:
    """dF/F traces: Bernoulli spikes (~0.5 Hz at 30 Hz) convolved with an exponential decay."""
    spikes = rng.uniform(size=(n_frames, n_cells)) < 0.017
    c = np.zeros((n_frames, n_cells))
    for t in range(n_frames):
        c[t] = (0.95 * c[t - 1] if t else 0.0) + spikes[t]
    return (amplitude * c).astype(np.float32)


def block_mean(img: np.ndarray, os: int) -> np.ndarray:
    h, w = img.shape[-2] // os, img.shape[-1] // os
    return img.reshape(*img.shape[:-2], h, os, w, os).mean(axis=(-3, -1))
