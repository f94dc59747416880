"""Simulated volumetric movies ``(time, z, y, x)`` with known 3-D rigid subpixel motion.

The 3-D variant of :func:`xnormcorre.testing.simulate.simulate_movie`, independent of the
registration's own interpolation: a scene of somata (anisotropic 3-D Gaussians, longer
along z like a two-photon point-spread function) on a smooth background is drawn on a
grid oversampled ``os`` times per axis, moved with cubic B-splines, integrated over each
voxel (block mean) and recorded through the camera model
(:func:`xnormcorre.testing.simulate.camera`: Poisson photons plus Gaussian read noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .simulate import camera

__all__ = ["SimulatedVolume", "simulate_volume"]


@dataclass(frozen=True)
class SimulatedVolume:
    """A simulated volumetric movie and its ground truth (NumPy, ``(z, y, x)`` order)."""

    #: ``(T, D, H, W)`` float32 volumes in ADU.
    frames: np.ndarray
    #: ``(T, 3)`` true displacement ``(z, y, x)`` of each volume's content (voxels).
    shifts: np.ndarray
    #: ``(D, H, W)`` noise-free volume at zero shift, ADU.
    template: np.ndarray


def simulate_volume(
    shape: tuple[int, int, int] = (16, 64, 64),
    n_frames: int = 40,
    *,
    max_shift: tuple[float, float, float] = (1.5, 3.0, 3.0),
    os: tuple[int, int, int] = (2, 4, 4),
    n_cells: int = 60,
    photons_per_voxel: float = 20.0,
    gain: float = 1.0,
    offset: float = 100.0,
    read_noise: float = 2.0,
    seed: int = 0,
) -> SimulatedVolume:
    """Simulate a volumetric movie with a smooth random 3-D rigid trajectory.

    Parameters
    ----------
    shape : (int, int, int)
        Volume size ``(D, H, W)`` in voxels.
    n_frames : int
        Number of volumes.
    max_shift : (float, float, float)
        Largest absolute displacement along (z, y, x), voxels (subpixel values).
    os : (int, int, int)
        Oversampling of the scene per axis (voxel integration).
    n_cells : int
        Number of somata.
    photons_per_voxel : float
        Mean photons per voxel per volume.
    gain, offset, read_noise : float
        Camera model (ADU per photon, ADU offset, read-noise SD in ADU).
    seed : int
        Seed of the scene, trajectory and noise.

    Examples
    --------
    >>> sim = simulate_volume((6, 16, 16), 3, max_shift=(0.5, 1.0, 1.0), n_cells=5)
    >>> sim.frames.shape, sim.shifts.shape, bool(np.abs(sim.shifts).max() <= 1.0)
    ((3, 6, 16, 16), (3, 3), True)
    """
    d, h, w = (int(v) for v in shape)
    osz, osy, osx = (int(v) for v in os)
    rng = np.random.default_rng(seed)
    pad = [int(np.ceil(m)) + 3 for m in max_shift]
    fine = ((d + 2 * pad[0]) * osz, (h + 2 * pad[1]) * osy, (w + 2 * pad[2]) * osx)
    # scene: smooth background plus somata (sigma in voxels: 1.2 along z, 1.5 in the plane)
    background = ndimage.gaussian_filter(rng.normal(size=fine), (2.0 * osz, 4.0 * osy, 4.0 * osx))
    background = 0.3 + 0.2 * background / (np.abs(background).max() + 1e-12)
    cells = np.zeros(fine)
    idx = tuple(rng.integers(0, n, n_cells) for n in fine)
    np.add.at(cells, idx, rng.uniform(0.5, 1.5, n_cells))
    cells = ndimage.gaussian_filter(cells, (1.2 * osz, 1.5 * osy, 1.5 * osx))
    scene = background + cells / cells.max() * 2.0
    spline = ndimage.spline_filter(scene, order=3, mode="mirror")
    # trajectory: smoothed random walk scaled to max_shift per axis
    steps = ndimage.gaussian_filter1d(rng.normal(size=(n_frames, 3)), 2.0, axis=0).cumsum(axis=0)
    steps -= steps.mean(axis=0)
    scale = np.asarray(max_shift, float) / np.maximum(np.abs(steps).max(axis=0), 1e-12)
    shifts = steps * scale
    inner = tuple(slice(p * o, (p + n) * o) for p, n, o in zip(pad, shape, os, strict=True))

    def render(s: np.ndarray) -> np.ndarray:
        moved = ndimage.shift(spline, s * np.asarray(os), order=3, mode="mirror", prefilter=False)[inner]
        return moved.reshape(d, osz, h, osy, w, osx).mean(axis=(1, 3, 5))

    clean = np.stack([render(s) for s in shifts])
    template = render(np.zeros(3))
    k = photons_per_voxel / clean.mean()
    frames = camera(
        clean * k, gain=gain, offset=offset, read_noise=read_noise, rng=np.random.default_rng([seed, 1])
    )
    return SimulatedVolume(
        frames=frames,
        shifts=shifts.astype(np.float64),
        template=(offset + gain * k * template).astype(np.float32),
    )
