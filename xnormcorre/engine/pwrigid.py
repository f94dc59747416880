"""Piecewise-rigid (NoRMCorre) registration kernels (JAX; never imports xarray).

Patches (CaImAn/jnormcorre semantics): patch size = ``strides + overlaps``; patch starts
along an axis of length ``n`` are ``range(0, n - size, stride)`` plus a last patch
flush with the far edge (``n - size``), so every pixel is covered by full-size patches
and any frame at least one patch large works.  MATLAB NoRMCorre's ``grid_size``
corresponds to ``strides`` and its ``overlap_pre`` to ``overlaps / 2`` on each side.

Per frame: a rigid estimate on the whole frame; then each patch is registered to the
same patch of the template, with the peak searched only within
``rigid ± max_deviation_rigid``; the grid of patch shifts is interpolated (bilinearly,
between patch centres, constant beyond the outer centres) to a dense displacement
field, and the frame is resampled once with a Keys cubic kernel (a = -0.75, as
OpenCV's ``INTER_CUBIC`` used by CaImAn) at ``r + field(r)``.  A dense field has no
seams between patches, so NoRMCorre's overlap blending and its < 0.5 px "smearing"
guard are not needed.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .rigid import estimate_shift, masked_corr


def patch_starts(n: int, stride: int, overlap: int) -> list[int]:
    """Start pixels of the patches along one axis (CaImAn ``sliding_window``).

    Examples
    --------
    >>> patch_starts(128, 48, 24)
    [0, 48, 56]
    >>> patch_starts(72, 48, 24)
    [0]
    """
    size = stride + overlap
    if n < size:
        raise ValueError(f"patch size strides + overlaps = {size} is larger than the frame ({n} px)")
    return sorted({*range(0, n - size, stride), n - size})


def patch_centres(starts: list[int], size: int) -> np.ndarray:
    """Patch centres in pixels (``start + (size - 1) / 2``)."""
    return np.asarray(starts, dtype=np.float64) + (size - 1) / 2.0


def interp_matrix(n: int, centres: np.ndarray) -> np.ndarray:
    """``(n, len(centres))`` linear-interpolation weights from patch centres to pixels.

    Constant extrapolation beyond the first/last centre; rows sum to one.
    """
    m = len(centres)
    wts = np.zeros((n, m), np.float32)
    if m == 1:
        wts[:, 0] = 1.0
        return wts
    pos = np.clip(np.arange(n, dtype=np.float64), centres[0], centres[-1])
    k = np.clip(np.searchsorted(centres, pos, side="right") - 1, 0, m - 2)
    t = (pos - centres[k]) / (centres[k + 1] - centres[k])
    wts[np.arange(n), k] = 1.0 - t
    wts[np.arange(n), k + 1] += t
    return wts


def _keys_weights(t: jax.Array, a: float = -0.75) -> jax.Array:
    """Keys cubic-convolution weights for offsets -1, 0, 1, 2 at fraction ``t``: (..., 4)."""

    def near(x):  # |x| <= 1
        return (a + 2) * x**3 - (a + 3) * x**2 + 1

    def far(x):  # 1 < |x| < 2
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a

    return jnp.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def warp(frame: jax.Array, fy: jax.Array, fx: jax.Array, border: str, fill_min: jax.Array):
    """Sample ``frame`` at ``(r + f(r))`` with Keys cubic interpolation.

    ``fy``/``fx`` are the dense displacement fields ``(H, W)``; the result is the
    frame moved by ``-f``.  Returns the image and the mask of pixels whose source lay
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
    wy = _keys_weights(sy - y0)  # (H, W, 4)
    wx = _keys_weights(sx - x0)
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
    if border == "copy":
        pass  # sources were clamped to the frame: nearest valid value
    elif border == "nan":
        out = jnp.where(valid, out, jnp.nan)
    elif border == "zero":
        out = jnp.where(valid, out, 0.0)
    elif border == "min":
        out = jnp.where(valid, out, fill_min)
    return out, valid


def dense_field(pshifts: jax.Array, wy: jax.Array, wx: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Interpolate a ``(Ny, Nx, 2)`` grid of patch shifts to ``(H, W)`` fields (y, x)."""
    fy = wy @ pshifts[..., 0] @ wx.T
    fx = wy @ pshifts[..., 1] @ wx.T
    return fy, fx


def _patches(img: jax.Array, sy: tuple[int, ...], sx: tuple[int, ...], size: tuple[int, int]) -> jax.Array:
    return jnp.stack(
        [jnp.stack([img[a : a + size[0], b : b + size[1]] for b in sx]) for a in sy]
    )  # (Ny, Nx, py, px)


def _pw_one(
    frame,
    template,
    tmpl_spec,
    tmpl_pspec,
    fill_min,
    window,
    weight,
    pwindow,
    pweight,
    wy,
    wx,
    *,
    max_shifts,
    max_dev,
    starts_y,
    starts_x,
    size,
    upsample_factor,
    border,
    whiten,
    peak_fit,
    apply,
    with_corr=True,
):
    h, w = frame.shape
    est = jnp.fft.rfft2((frame - frame.mean()) * window)
    ry, rx = estimate_shift(
        est,
        tmpl_spec,
        weight,
        (h, w),
        radius=max_shifts,
        upsample_factor=upsample_factor,
        whiten=whiten,
        peak_fit=peak_fit,
    )
    # Cut each frame patch where the template patch's content went: at the patch start
    # moved by the rounded rigid shift, so that only the residual non-rigid
    # displacement (<= max_dev + 0.5 px) is left to estimate and almost no content
    # enters or leaves the patch.  Edge patches are cut from the frame padded by
    # ``max_shifts`` (edge values), never clamped to it: a clamped cut would leave the
    # rigid shift between the two patch windows, and the windows' own correlation
    # biases that estimate towards zero (edge patches pulled towards the centre).
    cy = jnp.round(ry).astype(jnp.int32)
    cx = jnp.round(rx).astype(jnp.int32)
    my, mx = max_shifts
    padded = jnp.pad(frame, ((my, my), (mx, mx)), mode="edge")
    syy, sxx = jnp.meshgrid(jnp.asarray(starts_y), jnp.asarray(starts_x), indexing="ij")

    def cut(y0, x0):
        return jax.lax.dynamic_slice(padded, (y0 + cy + my, x0 + cx + mx), size)

    patches = jax.vmap(jax.vmap(cut))(syy, sxx)  # (Ny, Nx, py, px)
    pm = patches - patches.mean(axis=(-2, -1), keepdims=True)
    pspec = jnp.fft.rfft2(pm * pwindow)  # (Ny, Nx, py, pxh)
    radius = (max_dev[0] + 1, max_dev[1] + 1)  # rounding of the centre costs up to 0.5 px

    # every patch is cut (cy, cx) from its template patch: the residual is searched
    # around 0 within the rigid shift's own bounds, moved by that offset
    def one_patch(ps, ts):
        res_y, res_x = estimate_shift(
            ps,
            ts,
            pweight,
            size,
            radius=radius,
            upsample_factor=upsample_factor,
            whiten=whiten,
            peak_fit=peak_fit,
            bounds=(ry - max_dev[0] - cy, ry + max_dev[0] - cy, rx - max_dev[1] - cx, rx + max_dev[1] - cx),
        )
        return jnp.stack([res_y + cy, res_x + cx])

    pshifts = jax.vmap(jax.vmap(one_patch))(pspec, tmpl_pspec)  # (Ny, Nx, 2)
    rigid = jnp.stack([ry, rx])
    if not apply:
        return rigid, pshifts
    fy, fx = dense_field(pshifts, wy, wx)
    out, valid = warp(frame, fy, fx, border, fill_min)
    corr = masked_corr(out, template, valid & jnp.isfinite(out)) if with_corr else jnp.float32(jnp.nan)
    return rigid, pshifts, out, corr


_STATIC = (
    "max_shifts",
    "max_dev",
    "starts_y",
    "starts_x",
    "size",
    "upsample_factor",
    "border",
    "whiten",
    "peak_fit",
    "apply",
    "with_corr",
)


@partial(jax.jit, static_argnames=_STATIC)
def register_pw_batch(
    frames,
    template,
    fill_min,
    window,
    weight,
    pwindow,
    pweight,
    wy,
    wx,
    *,
    max_shifts,
    max_dev,
    starts_y,
    starts_x,
    size,
    upsample_factor,
    border="copy",
    whiten=True,
    peak_fit=False,
    apply=True,
    with_corr=True,
):
    """Piecewise-rigid registration of a batch ``(B, H, W)`` to ``template``.

    Returns rigid shifts ``(B, 2)``, patch shifts ``(B, Ny, Nx, 2)`` and, if ``apply``,
    the corrected frames ``(B, H, W)`` and their correlation with the template ``(B,)``
    (NaN if not ``with_corr``: template passes need only the corrected frames).
    """
    tmpl_spec = jnp.fft.rfft2((template - template.mean()) * window)
    tp = _patches(template, starts_y, starts_x, size)
    tmpl_pspec = jnp.fft.rfft2((tp - tp.mean(axis=(-2, -1), keepdims=True)) * pwindow)
    fn = partial(
        _pw_one,
        max_shifts=max_shifts,
        max_dev=max_dev,
        starts_y=starts_y,
        starts_x=starts_x,
        size=size,
        upsample_factor=upsample_factor,
        border=border,
        whiten=whiten,
        peak_fit=peak_fit,
        apply=apply,
        with_corr=with_corr,
    )
    consts = (template, tmpl_spec, tmpl_pspec, fill_min, window, weight, pwindow, pweight, wy, wx)
    return jax.vmap(lambda f: fn(f, *consts))(frames)


@partial(jax.jit, static_argnames=("border",))
def warp_batch(frames, pshifts, fill_min, wy, wx, *, border="copy"):
    """Apply known patch shifts ``(B, Ny, Nx, 2)`` to frames ``(B, H, W)``."""

    def one(frame, ps):
        fy, fx = dense_field(ps, wy, wx)
        return warp(frame, fy, fx, border, fill_min)[0]

    return jax.vmap(one)(frames, pshifts)
