"""A simulated movie and its ground truth (:class:`SimulatedMovie`, made by
:func:`xnormcorre.testing.simulate.simulate_movie`): the true shift of each patch and the
same movie under another exposure or camera."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .common import check_bounds, derivative, positive
from .sensor import camera, camera_parameters, pixel_variance

__all__ = ["SimulatedMovie"]


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
        >>> from xnormcorre.testing.simulate import simulate_movie
        >>> sim = simulate_movie((32, 32), 3, max_shift=1.0, seed=0)
        >>> sim.patch_shifts([(0, 16), (16, 32)], [(0, 32)]).shape
        (3, 2, 1, 2)
        """
        yb = check_bounds(y_bounds, self.frames.shape[1], "y_bounds")
        xb = check_bounds(x_bounds, self.frames.shape[2], "x_bounds")
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
                g = np.stack([derivative(mu, a) for a in (1, 2)], 1)
            var = pixel_variance(mu, self.gain, self.offset, self.read_noise)
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
        >>> from xnormcorre.testing.simulate import simulate_movie
        >>> sim = simulate_movie((32, 32), 4, photons_per_px=5.0, seed=0)
        >>> bright = sim.expose(20.0)
        >>> round(float((bright.clean - bright.offset).mean() / bright.gain), 3)
        20.0
        """
        old_scale = self.gain * self.photons_per_px
        p = positive(self.photons_per_px if photons_per_px is None else photons_per_px, "photons_per_px")
        g, o, rn = camera_parameters(
            self.gain if gain is None else gain,
            self.offset if offset is None else offset,
            self.read_noise if read_noise is None else read_noise,
        )
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
