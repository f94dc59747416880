"""Cramér-Rao lower bound of shift estimation, and the efficiency of an estimator.

For a frame observed as ``f(r) = mu(r - s) + noise`` with ``mu`` the noise-free expected
image in ADU and a Poisson-Gaussian camera (photons x gain + offset, Gaussian read
noise), the per-pixel variance is ``var(r) = gain * (mu(r) - offset) + read_noise**2``
(floored at ``read_noise**2``) and the Fisher information of the 2-D shift is the
2x2 matrix ``I = sum_r grad mu(r) grad mu(r)^T / var(r)``.  Any unbiased estimator has
covariance >= ``I^-1``, so the root-mean-square error of the 2-D shift vector is at
least ``sqrt(trace(I^-1))``.  For a movie, ``trace(I^-1)`` is averaged over frames
before the square root.  This is the bound with a *known* template; a template
estimated as the mean of N registered frames adds roughly 1/N of the frame noise.

Efficiency = CRLB**2 / MSE: 1 means the estimator extracts all the information in
the data.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import check_bounds, derivative
from .sensor import pixel_variance

__all__ = ["CramerRao", "crlb", "crlb_patches", "efficiency", "fisher_information", "rmse", "shift_errors"]


@dataclass(frozen=True)
class CramerRao:
    """Cramér-Rao bound of a movie (or of each patch of it).

    Attributes
    ----------
    fisher : ndarray (T, ..., 2, 2)
        Fisher information of the ``(y, x)`` shift per frame (and patch), px^-2.
    trace : ndarray (T, ...)
        ``trace(I^-1)``: the bound on the mean squared 2-D error of each frame, px^2.
    rmse : float or ndarray (...)
        The movie's bound on the root-mean-square 2-D error, ``sqrt(mean_t trace)``, px
        (one per patch for :func:`crlb_patches`).
    """

    fisher: np.ndarray
    trace: np.ndarray
    rmse: float | np.ndarray

    def __float__(self) -> float:
        return float(self.rmse)


def _check_clean(clean) -> np.ndarray:
    mu = np.asarray(clean, dtype=np.float64)
    if mu.ndim == 2:
        mu = mu[None]
    if mu.ndim != 3 or min(mu.shape[1:]) < 3:
        raise ValueError(f"clean must be (T, H, W) or (H, W) with H, W >= 3, got shape {np.shape(clean)}")
    if not np.all(np.isfinite(mu)):
        raise ValueError("clean must be finite")
    return mu


def _check_camera(gain, read_noise) -> tuple[float, float]:
    gain, read_noise = float(gain), float(read_noise)
    if not np.isfinite(gain) or gain < 0:
        raise ValueError(f"gain must be finite and >= 0, got {gain!r}")
    if not np.isfinite(read_noise) or read_noise < 0:
        raise ValueError(f"read_noise must be finite and >= 0, got {read_noise!r}")
    if gain == 0 and read_noise == 0:
        raise ValueError("gain and read_noise cannot both be 0 (noise-free data has no finite bound)")
    return gain, read_noise


def _central(mu: np.ndarray, stencil: int) -> tuple[np.ndarray, np.ndarray]:
    if stencil == 3:
        gy, gx = np.gradient(mu, axis=(1, 2))
        return gy, gx
    if stencil == 5:
        return tuple(derivative(mu, a) for a in (1, 2))
    raise ValueError(f"stencil must be 3 or 5, got {stencil!r}")


def _terms(clean, gain, read_noise, offset, gradient, stencil) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel Fisher terms (gy^2/var, gy gx/var, gx^2/var), each (T, H, W)."""
    mu = _check_clean(clean)
    gain, read_noise = _check_camera(gain, read_noise)
    if gradient is None:
        gy, gx = _central(mu, stencil)
    else:
        g = np.asarray(gradient, dtype=np.float64)
        if g.ndim == 3:
            g = g[None]
        if g.shape != (mu.shape[0], 2, *mu.shape[1:]):
            raise ValueError(
                f"gradient must have shape (T, 2, H, W) = {(mu.shape[0], 2, *mu.shape[1:])}, got {g.shape}"
            )
        gy, gx = g[:, 0], g[:, 1]
    var = pixel_variance(mu, gain, offset, read_noise)
    return gy * gy / var, gy * gx / var, gx * gx / var


def _assemble(syy, syx, sxx) -> CramerRao:
    fisher = np.stack([np.stack([syy, syx], -1), np.stack([syx, sxx], -1)], -2)
    det = syy * sxx - syx * syx
    with np.errstate(divide="ignore", invalid="ignore"):
        trace = np.where(det > 0, (syy + sxx) / np.where(det > 0, det, 1.0), np.inf)
    rmse = np.sqrt(np.mean(trace, axis=0))
    return CramerRao(fisher=fisher, trace=trace, rmse=float(rmse) if rmse.ndim == 0 else rmse)


def crlb(
    clean: np.ndarray,
    *,
    gain: float,
    read_noise: float,
    offset: float = 0.0,
    gradient: np.ndarray | None = None,
    stencil: int = 3,
) -> CramerRao:
    """Cramér-Rao lower bound on the RMS error of rigid shift estimates of a movie.

    Parameters
    ----------
    clean : ndarray (T, H, W) or (H, W)
        Noise-free expected frames ``mu`` in ADU (e.g. ``SimulatedMovie.clean``).
    gain : float
        ADU per photon (0 = read noise only).
    read_noise : float
        Read-noise standard deviation in ADU.
    offset : float
        ADU offset (the value of zero photons).
    gradient : ndarray (T, 2, H, W), optional
        Spatial gradient ``(d/dy, d/dx)`` of ``clean`` in ADU/px.  Default: central
        differences of ``clean`` (see ``stencil``), accurate for features of >= 2 px.
        Content with power near the pixel Nyquist frequency makes them underestimate
        the gradient and so overestimate the bound (on
        :func:`xnormcorre.testing.simulate.simulate_movie`'s default scene by about
        9 % with 3 points, 2 % with 5); ``SimulatedMovie.gradient`` (differentiated on
        the oversampled grid before pixel integration) is exact to the rendering.
    stencil : {3, 5}
        Central differences on 3 points (``numpy.gradient``: second order, one-sided
        at the border) or 5 points (fourth order, edge values repeated).

    Returns
    -------
    CramerRao
        ``fisher (T, 2, 2)``, ``trace (T,)`` (the bound on each frame's mean squared
        2-D error, px^2) and ``rmse`` (the movie CRLB ``sqrt(mean(trace))``, px).

    Examples
    --------
    A Gaussian spot of amplitude ``A`` and width ``w`` with read noise ``sigma`` only:
    the bound is ``2 sigma / (A sqrt(pi))`` independently of ``w``.

    >>> y, x = np.mgrid[:48, :48]
    >>> mu = 100 + 50 * np.exp(-((y - 24.0) ** 2 + (x - 24.0) ** 2) / (2 * 4.0**2))
    >>> b = crlb(mu, gain=0.0, read_noise=2.0, offset=100.0)
    >>> round(float(b.rmse / (2 * 2.0 / (50 * np.sqrt(np.pi)))), 2)  # central differences: +2 %
    1.02
    """
    return _assemble(
        *(t.sum(axis=(1, 2)) for t in _terms(clean, gain, read_noise, offset, gradient, stencil))
    )


def fisher_information(clean: np.ndarray, **camera: Any) -> np.ndarray:
    """Fisher information of the 2-D shift of each frame, ``(T, 2, 2)`` in px^-2: the
    ``fisher`` of :func:`crlb`, whose parameters it takes.

    Examples
    --------
    >>> y, x = np.mgrid[:32, :32]
    >>> mu = 100 + 50 * np.exp(-((y - 16.0) ** 2 + (x - 16.0) ** 2) / 18)
    >>> fisher_information(mu, gain=0.0, read_noise=1.0).shape
    (1, 2, 2)
    """
    return crlb(clean, **camera).fisher


# help() and Jupyter show crlb's parameters
fisher_information.__signature__ = inspect.signature(crlb).replace(return_annotation=np.ndarray)  # type: ignore[attr-defined]


def crlb_patches(
    clean: np.ndarray,
    y_bounds: Sequence[tuple[int, int]],
    x_bounds: Sequence[tuple[int, int]],
    *,
    gain: float,
    read_noise: float,
    offset: float = 0.0,
    gradient: np.ndarray | None = None,
    stencil: int = 3,
) -> CramerRao:
    """Cramér-Rao bound of the shift of each patch (the patch's pixels only).

    The gradient is taken on the whole frame (so patch borders are central
    differences too) and the Fisher information summed over each patch.

    Parameters
    ----------
    clean, gain, read_noise, offset, gradient, stencil :
        As in :func:`crlb`.
    y_bounds, x_bounds : sequence of (start, stop)
        Patch extents along y and x (``frame[y0:y1, x0:x1]``), e.g.
        ``zip(grid.patch_y_start.values, grid.patch_y_stop.values)`` of
        ``xnormcorre.patch_grid``.

    Returns
    -------
    CramerRao
        ``fisher (T, ny, nx, 2, 2)``, ``trace (T, ny, nx)``, ``rmse (ny, nx)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> mu = 100 + 20 * rng.random((2, 32, 32))
    >>> b = crlb_patches(mu, [(0, 16), (16, 32)], [(0, 32)], gain=1.0, read_noise=1.0, offset=100.0)
    >>> b.trace.shape, b.rmse.shape
    ((2, 2, 1), (2, 1))
    """
    terms = _terms(clean, gain, read_noise, offset, gradient, stencil)
    h, w = terms[0].shape[1:]
    yb = check_bounds(y_bounds, h, "y_bounds")
    xb = check_bounds(x_bounds, w, "x_bounds")
    sums = []
    for term in terms:
        s = np.empty((term.shape[0], len(yb), len(xb)))
        for i, (y0, y1) in enumerate(yb):
            for j, (x0, x1) in enumerate(xb):
                s[:, i, j] = term[:, y0:y1, x0:x1].sum(axis=(1, 2))
        sums.append(s)
    return _assemble(*sums)


def shift_errors(estimated: np.ndarray, true: np.ndarray, *, remove_offset: bool = True) -> np.ndarray:
    """Estimated minus true shifts, ``(T, ..., 2)``, optionally minus their mean over time.

    A template defines the origin of the shifts only up to a constant (an estimated
    template sits wherever the frames it averaged sat), so by default the constant
    offset that best aligns the two series -- the mean difference over frames, per
    axis (and per patch) -- is removed.  It costs 1 of T degrees of freedom: the
    expected MSE of an efficient estimator is then ``(1 - 1/T) CRLB**2``.

    Examples
    --------
    >>> shift_errors([[1.0, 2.0], [3.0, 5.0]], [[0.0, 0.0], [2.0, 3.0]]).tolist()
    [[0.0, 0.0], [0.0, 0.0]]
    """
    est = np.asarray(estimated, dtype=np.float64)
    tru = np.asarray(true, dtype=np.float64)
    if est.shape != tru.shape or est.ndim < 2 or est.shape[-1] != 2:
        raise ValueError(f"estimated and true must both be (T, ..., 2), got {est.shape} and {tru.shape}")
    err = est - tru
    if remove_offset:
        err = err - err.mean(axis=0)
    return err


def efficiency(
    estimated: np.ndarray,
    true: np.ndarray,
    crlb: CramerRao | float | np.ndarray,
    *,
    remove_offset: bool = True,
) -> float | np.ndarray:
    """Efficiency ``CRLB**2 / MSE`` of shift estimates (1 = at the statistical limit).

    ``MSE`` is the mean over frames of the squared 2-D error ``|estimated - true|^2``,
    after removing the constant offset between the two series (their mean difference
    over frames): a template defines the origin only up to a constant, so a constant
    offset is not an error (see :func:`shift_errors`).

    Parameters
    ----------
    estimated, true : ndarray (T, 2) or (T, ny, nx, 2)
        Shifts ``(y, x)`` in px, rigid or per patch, in the same sign convention.
    crlb : CramerRao, float or ndarray (ny, nx)
        The bound (``CramerRao.rmse`` is used), px.
    remove_offset : bool
        Remove the mean difference first (default True).

    Returns
    -------
    float, or ndarray (ny, nx) per patch

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> true = rng.uniform(-3, 3, (4000, 2))
    >>> est = true + 0.7 + rng.normal(0, 0.1, true.shape)  # offset + noise of 0.1 px per axis
    >>> round(float(efficiency(est, true, 0.1 * np.sqrt(2))), 1)
    1.0
    """
    err = shift_errors(estimated, true, remove_offset=remove_offset)
    mse = np.mean(np.sum(err**2, axis=-1), axis=0)
    bound = np.asarray(crlb.rmse if isinstance(crlb, CramerRao) else crlb, dtype=np.float64)
    with np.errstate(divide="ignore"):
        eff = bound**2 / mse
    return float(eff) if np.ndim(eff) == 0 else eff


def rmse(estimated: np.ndarray, true: np.ndarray, *, remove_offset: bool = True) -> float | np.ndarray:
    """Root-mean-square 2-D error (px) after removing the constant offset (see :func:`efficiency`).

    Examples
    --------
    >>> rmse([[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]])
    0.7071067811865476
    """
    err = shift_errors(estimated, true, remove_offset=remove_offset)
    out = np.sqrt(np.mean(np.sum(err**2, axis=-1), axis=0))
    return float(out) if np.ndim(out) == 0 else out
