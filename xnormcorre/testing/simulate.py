"""An independent simulator of two-photon movies with known motion, for accuracy tests.

This generator deliberately shares nothing with :mod:`xnormcorre.datasets` (which
renders Gaussian elements analytically): here a tissue-like scene is *rasterised* on
an oversampled grid, every frame is resampled from that grid by cubic B-spline
interpolation at the displaced positions, integrated over each pixel, and passed
through a camera model.  An estimator tuned to one renderer is thereby checked on
another.

Pipeline of one frame
---------------------
1. **Scene** (fixed in tissue coordinates, larger than the field of view so that
   content genuinely enters and leaves it): neuropil texture (smoothed noise on two
   scales), somata as filled or annular (nuclear-excluded) soft disks of varied size
   and brightness, dark blood vessels and dark regions, blurred by an optical PSF;
   optionally each soma's brightness follows a calcium trace (``activity``).
2. **Motion**: the scene is sampled at ``r - d(r)`` by ``scipy.ndimage.map_coordinates``
   (``order=3``, cubic B-spline, mirror boundary far outside the field of view), where
   ``d`` is the rigid shift plus an optional smooth non-rigid field.
3. **Pixel integration**: the ``oversample x oversample`` sub-pixels of each pixel are
   averaged.
4. **Camera**: photons ~ Poisson(``photons_per_px`` x normalised intensity), then
   ``ADU = gain * photons + offset + Normal(0, read_noise)``.

Sign convention
---------------
``shifts[t]`` is the displacement of frame ``t``'s content relative to the template
(the scene at zero displacement): ``frame(r) = template(r - shift)``, i.e. content at
position ``p`` of the template appears at ``p + shift``.  This is the convention of
``scipy.ndimage.shift(template, shift)`` and of :func:`xnormcorre.rigid`; the
correction to apply is ``-shift``.  Shifts are ``(y, x)`` in pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["SimulatedMovie", "add_defects", "camera", "simulate_movie", "trajectory"]

MOTIONS = ("walk", "jumps", "two_position", "alternating", "three_position", "none")
DEFECT_KINDS = ("hot", "dead", "stuck", "line")
_FIVE_POINT = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0


@dataclass(frozen=True, eq=False)
class SimulatedMovie:
    """A simulated movie with its ground truth (all arrays NumPy, ``(y, x)`` order).

    Attributes
    ----------
    frames : ndarray (T, H, W) float32
        Noisy frames in ADU.
    clean : ndarray (T, H, W) float32
        Expected value of each frame in ADU (``offset + gain * expected photons``),
        the ``mu`` of the Cramér-Rao bound.
    shifts : ndarray (T, 2) float64
        True displacement ``(y, x)`` in pixels, ``frame(r) = template(r - shift)``; with a
        non-rigid field, the mean of the field over the field of view.
    template : ndarray (H, W) float32
        Expected frame (ADU) at zero displacement with the time-averaged activity: what
        a perfect template estimate converges to.
    gain, offset, read_noise, photons_per_px : float
        Camera model: ADU per photon, ADU offset, read noise (ADU, std), mean photons
        per pixel per frame.
    field : ndarray (T, 2, H, W) float32 or None
        True dense displacement (rigid + non-rigid) at each pixel, or None for rigid
        motion (then it is ``shifts`` everywhere).
    gradient : ndarray (T, 2, H, W) float32 or None
        Spatial gradient ``(d/dy, d/dx)`` of ``clean`` in ADU/px, computed on the
        oversampled grid before pixel integration (accurate also for fine features);
        only with ``with_gradient=True`` (4th-order differences at 1/oversample px:
        about 0.1 % from the derivative of the rendering).  The derivative of ``clean`` with respect to
        the shift is its negative.
    activity : ndarray (T, n_cells) float32 or None
        Relative brightness change (dF/F) of each soma, or None without activity.
    seed : int
        Seed of the scene and motion.
    """

    frames: np.ndarray
    clean: np.ndarray
    shifts: np.ndarray
    template: np.ndarray
    gain: float
    offset: float
    read_noise: float
    photons_per_px: float
    field: np.ndarray | None = None
    gradient: np.ndarray | None = None
    activity: np.ndarray | None = None
    seed: int = 0

    def patch_shifts(
        self,
        y_bounds: Sequence[tuple[int, int]],
        x_bounds: Sequence[tuple[int, int]],
        *,
        weighting: str = "mean",
    ) -> np.ndarray:
        """True shift of each patch, from the displacement field over the patch.

        Parameters
        ----------
        y_bounds, x_bounds : sequence of (start, stop)
            Patch extents along y and x (``frame[y0:y1, x0:x1]``), e.g. from
            ``xnormcorre.patch_grid``'s ``patch_*_start`` / ``patch_*_stop``.
        weighting : {"mean", "fisher"}
            ``"mean"``: the plain mean of the field over the patch.  ``"fisher"``: the
            field averaged with each pixel's Fisher information ``g g^T / var`` (``g``
            the gradient of ``clean``, ``var`` its Poisson-Gaussian variance), i.e.
            ``(sum M)^-1 sum M d``: what a rigid maximum-likelihood fit of the patch
            converges to when the field varies inside it (to first order).  Use it to
            score patch estimates against the Cramér-Rao bound; it uses ``gradient``
            when present, else 5-point central differences of ``clean``.

        Returns
        -------
        ndarray (T, n_patch_y, n_patch_x, 2) float64

        Examples
        --------
        >>> sim = simulate_movie((32, 32), 3, max_shift=1.0, seed=0)
        >>> sim.patch_shifts([(0, 16), (16, 32)], [(0, 32)]).shape
        (3, 2, 1, 2)
        """
        yb = _check_bounds(y_bounds, self.frames.shape[1], "y_bounds")
        xb = _check_bounds(x_bounds, self.frames.shape[2], "x_bounds")
        if weighting not in ("mean", "fisher"):
            raise ValueError(f"weighting must be 'mean' or 'fisher', got {weighting!r}")
        t = self.frames.shape[0]
        out = np.empty((t, len(yb), len(xb), 2))
        if self.field is None:
            out[:] = self.shifts[:, None, None, :]
            return out
        if weighting == "fisher":
            mu = self.clean.astype(np.float64)
            if self.gradient is not None:
                g = self.gradient.astype(np.float64)
            else:
                g = np.stack(
                    [ndimage.correlate1d(mu, _FIVE_POINT, axis=a, mode="nearest") for a in (1, 2)], 1
                )
            var = np.maximum(
                self.gain * (mu - self.offset) + self.read_noise**2, max(self.read_noise**2, 1e-12)
            )
            m = g[:, :, None] * g[:, None, :] / var[:, None, None]  # (T, 2, 2, H, W)
        for i, (y0, y1) in enumerate(yb):
            for j, (x0, x1) in enumerate(xb):
                d = self.field[:, :, y0:y1, x0:x1].astype(np.float64)
                if weighting == "mean":
                    out[:, i, j] = d.mean(axis=(2, 3))
                else:
                    mp = m[..., y0:y1, x0:x1]
                    out[:, i, j] = np.linalg.solve(
                        mp.sum(axis=(3, 4)), np.einsum("tabyx,tbyx->ta", mp, d)[..., None]
                    )[..., 0]
        return out

    def expose(
        self,
        photons_per_px: float | None = None,
        *,
        gain: float | None = None,
        offset: float | None = None,
        read_noise: float | None = None,
        seed: int | None = None,
    ) -> SimulatedMovie:
        """The same scene and motion seen with another exposure or camera (new noise).

        Rendering is the expensive part of :func:`simulate_movie`; this reuses it.
        Unspecified camera parameters are kept; ``seed`` seeds the noise (default: the
        movie's seed).

        Examples
        --------
        >>> sim = simulate_movie((32, 32), 4, photons_per_px=5.0, seed=0)
        >>> bright = sim.expose(20.0)
        >>> round(float((bright.clean - bright.offset).mean() / bright.gain), 3)
        20.0
        """
        old_scale = self.gain * self.photons_per_px
        p = _positive(self.photons_per_px if photons_per_px is None else photons_per_px, "photons_per_px")
        g = _positive(self.gain if gain is None else gain, "gain")
        o = _finite(self.offset if offset is None else offset, "offset")
        rn = _nonnegative(self.read_noise if read_noise is None else read_noise, "read_noise")
        factor = g * p / old_scale
        clean = ((self.clean.astype(np.float64) - self.offset) * factor + o).astype(np.float32)
        template = ((self.template.astype(np.float64) - self.offset) * factor + o).astype(np.float32)
        gradient = None if self.gradient is None else (self.gradient * np.float32(factor))
        rng = np.random.default_rng([self.seed if seed is None else int(seed), 1])
        frames = camera((clean - o) / g, gain=g, offset=o, read_noise=rn, rng=rng)
        return dataclasses.replace(
            self,
            frames=frames,
            clean=clean,
            template=template,
            gradient=gradient,
            gain=g,
            offset=o,
            read_noise=rn,
            photons_per_px=p,
        )


# --------------------------------------------------------------------------- validation


def _finite(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {v!r}") from None
    if not np.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


def _positive(v, name: str) -> float:
    f = _finite(v, name)
    if f <= 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return f


def _nonnegative(v, name: str) -> float:
    f = _finite(v, name)
    if f < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return f


def _int(v, name: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return int(v)


def _check_bounds(bounds, n: int, name: str) -> list[tuple[int, int]]:
    out = []
    for b in bounds:
        a, c = (int(x) for x in b)
        if not 0 <= a < c <= n:
            raise ValueError(f"{name} entries must satisfy 0 <= start < stop <= {n}, got {tuple(b)}")
        out.append((a, c))
    if not out:
        raise ValueError(f"{name} must hold at least one (start, stop) pair")
    return out


# --------------------------------------------------------------------------- motion


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
    n = _int(n_frames, "n_frames", 1)
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    max_shift = _nonnegative(max_shift, "max_shift")
    separation = _nonnegative(separation, "separation")
    n_positions = _int(n_positions, "n_positions", 1)
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
        theta = np.deg2rad(_finite(angle, "angle"))
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


# --------------------------------------------------------------------------- scene


def _soft_disk(rho: np.ndarray, radius: float, edge: float) -> np.ndarray:
    return 0.5 * (1.0 - np.tanh((rho - radius) / edge))


def _scene(rng: np.random.Generator, shape: tuple[int, int], os: int, psf_sigma: float, cell_density: float):
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
        foot = _soft_disk(rho, radius, 0.6)
        if rng.uniform() < 0.4:  # nuclear exclusion: a ring
            foot -= 0.75 * _soft_disk(rho, 0.55 * radius, 0.6)
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


def _calcium(rng: np.random.Generator, n_frames: int, n_cells: int, amplitude: float) -> np.ndarray:
    """dF/F traces: Bernoulli spikes (~0.5 Hz at 30 Hz) convolved with an exponential decay."""
    spikes = rng.uniform(size=(n_frames, n_cells)) < 0.017
    c = np.zeros((n_frames, n_cells))
    for t in range(n_frames):
        c[t] = (0.95 * c[t - 1] if t else 0.0) + spikes[t]
    return (amplitude * c).astype(np.float32)


def _nonrigid_modes(rng, shape, os, scale, n_modes=4):
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


def _block_mean(img: np.ndarray, os: int) -> np.ndarray:
    h, w = img.shape[-2] // os, img.shape[-1] // os
    return img.reshape(*img.shape[:-2], h, os, w, os).mean(axis=(-3, -1))


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
    gain = _positive(gain, "gain")
    offset = _finite(offset, "offset")
    read_noise = _nonnegative(read_noise, "read_noise")
    rng = np.random.default_rng(rng)
    adu = gain * rng.poisson(lam).astype(np.float64) + offset
    if read_noise:
        adu += rng.normal(0.0, read_noise, lam.shape)
    return adu.astype(np.float32)


def simulate_movie(
    shape: tuple[int, int] = (128, 128),
    n_frames: int = 300,
    *,
    photons_per_px: float = 5.0,
    gain: float = 30.0,
    offset: float = 100.0,
    read_noise: float = 10.0,
    motion: str = "walk",
    max_shift: float = 5.0,
    separation: float = 6.0,
    n_positions: int = 4,
    angle: float | None = None,
    shifts: np.ndarray | None = None,
    nonrigid: float = 0.0,
    nonrigid_scale: float | None = None,
    activity: float = 0.0,
    cell_density: float = 1 / 150,
    psf_sigma: float = 0.6,
    oversample: int = 4,
    with_gradient: bool = False,
    seed: int = 0,
) -> SimulatedMovie:
    """Simulate a two-photon movie: oversampled scene, B-spline motion, pixel integration, camera noise.

    See the module docstring for the pipeline and the sign convention
    (``frame(r) = template(r - shift)``).

    Parameters
    ----------
    shape : (int, int)
        Frame size ``(H, W)`` in pixels (each >= 8).
    n_frames : int
        Number of frames (>= 1).
    photons_per_px : float
        Mean detected photons per pixel per frame over the movie (e.g. 1, 5, 20).
    gain : float
        ADU per photon (> 0).
    offset : float
        ADU offset added to every pixel.
    read_noise : float
        Standard deviation of the Gaussian read noise in ADU (>= 0).
    motion : str
        Rigid motion model, see :func:`trajectory`: ``"walk"``, ``"jumps"``,
        ``"two_position"``, ``"alternating"``, ``"three_position"`` or ``"none"``.
    max_shift, separation, n_positions, angle :
        Parameters of the motion model (see :func:`trajectory`).
    shifts : ndarray (n_frames, 2), optional
        Explicit rigid trajectory (y, x) in px; overrides ``motion``.
    nonrigid : float
        Peak amplitude (px) of a smooth non-rigid deformation added to the rigid motion
        (0 = rigid).  The field is a sum of 4 plane waves per axis of wavelength
        ``~nonrigid_scale`` whose amplitudes vary smoothly over time; its mean over the
        field of view is removed each frame (so ``shifts`` stays the mean displacement).
    nonrigid_scale : float, optional
        Wavelength (px) of the deformation (default: the larger frame side).
    activity : float
        Peak dF/F of a single calcium transient of each soma (0 = static scene).
    cell_density : float
        Somata per square pixel (default 1/150).
    psf_sigma : float
        Gaussian optical blur (px, >= 0) of the scene.
    oversample : int
        Sub-pixels per pixel and axis of the rendering grid (>= 1, default 4).
    with_gradient : bool
        Also return the spatial gradient of ``clean`` (for :func:`xnormcorre.testing.crlb.crlb`).
    seed : int
        Seed of the scene, motion and noise (same seed, same bits).

    Returns
    -------
    SimulatedMovie

    Examples
    --------
    >>> sim = simulate_movie((48, 48), 10, photons_per_px=5.0, max_shift=2.0, seed=0)
    >>> sim.frames.shape, sim.frames.dtype, sim.shifts.shape
    ((10, 48, 48), dtype('float32'), (10, 2))
    >>> bool(np.abs(sim.shifts).max() <= 2.0)
    True
    >>> round(float((sim.clean - sim.offset).mean() / sim.gain), 6)
    5.0
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape!r}")
    h, w = (_int(s, "shape", 8) for s in shape)
    n = _int(n_frames, "n_frames", 1)
    photons_per_px = _positive(photons_per_px, "photons_per_px")
    gain = _positive(gain, "gain")
    offset = _finite(offset, "offset")
    read_noise = _nonnegative(read_noise, "read_noise")
    nonrigid = _nonnegative(nonrigid, "nonrigid")
    activity = _nonnegative(activity, "activity")
    cell_density = _nonnegative(cell_density, "cell_density")
    psf_sigma = _nonnegative(psf_sigma, "psf_sigma")
    os = _int(oversample, "oversample", 1)
    seed = _int(seed, "seed", 0)
    if shifts is None:
        rigid = trajectory(
            n,
            motion,
            max_shift=max_shift,
            separation=separation,
            n_positions=n_positions,
            angle=angle,
            seed=seed,
        )
    else:
        rigid = np.asarray(shifts, dtype=np.float64)
        if rigid.shape != (n, 2) or not np.all(np.isfinite(rigid)):
            raise ValueError(
                f"shifts must be a finite (n_frames, 2) = ({n}, 2) array, got shape {rigid.shape}"
            )
    reach = float(np.abs(rigid).max(initial=0.0)) + nonrigid
    margin = int(np.ceil(reach)) + 6  # scene margin (px): content enters from outside the FOV
    rng = np.random.default_rng([seed, 0])
    ext = (h + 2 * margin, w + 2 * margin)
    base, cells = _scene(rng, ext, os, psf_sigma, cell_density)
    act = _calcium(rng, n, len(cells), activity) if activity > 0 and cells else None

    modes = coef = None
    if nonrigid > 0:
        scale = float(max(h, w) if nonrigid_scale is None else _positive(nonrigid_scale, "nonrigid_scale"))
        modes = _nonrigid_modes(rng, (h, w), os, scale)
        coef = ndimage.gaussian_filter1d(rng.standard_normal((n, 2, modes.shape[1])), 4.0, axis=0)
        peak = np.abs(np.einsum("tam,amyx->tayx", coef, modes[:, :, ::os, ::os])).max()
        coef *= nonrigid / peak if peak > 0 else 0.0

    hf, wf = h * os, w * os
    pad = 2 if with_gradient else 0  # fine sub-pixels around the FOV for the 5-point derivative
    qy = (np.arange(-pad, hf + pad) + margin * os).astype(np.float64)
    qx = (np.arange(-pad, wf + pad) + margin * os).astype(np.float64)
    grid = np.stack(np.meshgrid(qy, qx, indexing="ij"))
    inner = (slice(pad, pad + hf), slice(pad, pad + wf))

    def scene_at(a_t) -> np.ndarray:
        s = base.copy()
        if a_t is not None:
            for (sy, sx, foot), a in zip(cells, a_t, strict=True):
                if a:
                    s[sy, sx] += a * foot
        return ndimage.spline_filter(s, order=3, mode="mirror")

    def render(spline, disp_fine) -> np.ndarray:
        """Sample the scene at r - d(r) on the fine FOV grid; disp_fine (2,) or (2, hf, wf) in px."""
        d = np.asarray(disp_fine, dtype=np.float64)
        coords = grid - (d * os if d.ndim == 3 else (d * os)[:, None, None])
        return ndimage.map_coordinates(spline, coords, order=3, mode="mirror", prefilter=False)

    static = scene_at(None) if act is None else None
    clean = np.empty((n, h, w))
    grad = np.empty((n, 2, h, w)) if with_gradient else None
    field = np.empty((n, 2, h, w), np.float32) if modes is not None else None
    for t in range(n):
        spline = static if static is not None else scene_at(act[t])
        if modes is not None:
            nr = np.einsum("am,amyx->ayx", coef[t], modes)
            disp = rigid[t][:, None, None] + nr
            field[t] = _block_mean(disp, os)
            if pad:
                disp = np.pad(disp, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        else:
            disp = rigid[t]
        img = render(spline, disp)
        clean[t] = _block_mean(img[inner], os)
        if grad is not None:  # 4th-order central differences on the fine grid, per coarse px
            for a in (0, 1):
                d = ndimage.correlate1d(img, _FIVE_POINT, axis=a, mode="nearest")
                grad[t, a] = _block_mean(d[inner], os) * os
    mean_act = None if act is None else act.mean(axis=0)
    template = _block_mean(render(scene_at(mean_act), np.zeros(2))[inner], os)

    scale = photons_per_px / clean.mean()  # normalise: mean photons per pixel per frame
    photons = clean * scale
    clean_adu = (offset + gain * photons).astype(np.float32)
    template_adu = (offset + gain * scale * template).astype(np.float32)
    gradient = None if grad is None else (gain * scale * grad).astype(np.float32)
    frames = camera(
        photons, gain=gain, offset=offset, read_noise=read_noise, rng=np.random.default_rng([seed, 1])
    )
    return SimulatedMovie(
        frames=frames,
        clean=clean_adu,
        shifts=rigid.copy(),
        template=template_adu,
        gain=gain,
        offset=offset,
        read_noise=read_noise,
        photons_per_px=photons_per_px,
        field=field,
        gradient=gradient,
        activity=act,
        seed=seed,
    )


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
    fraction = _finite(fraction, "fraction")
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
        out[:, mask] += np.float32(float(movie.max()) if value is None else _finite(value, "value"))
        return out, mask
    idx = rng.choice(h * w, size=max(1, round(fraction * h * w)), replace=False)
    mask.flat[idx] = True
    if kind == "hot":
        out[:, mask] += np.float32(float(movie.max()) if value is None else _finite(value, "value"))
    elif kind == "dead":
        out[:, mask] = np.float32(0.0 if value is None else _finite(value, "value"))
    else:  # stuck
        if value is None:
            lo, hi = np.percentile(movie, [1, 99])
            levels = rng.uniform(lo, hi, idx.size).astype(np.float32)
        else:
            levels = np.full(idx.size, _finite(value, "value"), np.float32)
        out[:, mask] = levels[np.argsort(idx)][None, :]  # frames[:, mask] is in ascending flat order
    return out, mask
