"""Shift estimation: the peak of the phase-correlation surface and its subpixel refinement
(JAX; never imports xarray).

Guizar-Sicairos, Thurman & Fienup (2008), as in NoRMCorre's ``dftregistration``:

1. cross-power spectrum ``P = F_frame · conj(F_template)`` on the real FFT half-plane
   (:func:`cross_power`, optionally whitened and weighted);
2. coarse peak: argmax of the correlation surface restricted to ``[-max_shift, +max_shift]``
   (both ends included) on each axis, evaluated by a matrix DFT on that window only;
3. refinement to ``1/upsample_factor`` px with a matrix-multiply DFT evaluated only on a
   small neighbourhood of the coarse peak (or of a Gaussian fit of the integer samples
   when the surface is a sampled Gaussian), then a 3-point parabolic fit
   (skipped for ``upsample_factor == 1``, which gives integer shifts).

Everything here is traced inside the ``jit``-compiled kernels of
:mod:`xnormcorre.engine.rigid` and :mod:`xnormcorre.engine.pwrigid`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .fourier import dft_at, dft_at_nd

__all__ = ["cross_power", "estimate_shift", "estimate_shift_nd", "refine_fit"]


def _window(
    p: jax.Array,
    shape: tuple[int, int],
    radius: tuple[int, int],
    centre: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Correlation surface at the integer lags ``centre ± radius`` (ends included).

    The surface is evaluated only on that window, from the cross-power spectrum ``p``
    (half-plane), by a matrix DFT -- cheaper than a full inverse FFT whenever the window
    is small compared with the frame.  Returns ``(2·radius_y + 1, 2·radius_x + 1)``.
    """
    h, w = shape
    my, mx = radius
    gy = np.arange(-my, my + 1, dtype=np.float32)
    gx = np.arange(-mx, mx + 1, dtype=np.float32)
    origin = None if centre is None else (jnp.float32(centre[0]), jnp.float32(centre[1]))
    return dft_at(p, jnp.asarray(gy), jnp.asarray(gx), h, w, origin)


def _argmax_centred(win: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Row and column of the maximum of ``win``; ties (e.g. a featureless frame)
    resolve to the window centre, not its corner."""
    ny, nx = win.shape
    k = jnp.argmax(win)
    k0 = (ny // 2) * nx + nx // 2
    k = jnp.where(win.ravel()[k0] >= win.ravel()[k], k0, k)
    return k // nx, k % nx


def _coarse_peak(
    p: jax.Array,
    shape: tuple[int, int],
    radius: tuple[int, int],
    centre: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Integer argmax of the correlation surface within ``centre ± radius`` (ends included)."""
    my, mx = radius
    cy, cx = (0, 0) if centre is None else centre
    iy, ix = _argmax_centred(_window(p, shape, radius, centre))
    return (iy - my + cy).astype(jnp.float32), (ix - mx + cx).astype(jnp.float32)


def _gauss_peak(
    p: jax.Array,
    shape: tuple[int, int],
    radius: tuple[int, int],
    centre: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Subpixel peak of a Gaussian-smoothed phase-correlation surface.

    With whitening and the Gaussian spectral weight ``exp(-2π²σ²|k|²)`` the surface of
    a translated image is a sampled Gaussian of width ``σ`` centred on the shift; its
    logarithm is a parabola, so a 3-point parabolic fit of ``log`` of the integer
    samples on each axis recovers the centre of a periodic translation exactly.  Real
    frames (content entering and leaving, the apodized template, noise) make the
    surface slightly non-Gaussian (errors up to ~0.1 px on small frames), which
    :func:`estimate_shift` removes with a small upsampled-DFT grid around this
    estimate.  The window is evaluated one lag wider than ``radius`` so that a peak on
    the search bound still has both neighbours; where a neighbour is not positive
    (noise) the fit falls back to a plain parabola.
    """
    my, mx = radius
    cy, cx = (0, 0) if centre is None else centre
    win = _window(p, shape, (my + 1, mx + 1), centre)
    iy, ix = _argmax_centred(win[1:-1, 1:-1])
    iy, ix = iy + 1, ix + 1
    oy = _log_parabolic(win[iy - 1, ix], win[iy, ix], win[iy + 1, ix])
    ox = _log_parabolic(win[iy, ix - 1], win[iy, ix], win[iy, ix + 1])
    dy = (iy - (my + 1) + cy).astype(jnp.float32) + oy
    dx = (ix - (mx + 1) + cx).astype(jnp.float32) + ox
    return dy, dx


def _fit_region(upsample_factor: int) -> int:
    """Refinement grid (points per axis) around a Gaussian-fit estimate: ±0.25 px (at
    least ±1 step), never more than the ±0.75 px grid around an integer peak."""
    return min(2 * math.ceil(0.25 * upsample_factor) + 1, math.ceil(1.5 * upsample_factor))


def _log_parabolic(left: jax.Array, centre: jax.Array, right: jax.Array) -> jax.Array:
    """Vertex offset (within ±0.5) of the Gaussian through three samples; a plain
    parabola where a sample is not positive."""
    ok = (left > 0) & (centre > 0) & (right > 0)
    safe = [jnp.log(jnp.where(ok, v, 1.0)) for v in (left, centre, right)]
    return jnp.where(ok, _parabolic(*safe), _parabolic(left, centre, right))


def cross_power(est_spec: jax.Array, tmpl_spec: jax.Array, weight: jax.Array, whiten: bool) -> jax.Array:
    """Cross-power spectrum ``est · conj(tmpl)``, optionally whitened, times ``weight``."""
    p = est_spec * jnp.conj(tmpl_spec)
    if whiten:
        mag = jnp.sqrt(jnp.real(p) ** 2 + jnp.imag(p) ** 2)
        return p * (weight / (mag + 1e-12))
    return p * weight


def estimate_shift(
    est_spec: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    shape: tuple[int, int],
    *,
    radius: tuple[int, int],
    upsample_factor: int,
    whiten: bool,
    peak_fit: bool = False,
    centre: tuple[jax.Array, jax.Array] | None = None,
    bounds: tuple[jax.Array, jax.Array, jax.Array, jax.Array] | None = None,
    grid: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Displacement of an image (``est_spec``) relative to a template (``tmpl_spec``).

    The peak is searched at integer positions within ``centre ± radius`` and, unless
    ``upsample_factor == 1`` (integer shifts), refined on the ``1/upsample_factor``
    grid of an upsampled DFT plus a parabolic fit: around the integer peak (±0.75 px),
    or, if ``peak_fit`` (whitened, Gaussian-smoothed cross-power), around the Gaussian
    fit of :func:`_gauss_peak`, which is close enough that a ±0.25 px grid suffices
    (half the cost or less).  ``grid=False`` skips that grid after a Gaussian fit (when
    :func:`xnormcorre.engine.refine.gauss_newton_step` follows, which needs only a start
    within a fraction of a pixel).  The result is clipped to
    ``bounds = (lo_y, hi_y, lo_x, hi_x)`` (default ``±radius`` around ``centre``).
    """
    h, w = shape
    p = cross_power(est_spec, tmpl_spec, weight, whiten)
    cy, cx = (jnp.int32(0), jnp.int32(0)) if centre is None else centre
    ctr = None if centre is None else (cy, cx)
    if upsample_factor > 1 and peak_fit:
        dy, dx = _gauss_peak(p, (h, w), radius, ctr)
        if grid:
            dy, dx = _refine(p, dy, dx, upsample_factor, h, w, region=_fit_region(upsample_factor))
    else:
        dy, dx = _coarse_peak(p, (h, w), radius, ctr)
        if upsample_factor > 1:
            dy, dx = _refine(p, dy, dx, upsample_factor, h, w)
    if bounds is None:
        bounds = (cy - radius[0], cy + radius[0], cx - radius[1], cx + radius[1])
    dy = jnp.clip(dy, bounds[0], bounds[1])
    dx = jnp.clip(dx, bounds[2], bounds[3])
    return dy, dx


def refine_fit(
    est_spec: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    shape: tuple[int, int],
    dy: jax.Array,
    dx: jax.Array,
    *,
    radius: tuple[int, int],
    upsample_factor: int,
    whiten: bool,
) -> tuple[jax.Array, jax.Array]:
    """The upsampled-DFT grid that :func:`estimate_shift` (``peak_fit=True``,
    ``grid=True``) runs after its Gaussian fit, from that fit's ``(dy, dx)``: the same
    result as ``estimate_shift(..., peak_fit=True, grid=True)``, for a caller that took
    the fit with ``grid=False`` and decides later (a traced choice) not to refine it by
    Gauss-Newton steps.  Clipped to ``±radius``."""
    h, w = shape
    p = cross_power(est_spec, tmpl_spec, weight, whiten)
    dy, dx = _refine(p, dy, dx, upsample_factor, h, w, region=_fit_region(upsample_factor))
    return jnp.clip(dy, -radius[0], radius[0]), jnp.clip(dx, -radius[1], radius[1])


def _refine(
    p: jax.Array,
    dy0: jax.Array,
    dx0: jax.Array,
    upsample_factor: int,
    h: int,
    w: int,
    region: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Upsampled matrix-DFT refinement of a peak estimate (Guizar-Sicairos 2008).

    ``p`` is the half-plane cross-power spectrum ``(h, w // 2 + 1)`` of a frame of
    width ``w``; the peak is searched on a ``1/upsample_factor`` grid of ``region``
    points per axis centred on ``(dy0, dx0)`` (default ``ceil(1.5·upsample_factor)``:
    within ±0.75 px of an integer peak), then refined by a 3-point parabolic fit.  The
    cost is proportional to ``region``.
    """
    us = float(upsample_factor)
    region = int(math.ceil(upsample_factor * 1.5)) if region is None else int(region)
    off = region // 2
    grid = jnp.asarray((np.arange(region, dtype=np.float32) - off) / np.float32(us))
    ry = dy0 + grid
    rx = dx0 + grid
    up = dft_at(p, grid, grid, h, w, (dy0, dx0))  # (region, region)
    k = jnp.argmax(up)
    k0 = off * region + off  # ties resolve to the coarse peak itself
    k = jnp.where(up.ravel()[k0] >= up.ravel()[k], k0, k)
    iy, ix = k // region, k % region
    # 3-point parabolic interpolation on the 1/us grid removes its quantization error
    dy = _parabolic(
        up[jnp.clip(iy - 1, 0, region - 1), ix], up[iy, ix], up[jnp.clip(iy + 1, 0, region - 1), ix]
    )
    dx = _parabolic(
        up[iy, jnp.clip(ix - 1, 0, region - 1)], up[iy, ix], up[iy, jnp.clip(ix + 1, 0, region - 1)]
    )
    edge_y = (iy == 0) | (iy == region - 1)
    edge_x = (ix == 0) | (ix == region - 1)
    dy = jnp.where(edge_y, 0.0, dy)
    dx = jnp.where(edge_x, 0.0, dx)
    return ry[iy] + dy / us, rx[ix] + dx / us


def _parabolic(left: jax.Array, centre: jax.Array, right: jax.Array) -> jax.Array:
    """Vertex offset (in grid steps, within ±0.5) of the parabola through three samples."""
    denom = left - 2.0 * centre + right
    off = jnp.where(denom < 0, 0.5 * (left - right) / jnp.where(denom < 0, denom, -1.0), 0.0)
    return jnp.clip(off, -0.5, 0.5)


# --------------------------------------------------------------------------- n dimensions
def _argmax_centred_nd(win: jax.Array) -> tuple[jax.Array, ...]:
    """Index of the maximum of ``win`` (any number of axes); ties resolve to the centre."""
    k = jnp.argmax(win)
    k0 = int(np.ravel_multi_index(tuple(n // 2 for n in win.shape), win.shape))
    k = jnp.where(win.ravel()[k0] >= win.ravel()[k], k0, k)
    return jnp.unravel_index(k, win.shape)


def _neighbours(win: jax.Array, idx: tuple[jax.Array, ...], ax: int) -> tuple[jax.Array, ...]:
    """``win`` at ``idx`` and its two neighbours along axis ``ax`` (clamped to the window)."""
    n = win.shape[ax]
    out = []
    for d in (-1, 0, 1):
        at = list(idx)
        at[ax] = jnp.clip(idx[ax] + d, 0, n - 1)
        out.append(win[tuple(at)])
    return tuple(out)


def estimate_shift_nd(
    est_spec: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    shape: tuple[int, ...],
    *,
    radius: tuple[int, ...],
    upsample_factor: int,
    whiten: bool,
    peak_fit: bool = False,
    grid: bool = True,
) -> jax.Array:
    """:func:`estimate_shift` for images of any number of axes (``rfftn`` spectra), e.g.
    volumes ``(z, y, x)``: the integer peak within ``±radius`` (a Gaussian log-parabola
    fit per axis with ``peak_fit``), refined on a ``1/upsample_factor`` upsampled-DFT
    grid plus a parabolic fit per axis (unless ``grid=False`` after a Gaussian fit, or
    ``upsample_factor == 1``), clipped to ``±radius``.  Returns the shift ``(ndim,)``.
    """
    nd = len(shape)
    p = cross_power(est_spec, tmpl_spec, weight, whiten)
    wide = 1 if (upsample_factor > 1 and peak_fit) else 0
    offsets = tuple(jnp.arange(-(m + wide), m + wide + 1, dtype=jnp.float32) for m in radius)
    win = dft_at_nd(p, offsets, shape)
    inner = win[tuple(slice(wide, n - wide) for n in win.shape)]
    idx = tuple(i + wide for i in _argmax_centred_nd(inner))
    shift = jnp.stack([offsets[ax][idx[ax]] for ax in range(nd)])
    if upsample_factor > 1 and peak_fit:
        shift = shift + jnp.stack([_log_parabolic(*_neighbours(win, idx, ax)) for ax in range(nd)])
        if grid:
            shift = _refine_nd(p, shift, upsample_factor, shape, _fit_region(upsample_factor))
    elif upsample_factor > 1:
        shift = _refine_nd(p, shift, upsample_factor, shape, int(math.ceil(upsample_factor * 1.5)))
    lim = jnp.asarray(radius, jnp.float32)
    return jnp.clip(shift, -lim, lim)


def _refine_nd(p: jax.Array, shift0: jax.Array, upsample_factor: int, shape: tuple[int, ...], region: int):
    """:func:`_refine` in any number of axes: the peak on a ``1/upsample_factor`` grid of
    ``region`` points per axis around ``shift0``, then a parabolic fit per axis."""
    nd = len(shape)
    us = float(upsample_factor)
    off = region // 2
    g = jnp.asarray((np.arange(region, dtype=np.float32) - off) / np.float32(us))
    up = dft_at_nd(p, (g,) * nd, shape, tuple(shift0[ax] for ax in range(nd)))
    idx = _argmax_centred_nd(up)
    out = []
    for ax in range(nd):
        frac = _parabolic(*_neighbours(up, idx, ax))
        edge = (idx[ax] == 0) | (idx[ax] == region - 1)
        out.append(shift0[ax] + g[idx[ax]] + jnp.where(edge, 0.0, frac) / us)
    return jnp.stack(out)
