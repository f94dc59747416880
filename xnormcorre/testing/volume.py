"""Simulated volumetric movies ``(time, z, y, x)`` with known 3-D subpixel motion: rigid
(:func:`simulate_volume`) or a smooth non-rigid deformation (:func:`simulate_deformed_volume`).

The 3-D variant of :func:`xnormcorre.testing.simulate.simulate_movie`, independent of the
registration's own interpolation: a scene of somata (anisotropic 3-D Gaussians, longer
along z like a two-photon point-spread function) on a smooth background is drawn on a
grid oversampled ``os`` times per axis, moved with cubic B-splines, integrated over each
voxel (block mean) and recorded through the camera model
(:func:`xnormcorre.testing.simulate.camera`: Poisson photons plus Gaussian read noise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from .sensor import camera

__all__ = ["DeformedVolume", "SimulatedVolume", "simulate_deformed_volume", "simulate_volume"]


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
    rng = np.random.default_rng(seed)
    spline, pad = _scene(shape, os, max_shift, n_cells, rng)
    shifts = _trajectory(rng, n_frames, max_shift)
    inner = tuple(slice(p * o, (p + n) * o) for p, n, o in zip(pad, shape, os, strict=True))
    osz, osy, osx = (int(v) for v in os)

    def render(s: np.ndarray) -> np.ndarray:
        moved = ndimage.shift(spline, s * np.asarray(os), order=3, mode="mirror", prefilter=False)[inner]
        return moved.reshape(d, osz, h, osy, w, osx).mean(axis=(1, 3, 5))

    clean = np.stack([render(s) for s in shifts])
    template = render(np.zeros(3))
    frames, template = _record(clean, template, photons_per_voxel, gain, offset, read_noise, seed)
    return SimulatedVolume(frames=frames, shifts=shifts.astype(np.float64), template=template)


def _scene(shape, os, max_shift, n_cells: int, rng: np.random.Generator):
    """Cubic B-spline coefficients of a scene oversampled ``os`` times per axis, padded by
    ``pad`` voxels per side: a smooth background plus somata (sigma in voxels: 1.2 along
    z, 1.5 in the plane)."""
    pad = [int(np.ceil(m)) + 3 for m in max_shift]
    fine = tuple((int(n) + 2 * p) * int(o) for n, p, o in zip(shape, pad, os, strict=True))
    osz, osy, osx = (int(v) for v in os)
    background = ndimage.gaussian_filter(rng.normal(size=fine), (2.0 * osz, 4.0 * osy, 4.0 * osx))
    background = 0.3 + 0.2 * background / (np.abs(background).max() + 1e-12)
    cells = np.zeros(fine)
    idx = tuple(rng.integers(0, n, n_cells) for n in fine)
    np.add.at(cells, idx, rng.uniform(0.5, 1.5, n_cells))
    cells = ndimage.gaussian_filter(cells, (1.2 * osz, 1.5 * osy, 1.5 * osx))
    scene = background + cells / cells.max() * 2.0
    return ndimage.spline_filter(scene, order=3, mode="mirror"), pad


def _trajectory(rng: np.random.Generator, n_frames: int, max_shift) -> np.ndarray:
    """A smoothed random walk ``(T, 3)``, zero mean, scaled to ``max_shift`` per axis."""
    steps = ndimage.gaussian_filter1d(rng.normal(size=(n_frames, 3)), 2.0, axis=0).cumsum(axis=0)
    steps -= steps.mean(axis=0)
    scale = np.asarray(max_shift, float) / np.maximum(np.abs(steps).max(axis=0), 1e-12)
    return steps * scale


def _record(clean, template, photons_per_voxel, gain, offset, read_noise, seed):
    """Noise-free volumes scaled to ``photons_per_voxel`` and recorded through the camera."""
    k = photons_per_voxel / clean.mean()
    frames = camera(
        clean * k, gain=gain, offset=offset, read_noise=read_noise, rng=np.random.default_rng([seed, 1])
    )
    return frames, (offset + gain * k * template).astype(np.float32)


@dataclass(frozen=True)
class DeformedVolume:
    """A simulated volumetric movie under a smooth 3-D deformation and its ground truth.

    The displacement of the content at voxel ``r = (z, y, x)`` of volume ``t`` is, per
    axis ``a``, ``shifts[t, a] + amplitude[t, a] · cos(π · wavevector[a] · (r / shape) +
    phase[a])``: a rigid trajectory plus a smooth field (at most half a cosine period
    across the volume along each axis) whose strength varies in time.
    """

    #: ``(T, D, H, W)`` float32 volumes in ADU.
    frames: np.ndarray
    #: ``(T, 3)`` rigid part of the displacement ``(z, y, x)``, voxels.
    shifts: np.ndarray
    #: ``(T, 3)`` amplitude of the non-rigid part per axis, voxels.
    amplitude: np.ndarray
    #: ``(3, 3)`` wavevector of the non-rigid part of each axis' displacement (rows: axis).
    wavevector: np.ndarray
    #: ``(3,)`` phase of each axis' non-rigid part, radians.
    phase: np.ndarray
    #: ``(D, H, W)`` noise-free volume at zero displacement, ADU.
    template: np.ndarray

    def displacement(self, z, y, x) -> np.ndarray:
        """True displacement ``(T, *broadcast(z, y, x).shape, 3)`` at voxel coordinates ``z, y, x``."""
        shape = np.asarray(self.template.shape, float)
        u = [np.asarray(c, float) / n for c, n in zip(np.broadcast_arrays(z, y, x), shape, strict=True)]
        out = []
        for a in range(3):
            arg = np.pi * sum(k * c for k, c in zip(self.wavevector[a], u, strict=True)) + self.phase[a]
            amp = self.amplitude[:, a].reshape((-1,) + (1,) * np.ndim(arg))
            rig = self.shifts[:, a].reshape((-1,) + (1,) * np.ndim(arg))
            out.append(rig + amp * np.cos(arg)[None])
        return np.stack(out, axis=-1)

    def patch_displacement(self, starts, size) -> np.ndarray:
        """True displacement of each patch ``(T, Nz, Ny, Nx, 3)``: the mean of the
        displacement over the patch's voxels (``starts``: patch starts per axis,
        ``size``: patch size per axis)."""
        t = len(self.shifts)
        out = np.empty((t, *(len(s) for s in starts), 3))
        for i, z0 in enumerate(starts[0]):
            for j, y0 in enumerate(starts[1]):
                for k, x0 in enumerate(starts[2]):
                    zz, yy, xx = np.meshgrid(
                        *[np.arange(a, a + n) for a, n in zip((z0, y0, x0), size, strict=True)], indexing="ij"
                    )
                    out[:, i, j, k] = self.displacement(zz, yy, xx).mean(axis=(1, 2, 3))
        return out


def simulate_deformed_volume(
    shape: tuple[int, int, int] = (16, 64, 64),
    n_frames: int = 20,
    *,
    max_shift: tuple[float, float, float] = (1.0, 2.0, 2.0),
    deformation: tuple[float, float, float] = (0.5, 1.0, 1.0),
    os: tuple[int, int, int] = (2, 4, 4),
    n_cells: int = 60,
    photons_per_voxel: float = 20.0,
    gain: float = 1.0,
    offset: float = 100.0,
    read_noise: float = 2.0,
    seed: int = 0,
) -> DeformedVolume:
    """Simulate a volumetric movie with a smooth random 3-D deformation.

    The scene of :func:`simulate_volume` (somata on a smooth background, oversampled
    ``os`` times per axis) is sampled with cubic B-splines at ``r - displacement(r)``
    (see :class:`DeformedVolume`: a smooth random rigid trajectory up to ``max_shift``
    plus a smooth non-rigid field up to ``deformation`` voxels per axis, its strength a
    smooth random function of time), integrated over each voxel (block mean) and
    recorded through the camera model (Poisson photons plus Gaussian read noise).

    Examples
    --------
    >>> sim = simulate_deformed_volume((6, 16, 16), 3, max_shift=(0.5, 1, 1), deformation=(0.3, 0.5, 0.5), n_cells=5)
    >>> sim.frames.shape, sim.displacement(2.0, 3.0, 4.0).shape
    ((3, 6, 16, 16), (3, 3))
    >>> bool(np.abs(sim.displacement(*np.mgrid[:6, :16, :16]) - sim.shifts[:, None, None, None]).max() <= 0.5)
    True
    """
    d, h, w = (int(v) for v in shape)
    os = tuple(int(v) for v in os)
    rng = np.random.default_rng(seed)
    reach = [m + a for m, a in zip(max_shift, deformation, strict=True)]
    spline, pad = _scene(shape, os, reach, n_cells, rng)
    shifts = _trajectory(rng, n_frames, max_shift)
    amplitude = _trajectory(rng, n_frames, deformation)
    wavevector = rng.uniform(-1.0, 1.0, (3, 3))
    wavevector /= np.maximum(np.abs(wavevector).sum(axis=1, keepdims=True), 1.0)  # <= half a period across
    phase = rng.uniform(0, 2 * np.pi, 3)
    sim = DeformedVolume(
        frames=np.empty(0),
        shifts=shifts,
        amplitude=amplitude,
        wavevector=wavevector,
        phase=phase,
        template=np.empty(shape),
    )
    # fine samples j of the inner volume lie at voxel coordinates (j + 0.5) / os - 0.5
    coords = np.meshgrid(
        *[(np.arange(n * o) + 0.5) / o - 0.5 for n, o in zip(shape, os, strict=True)], indexing="ij"
    )
    disp = sim.displacement(*coords)  # (T, fine..., 3)
    base = [(c + p) * o + (o - 1) / 2 for c, p, o in zip(coords, pad, os, strict=True)]  # fine index of r

    def render(t: int | None) -> np.ndarray:
        src = [b - (0.0 if t is None else disp[t, ..., a] * os[a]) for a, b in enumerate(base)]
        moved = ndimage.map_coordinates(spline, src, order=3, mode="mirror", prefilter=False)
        return moved.reshape(d, os[0], h, os[1], w, os[2]).mean(axis=(1, 3, 5))

    clean = np.stack([render(t) for t in range(n_frames)])
    frames, template = _record(clean, render(None), photons_per_voxel, gain, offset, read_noise, seed)
    return replace(sim, frames=frames, template=template)
