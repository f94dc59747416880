"""Rigid motion trajectories and smooth non-rigid deformation modes of the movie simulator."""

from __future__ import annotations

import numpy as np

from .common import finite, integer, nonnegative

__all__ = ["MOTIONS", "nonrigid_modes", "trajectory"]

MOTIONS = ("walk", "jumps", "two_position", "alternating", "three_position", "none")


def trajectory(
    n_frames: int,
    motion: str = "walk",
    *,
    max_shift: float = 5.0,
    separation: float = 6.0,
    n_positions: int = 4,
    angle: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """A rigid motion trajectory ``(n_frames, 2)`` (y, x) in pixels.

    Parameters
    ----------
    n_frames : int
        Number of frames (>= 1).
    motion : {"walk", "jumps", "two_position", "alternating", "three_position", "none"}
        ``"walk"``: smooth random walk (velocity with memory) reflected at
        ``±max_shift`` per axis.  ``"jumps"``: ``n_positions`` discrete positions
        within ``±max_shift``, held for contiguous blocks of random length.
        ``"two_position"``: two positions ``separation`` px apart (random direction,
        random sub-pixel centre), first half of the frames at one, second half at the
        other.  ``"alternating"``: the same two positions, every other frame.
        ``"three_position"``: the corners of an equilateral triangle of side
        ``separation``, contiguous thirds.  ``"none"``: zeros.
    max_shift : float
        Bound of ``"walk"`` and ``"jumps"`` (px, >= 0).
    separation : float
        Distance between positions of the two/three-position models (px, >= 0).
    n_positions : int
        Number of positions of ``"jumps"`` (>= 1).
    angle : float, optional
        Direction (degrees, 0 = along x, 90 = along y) of the line joining the two
        positions, or of the first corner of the triangle; random if None.
    seed : int
        Seed (``numpy.random.default_rng``).

    Examples
    --------
    >>> s = trajectory(6, "alternating", separation=4.0, seed=1)
    >>> bool(np.allclose(np.linalg.norm(s[0] - s[1]), 4.0)), bool(np.allclose(s[0], s[2]))
    (True, True)
    >>> (s := trajectory(2, "two_position", separation=9.0, angle=0.0))[1] - s[0]
    array([0., 9.])
    """
    n = integer(n_frames, "n_frames", 1)
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    max_shift = nonnegative(max_shift, "max_shift")
    separation = nonnegative(separation, "separation")
    n_positions = integer(n_positions, "n_positions", 1)
    rng = np.random.default_rng([int(seed), 2])
    if motion == "none":
        return np.zeros((n, 2))
    if motion == "walk":
        if max_shift == 0:
            return np.zeros((n, 2))
        pos = rng.uniform(-max_shift, max_shift, 2) * 0.5
        vel = np.zeros(2)
        sigma = 0.04 * max_shift  # velocity innovation; mean speed ~ 0.1 * max_shift px/frame
        out = np.empty((n, 2))
        for t in range(n):
            vel = 0.85 * vel + rng.normal(0.0, sigma, 2)
            pos = pos + vel
            for a in range(2):  # reflect at the bounds
                if pos[a] > max_shift:
                    pos[a], vel[a] = 2 * max_shift - pos[a], -vel[a]
                elif pos[a] < -max_shift:
                    pos[a], vel[a] = -2 * max_shift - pos[a], -vel[a]
            out[t] = pos
        return out
    if motion == "jumps":
        positions = rng.uniform(-max_shift, max_shift, (n_positions, 2))
        n_blocks = min(n, 2 * n_positions)
        cuts = np.sort(rng.choice(np.arange(1, n), size=n_blocks - 1, replace=False)) if n_blocks > 1 else []
        labels = np.empty(n, int)
        order = np.concatenate([rng.permutation(n_positions), rng.integers(0, n_positions, n_blocks)])
        for b, (a, c) in enumerate(zip([0, *cuts], [*cuts, n], strict=True)):
            labels[a:c] = order[b]
        return positions[labels]
    centre = rng.uniform(-0.5, 0.5, 2)
    theta = rng.uniform(0, 2 * np.pi)
    if angle is not None:
        theta = np.deg2rad(finite(angle, "angle"))
    if motion in ("two_position", "alternating"):
        u = np.array([np.sin(theta), np.cos(theta)]) * separation / 2
        positions = np.stack([centre - u, centre + u])
        labels = (np.arange(n) >= n // 2).astype(int) if motion == "two_position" else np.arange(n) % 2
        return positions[labels]
    # three_position: triangle of side `separation` (circumradius side / sqrt 3) around the centre
    angles = theta + np.array([0.0, 2.0, 4.0]) * np.pi / 3
    positions = centre + separation / np.sqrt(3) * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    labels = np.minimum(np.arange(n) * 3 // n, 2)
    return positions[labels]


def nonrigid_modes(rng, shape, os, scale, n_modes=4):
    """Spatial Fourier modes of the deformation on the fine FOV grid: (2, n_modes, hf, wf)."""
    hf, wf = shape[0] * os, shape[1] * os
    yy = (np.arange(hf) + 0.5) / os - 0.5
    xx = (np.arange(wf) + 0.5) / os - 0.5
    modes = np.empty((2, n_modes, hf, wf))
    for a in range(2):
        for j in range(n_modes):
            k = 2 * np.pi / (scale * rng.uniform(0.7, 1.3))
            phi = rng.uniform(0, 2 * np.pi)
            ky, kx = k * np.sin(phi), k * np.cos(phi)
            p0 = rng.uniform(0, 2 * np.pi)
            # cos(ky y + kx x + p0) as a separable outer product
            cy, sy = np.cos(ky * yy + p0), np.sin(ky * yy + p0)
            cx, sx = np.cos(kx * xx), np.sin(kx * xx)
            m = np.outer(cy, cx) - np.outer(sy, sx)
            modes[a, j] = m - m.mean()
    return modes
