"""Dense displacement fields and the warp that applies them (JAX kernels and their NumPy
drivers; never imports xarray).

A ``(Ny, Nx, 2)`` grid of patch shifts is interpolated (bilinearly, between patch
centres, constant beyond the outer centres; the matrices of
:func:`xnormcorre.engine.patches.interp_matrix`) to a dense displacement field, and the
frame is resampled once with a Keys cubic kernel (a = -0.75, as OpenCV's ``INTER_CUBIC``
used by CaImAn) at ``r + field(r)``.  A dense field has no seams between patches, so
NoRMCorre's overlap blending and its < 0.5 px "smearing" guard are not needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache
from .borders import fill_outside
from .runner import default_batch_size, run_kernels

compile_cache.enable()  # before the first kernel compiles: later processes load it from disk

if TYPE_CHECKING:  # pragma: no cover
    from .config import PwParams

__all__ = ["apply_pw_shifts", "centre_patches", "clamp", "dense_field", "keys_weights", "warp", "warp_batch"]


def keys_weights(t: jax.Array, a: float = -0.75) -> jax.Array:
    """Keys cubic-convolution weights for offsets -1, 0, 1, 2 at fraction ``t``: (..., 4)."""

    def near(x):  # |x| <= 1
        return (a + 2) * x**3 - (a + 3) * x**2 + 1

    def far(x):  # 1 < |x| < 2
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a

    return jnp.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def clamp(x: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """``x`` limited to ``[lo, hi]``: the values of ``jnp.clip``, as two selects.

    XLA on CPU fuses ``clip``'s clamp with the warp's gathers into a loop several
    times slower (about 6x at 512², when a reduction such as the correlation with the
    template follows); the selects keep the warp's fast loop and give the same bits.

    Examples
    --------
    >>> clamp(jnp.array([-2.0, 0.5, 3.0]), 0.0, 1.0).tolist()
    [0.0, 0.5, 1.0]
    """
    return jnp.where(x < lo, lo, jnp.where(x > hi, hi, x))


def warp(
    frame: jax.Array, fy: jax.Array, fx: jax.Array, border: str, fill_min: jax.Array, clip: bool = False
):
    """Sample ``frame`` at ``(r + f(r))`` with Keys cubic interpolation.

    ``fy``/``fx`` are the dense displacement fields ``(H, W)``; the result is the
    frame moved by ``-f`` (``clip``: limited to the frame's own range, no overshoot of
    the cubic kernel).  Returns the image and the mask of pixels whose source lay
    inside the frame.

    Sources are clamped to the frame (the edge-replicated frame supplies the taps that
    fall outside it).  The 16 taps are read from the flattened, edge-padded frame with
    1-D gathers: XLA's CPU gather is an order of magnitude faster with one flat index
    per element than with ``(row, column)`` index pairs.
    """
    h, w = frame.shape
    sy = jnp.arange(h, dtype=jnp.float32)[:, None] + fy
    sx = jnp.arange(w, dtype=jnp.float32)[None, :] + fx
    eps = 1e-3
    valid = (sy >= -eps) & (sy <= h - 1 + eps) & (sx >= -eps) & (sx <= w - 1 + eps)
    sy = jnp.clip(sy, 0.0, h - 1.0)
    sx = jnp.clip(sx, 0.0, w - 1.0)
    y0 = jnp.floor(sy)
    x0 = jnp.floor(sx)
    wy = keys_weights(sy - y0)  # (H, W, 4)
    wx = keys_weights(sx - x0)
    # taps y0 - 1 ... y0 + 2 are rows y0 ... y0 + 3 of the frame padded by 1 / 2 rows
    flat = jnp.pad(frame, ((1, 2), (1, 2)), mode="edge").ravel()
    wp = w + 3
    base = y0.astype(jnp.int32) * wp + x0.astype(jnp.int32)
    out = jnp.zeros((h, w), frame.dtype)
    for i in range(4):
        row = jnp.zeros((h, w), frame.dtype)
        for j in range(4):
            row = row + wx[..., j] * flat.at[base + (i * wp + j)].get(mode="promise_in_bounds")
        out = out + wy[..., i] * row
    if clip:
        out = clamp(out, jnp.min(frame), jnp.max(frame))
    if border != "copy":  # "copy": sources were clamped to the frame, the nearest valid value
        out = fill_outside(out, valid, border, fill_min)
    return out, valid


def dense_field(pshifts: jax.Array, wy: jax.Array, wx: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Interpolate a ``(Ny, Nx, 2)`` grid of patch shifts to ``(H, W)`` fields (y, x)."""
    fy = wy @ pshifts[..., 0] @ wx.T
    fx = wy @ pshifts[..., 1] @ wx.T
    return fy, fx


@compile_cache.kernel_jit(static_argnames=("border", "clip"))
def warp_batch(frames, pshifts, fill_min, wy, wx, *, border="copy", clip=False):
    """Apply known patch shifts ``(B, Ny, Nx, 2)`` to frames ``(B, H, W)``."""

    def one(frame, ps):
        fy, fx = dense_field(ps, wy, wx)
        return warp(frame, fy, fx, border, fill_min, clip)[0]

    return jax.vmap(one)(frames, pshifts)


# ----------------------------------------------------------------------- NumPy drivers
def apply_pw_shifts(
    movie,
    patch_shifts: np.ndarray,
    wy: np.ndarray,
    wx: np.ndarray,
    *,
    border: str = "copy",
    fill_min: float = 0.0,
    batch_size: int | None = None,
    clip: bool = True,
    origin: int | None = None,
) -> np.ndarray:
    """Move each frame by the dense field interpolated from its patch shifts.

    ``patch_shifts`` is ``(T, Ny, Nx, 2)``; ``wy`` ``(H, Ny)`` and ``wx`` ``(W, Nx)`` are
    the interpolation matrices from patch centres to pixels
    (:func:`xnormcorre.engine.patches.interp_matrix`).
    """
    n = len(movie)
    h, w = movie.shape[1:]
    bs = batch_size or default_batch_size((h, w), n)
    ps = np.asarray(patch_shifts, dtype=np.float32)
    out = np.empty((n, h, w), np.float32)
    fill = np.float32(fill_min)
    wy = np.asarray(wy, np.float32)
    wx = np.asarray(wx, np.float32)

    def kernel(_, batch, sh):
        return warp_batch(batch, sh, fill, wy, wx, border=border, clip=clip)

    for a, b, (res,) in run_kernels(kernel, movie, 0, n, bs, ps, origin=origin):
        out[a:b] = res[: b - a]
    return out


def centre_patches(template: np.ndarray, deviations: np.ndarray, params: PwParams) -> np.ndarray:
    """Deform a piecewise-rigid template to the frames' mean local geometry.

    The mean of frames registered to a template keeps that template's local geometry,
    which for the first piecewise-rigid template is the rigid template's: wherever the
    frames' content most often was, a blur-weighted position that is not the frames'
    mean deformation where the deformation's distribution over time is skewed.  Each
    patch's mean deviation from the rigid shift over the frames of the pass (a
    ``(Ny, Nx, 2)`` grid) is the template's offset from that mean; the template is
    moved by it (the dense field of :func:`dense_field`,
    Keys-cubic, edges replicated), so that the next pass's patch shifts deviate from
    the rigid shifts by zero on average in every patch -- the piecewise analogue of
    :func:`xnormcorre.engine.template.centre`.
    """
    dev = np.mean(np.asarray(deviations, np.float64), axis=0).astype(np.float32)  # (Ny, Nx, 2)
    # content moved by +dev: warp with the displacement -dev
    out = warp_batch(
        np.asarray(template, np.float32)[None],
        -dev[None],
        np.float32(0.0),
        params.wy,
        params.wx,
        border="copy",
    )
    return np.asarray(out)[0]
