"""Rigid subpixel registration kernels (JAX; unlabeled, never imports xarray).

Sign convention
---------------
A *shift* ``s = (s_y, s_x)`` is the displacement of a frame's content relative to the
template: ``frame(r) ≈ template(r - s)``.  The corrected frame is the frame moved by
``-s``: ``corrected(r) = frame(r + s)``.  (NoRMCorre and CaImAn report the applied
correction, i.e. ``-s``.)

Algorithm
---------
Guizar-Sicairos, Thurman & Fienup (2008), as in NoRMCorre's ``dftregistration``:

1. cross-power spectrum ``P = F_frame · conj(F_template)`` on the real FFT half-plane;
2. coarse peak: argmax of ``irfft2(P)`` restricted to ``[-max_shift, +max_shift]``
   (both ends included) on each axis;
3. refinement to ``1/upsample_factor`` px with a matrix-multiply DFT evaluated only on a
   ``ceil(1.5 · upsample_factor)``² neighbourhood of the coarse peak.  The half-plane is
   used with Hermitian weights, so the refinement costs half of the full-plane DFT.
   A 3-point parabolic fit around the best grid point then removes most of the
   ``1/upsample_factor`` quantization error (skipped for ``upsample_factor == 1``,
   which gives integer shifts);
4. application by a Fourier phase ramp (exact for band-limited rigid shifts), fused with
   the registration (the frame's spectrum is computed once), followed by border handling
   so that nothing wraps around.

All functions take float32 arrays, are ``jit``-compiled per input shape and return JAX
arrays; :mod:`xnormcorre.engine.api` converts to NumPy at the engine boundary.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

BORDERS = ("copy", "nan", "zero", "min")


def _freqs(h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Signed integer frequencies along y (full) and x (half-plane)."""
    ky = jnp.fft.fftfreq(h, d=1.0 / h).astype(jnp.float32)
    kx = jnp.arange(w // 2 + 1, dtype=jnp.float32)
    return ky, kx


def _hermitian_weights(w: int) -> jax.Array:
    """Weights that turn a half-plane sum into the full-plane (real) sum."""
    wts = jnp.full((w // 2 + 1,), 2.0, dtype=jnp.float32)
    wts = wts.at[0].set(1.0)
    if w % 2 == 0:
        wts = wts.at[-1].set(1.0)
    return wts


def _coarse_peak(
    cc: jax.Array, radius: tuple[int, int], centre: tuple[jax.Array, jax.Array] | None = None
) -> tuple[jax.Array, jax.Array]:
    """Integer argmax of ``cc`` within ``centre ± radius`` (both ends included)."""
    h, w = cc.shape
    my, mx = radius
    cy, cx = (0, 0) if centre is None else centre
    oy = jnp.arange(-my, my + 1) + cy
    ox = jnp.arange(-mx, mx + 1) + cx
    win = cc[oy % h][:, ox % w]
    k = jnp.argmax(win)
    # ties (e.g. a featureless frame) resolve to the window centre, not its corner
    k0 = my * (2 * mx + 1) + mx
    k = jnp.where(win.ravel()[k0] >= win.ravel()[k], k0, k)
    return oy[k // (2 * mx + 1)].astype(jnp.float32), ox[k % (2 * mx + 1)].astype(jnp.float32)


def estimate_shift(
    est_spec: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    shape: tuple[int, int],
    *,
    radius: tuple[int, int],
    upsample_factor: int,
    whiten: bool,
    centre: tuple[jax.Array, jax.Array] | None = None,
    bounds: tuple[jax.Array, jax.Array, jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Displacement of an image (``est_spec``) relative to a template (``tmpl_spec``).

    Both spectra are rfft2 half-planes of apodized, mean-subtracted images.  The peak
    is searched at integer positions within ``centre ± radius``, refined on the
    ``1/upsample_factor`` grid, and clipped to ``bounds = (lo_y, hi_y, lo_x, hi_x)``
    (default ``±radius`` around ``centre``).
    """
    h, w = shape
    p = est_spec * jnp.conj(tmpl_spec)
    if whiten:
        p = p / (jnp.abs(p) + 1e-12)
    p = p * weight
    cc = jnp.fft.irfft2(p, s=(h, w))
    cy, cx = (jnp.int32(0), jnp.int32(0)) if centre is None else centre
    dy, dx = _coarse_peak(cc, radius, (cy, cx))
    if upsample_factor > 1:
        dy, dx = _refine(p, dy, dx, upsample_factor, h, w)
    if bounds is None:
        bounds = (cy - radius[0], cy + radius[0], cx - radius[1], cx + radius[1])
    dy = jnp.clip(dy, bounds[0], bounds[1])
    dx = jnp.clip(dx, bounds[2], bounds[3])
    return dy, dx


def _refine(
    p: jax.Array, dy0: jax.Array, dx0: jax.Array, upsample_factor: int, h: int, w: int
) -> tuple[jax.Array, jax.Array]:
    """Upsampled matrix-DFT refinement of the coarse peak (Guizar-Sicairos 2008).

    ``p`` is the half-plane cross-power spectrum ``(h, w // 2 + 1)`` of a frame of
    width ``w``; the peak is searched on a ``1/upsample_factor`` grid within
    ±0.75 px of ``(dy0, dx0)``.
    """
    us = float(upsample_factor)
    region = int(math.ceil(upsample_factor * 1.5))
    off = region // 2
    grid = (jnp.arange(region, dtype=jnp.float32) - off) / us
    ry = dy0 + grid
    rx = dx0 + grid
    ky, kx = _freqs(h, w)
    ky_mat = jnp.exp(2j * jnp.pi * ry[:, None] * ky[None, :] / h)  # (region, h)
    kx_mat = jnp.exp(2j * jnp.pi * kx[:, None] * rx[None, :] / w)  # (wh, region)
    kx_mat = kx_mat * _hermitian_weights(w)[:, None]
    up = jnp.real(ky_mat @ p @ kx_mat)  # (region, region)
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


def _border_limits(dy: jax.Array, dx: jax.Array, h: int, w: int):
    """First/last valid row and column after moving the frame by ``-(dy, dx)``."""
    lo_y = jnp.ceil(jnp.maximum(-dy, 0.0)).astype(jnp.int32)
    hi_y = h - 1 - jnp.ceil(jnp.maximum(dy, 0.0)).astype(jnp.int32)
    lo_x = jnp.ceil(jnp.maximum(-dx, 0.0)).astype(jnp.int32)
    hi_x = w - 1 - jnp.ceil(jnp.maximum(dx, 0.0)).astype(jnp.int32)
    # never empty (|shift| < half the frame is validated upstream)
    hi_y = jnp.maximum(hi_y, lo_y)
    hi_x = jnp.maximum(hi_x, lo_x)
    return lo_y, hi_y, lo_x, hi_x


def apply_border(
    img: jax.Array, dy: jax.Array, dx: jax.Array, border: str, fill_min: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Replace pixels that wrapped around after a shift by ``-(dy, dx)``.

    Returns the filled image and the boolean validity mask.
    """
    h, w = img.shape
    lo_y, hi_y, lo_x, hi_x = _border_limits(dy, dx, h, w)
    rows = jnp.arange(h)
    cols = jnp.arange(w)
    valid = ((rows >= lo_y) & (rows <= hi_y))[:, None] & ((cols >= lo_x) & (cols <= hi_x))[None, :]
    if border == "copy":
        img = jnp.take(img, jnp.clip(rows, lo_y, hi_y), axis=0)
        img = jnp.take(img, jnp.clip(cols, lo_x, hi_x), axis=1)
    elif border == "nan":
        img = jnp.where(valid, img, jnp.nan)
    elif border == "zero":
        img = jnp.where(valid, img, 0.0)
    elif border == "min":
        img = jnp.where(valid, img, fill_min)
    else:  # pragma: no cover - validated upstream
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    return img, valid


def fourier_shift(spec: jax.Array, dy: jax.Array, dx: jax.Array, shape: tuple[int, int]):
    """Move an image given by its rfft2 ``spec`` by ``-(dy, dx)`` (i.e. correct a shift)."""
    h, w = shape
    ky, kx = _freqs(h, w)
    ramp = jnp.exp(2j * jnp.pi * (ky[:, None] * dy / h + kx[None, :] * dx / w))
    return jnp.fft.irfft2(spec * ramp, s=(h, w))


def masked_corr(a: jax.Array, b: jax.Array, mask: jax.Array) -> jax.Array:
    """Pearson correlation of ``a`` and ``b`` over ``mask`` (NaN if undefined)."""
    m = mask.astype(a.dtype)
    n = jnp.maximum(m.sum(), 1.0)
    am = jnp.where(mask, a, 0.0)
    bm = jnp.where(mask, b, 0.0)
    ma = am.sum() / n
    mb = bm.sum() / n
    da = (am - ma) * m
    db = (bm - mb) * m
    return (da * db).sum() / jnp.sqrt((da * da).sum() * (db * db).sum())


def _register_one(
    frame: jax.Array,
    tmpl_spec: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    window: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    border: str,
    apply: bool,
    whiten: bool,
):
    h, w = frame.shape
    spec = jnp.fft.rfft2(frame)
    est_spec = jnp.fft.rfft2((frame - frame.mean()) * window)
    dy, dx = estimate_shift(
        est_spec, tmpl_spec, weight, (h, w), radius=max_shifts, upsample_factor=upsample_factor, whiten=whiten
    )
    shift = jnp.stack([dy, dx])
    if not apply:
        return shift
    out = fourier_shift(spec, dy, dx, (h, w))
    out, valid = apply_border(out, dy, dx, border, fill_min)
    corr = masked_corr(out, template, valid & jnp.isfinite(out))
    return shift, out, corr


@partial(jax.jit, static_argnames=("max_shifts", "upsample_factor", "border", "apply", "whiten"))
def register_batch(
    frames: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    window: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    border: str = "copy",
    apply: bool = True,
    whiten: bool = False,
):
    """Register a batch of frames ``(B, H, W)`` to ``template`` ``(H, W)``.

    Returns ``shifts (B, 2)`` and, if ``apply``, also the corrected frames
    ``(B, H, W)`` and their correlation with the template ``(B,)``.
    """
    tmpl_spec = jnp.fft.rfft2((template - template.mean()) * window)
    fn = partial(
        _register_one,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        border=border,
        apply=apply,
        whiten=whiten,
    )
    return jax.vmap(fn, in_axes=(0, None, None, None, None, None))(
        frames, tmpl_spec, template, fill_min, window, weight
    )


@partial(jax.jit, static_argnames=("border",))
def shift_batch(frames: jax.Array, shifts: jax.Array, fill_min: jax.Array, *, border: str = "copy"):
    """Move each frame ``(B, H, W)`` by ``-shifts[b]`` (apply known rigid shifts)."""
    h, w = frames.shape[1:]

    def one(frame, s):
        spec = jnp.fft.rfft2(frame)
        out = fourier_shift(spec, s[0], s[1], (h, w))
        out, _ = apply_border(out, s[0], s[1], border, fill_min)
        return out

    return jax.vmap(one)(frames, shifts)
