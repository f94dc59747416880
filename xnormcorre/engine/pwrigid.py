"""Piecewise-rigid (NoRMCorre) registration (JAX kernels and their NumPy drivers;
never imports xarray).

Per frame: a rigid estimate on the whole frame; then each patch (geometry:
:mod:`xnormcorre.engine.patches`) is registered to the same patch of the template,
with the peak searched only within ``rigid ± max_deviation_rigid``; the grid of patch
shifts is interpolated (bilinearly, between patch centres, constant beyond the outer
centres) to a dense displacement field, and the frame is resampled once with a Keys
cubic kernel (a = -0.75, as OpenCV's ``INTER_CUBIC`` used by CaImAn) at
``r + field(r)``.  A dense field has no seams between patches, so NoRMCorre's overlap
blending and its < 0.5 px "smearing" guard are not needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache
from . import rigid as _rigid
from .borders import fill_invalid, fill_outside
from .correlation import masked_corr
from .defects import inpaint
from .estimate import estimate_shift
from .runner import default_batch_size, iter_batches, run_kernels

compile_cache.enable()  # before the first kernel compiles: later processes load it from disk

if TYPE_CHECKING:  # pragma: no cover
    from .config import PwParams

__all__ = [
    "apply_pw_shifts",
    "centre_patches",
    "dense_field",
    "mean_registered",
    "register_pw_batch",
    "register_pw_frames",
    "warp",
    "warp_batch",
]


def _keys_weights(t: jax.Array, a: float = -0.75) -> jax.Array:
    """Keys cubic-convolution weights for offsets -1, 0, 1, 2 at fraction ``t``: (..., 4)."""

    def near(x):  # |x| <= 1
        return (a + 2) * x**3 - (a + 3) * x**2 + 1

    def far(x):  # 1 < |x| < 2
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a

    return jnp.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


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
    if clip:
        out = jnp.clip(out, jnp.min(frame), jnp.max(frame))
    if border != "copy":  # "copy": sources were clamped to the frame, the nearest valid value
        out = fill_outside(out, valid, border, fill_min)
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
    rigid_shift,
    template,
    tmpl_pspec,
    fill_min,
    pwindow,
    pweight,
    wy,
    wx,
    defects,
    scale,
    *,
    pad,
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
    inpaint_defects=False,
    clip=False,
    warp_estimate=False,
):
    est = frame * scale
    if inpaint_defects:
        est = inpaint(est, defects)
    ry, rx = rigid_shift[0], rigid_shift[1]
    # Cut each frame patch where the template patch's content went: at the patch start
    # moved by the rounded rigid shift, so that only the residual non-rigid
    # displacement (<= max_dev + 0.5 px) is left to estimate and almost no content
    # enters or leaves the patch.  Edge patches are cut from the frame padded by
    # ``pad`` (edge values), never clamped to it: a clamped cut would leave the
    # rigid shift between the two patch windows, and the windows' own correlation
    # biases that estimate towards zero (edge patches pulled towards the centre).
    cy = jnp.round(ry).astype(jnp.int32)
    cx = jnp.round(rx).astype(jnp.int32)
    my, mx = pad
    padded = jnp.pad(est, ((my, my), (mx, mx)), mode="edge")
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
    if not apply:
        return pshifts
    fy, fx = dense_field(pshifts, wy, wx)
    # template passes average the estimation frames (defects inpainted), as the rigid ones
    src = est * (1.0 / scale) if warp_estimate else frame
    out, valid = warp(src, fy, fx, border, fill_min, clip)
    corr = masked_corr(out, template, valid & jnp.isfinite(out)) if with_corr else jnp.float32(jnp.nan)
    return pshifts, out, corr


_STATIC = (
    "pad",
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
    "inpaint_defects",
    "clip",
    "warp_estimate",
)


@partial(jax.jit, static_argnames=_STATIC)
def register_pw_batch(
    frames,
    rigid_shifts,
    template,
    fill_min,
    pwindow,
    pweight,
    wy,
    wx,
    defects,
    scale,
    *,
    pad,
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
    inpaint_defects=False,
    clip=False,
    warp_estimate=False,
):
    """Piecewise-rigid registration of a batch ``(B, H, W)`` to ``template``, given the
    frames' rigid shifts ``(B, 2)`` (from :func:`xnormcorre.engine.rigid.register_batch`:
    the rigid step of a piecewise-rigid run is the rigid registration itself).

    Returns patch shifts ``(B, Ny, Nx, 2)`` and, if ``apply``, the corrected frames
    ``(B, H, W)`` and their correlation with the template ``(B,)`` (NaN if not
    ``with_corr``).  ``defects``/``scale``/``inpaint_defects`` as in the rigid kernel;
    ``clip`` limits each corrected frame to its raw frame's range.
    """
    tp = _patches(template * scale, starts_y, starts_x, size)
    tmpl_pspec = jnp.fft.rfft2((tp - tp.mean(axis=(-2, -1), keepdims=True)) * pwindow)
    fn = partial(
        _pw_one,
        pad=pad,
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
        inpaint_defects=inpaint_defects,
        clip=clip,
        warp_estimate=warp_estimate,
    )
    consts = (template, tmpl_pspec, fill_min, pwindow, pweight, wy, wx, defects, scale)
    return jax.vmap(lambda f, r: fn(f, r, *consts))(frames, rigid_shifts)


@partial(jax.jit, static_argnames=("border", "clip"))
def warp_batch(frames, pshifts, fill_min, wy, wx, *, border="copy", clip=False):
    """Apply known patch shifts ``(B, Ny, Nx, 2)`` to frames ``(B, H, W)``."""

    def one(frame, ps):
        fy, fx = dense_field(ps, wy, wx)
        return warp(frame, fy, fx, border, fill_min, clip)[0]

    return jax.vmap(one)(frames, pshifts)


# ----------------------------------------------------------------------- NumPy drivers
def register_pw_frames(
    movie,
    template: np.ndarray,
    params: PwParams,
    *,
    start: int = 0,
    stop: int | None = None,
    apply: bool = True,
    on_batch: Callable[[int], None] | None = None,
    with_corr: bool = True,
    origin: int | None = None,
    warp_estimate: bool = False,
):
    """Piecewise-rigid registration of ``movie[start:stop]`` to ``template``
    (``origin``: the frame number of ``movie[start]``, see
    :func:`xnormcorre.engine.rigid.register_frames`).

    ``with_corr=False`` skips the correlation with the template (``corr`` is then NaN).

    Returns
    -------
    rigid_shifts : (T, 2) float32
    patch_shifts : (T, Ny, Nx, 2) float32
    corrected : (T, H, W) float32 or None
    corr : (T,) float32 or None
    """
    stop = len(movie) if stop is None else stop
    n = stop - start
    h, w = template.shape
    tmpl = np.asarray(template, dtype=np.float32)
    fill = np.float32(params.rigid.fill_min)
    rarrays = _rigid.kernel_arrays(params.rigid, tmpl)
    rkw = params.rigid.kernel_kwargs()
    defects, scale = rarrays[3], rarrays[4]
    ny, nx = len(params.starts_y), len(params.starts_x)
    rigid = np.empty((n, 2), np.float32)
    pshifts = np.empty((n, ny, nx, 2), np.float32)
    corrected = np.empty((n, h, w), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None
    kw = params.kernel_kwargs()
    consts = (tmpl, fill, params.pwindow, params.pweight, params.wy, params.wx, defects, scale)

    def kernel(_, batch):
        rs = _rigid.register_batch(batch, tmpl, fill, *rarrays, apply=False, **rkw)
        out = register_pw_batch(
            batch, rs, *consts, apply=apply, with_corr=with_corr, warp_estimate=warp_estimate, **kw
        )
        return (rs, *out) if apply else (rs, out)

    for a, b, out in run_kernels(kernel, movie, start, stop, params.batch_size, origin=origin):
        k = b - a
        rigid[a:b] = out[0][:k]
        pshifts[a:b] = out[1][:k]
        if apply:
            corrected[a:b] = out[2][:k]
            corr[a:b] = out[3][:k]
        if on_batch is not None:
            on_batch(k)
    return rigid, pshifts, corrected, corr


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


def mean_registered(movie, template, params: PwParams, start: int, stop: int, keep=None):
    """Piecewise-rigid template step: mean of frames ``start:stop`` registered to
    ``template``, their rigid shifts and their patch deviations from the rigid shift.

    Frames are read and registered one batch at a time; the corrected frames are summed
    one by one in float64, in frame order (NaN-aware), so the result does not depend on
    the batching.

    Pixels are averaged over the frames whose warp kept them in view (the pass runs
    with ``border="nan"``, unclipped); pixels never in view take the nearest averaged
    value.  ``keep`` (bool per frame) leaves frames out of the mean.

    Returns ``(mean, shifts, deviations)``: ``deviations`` is ``(T, Ny, Nx, 2)``, each
    patch shift minus the frame's rigid shift.
    """
    params = replace(params, rigid=replace(params.rigid, border="nan", clip=False))
    use = np.ones(stop - start, bool) if keep is None else np.asarray(keep, bool)
    acc = np.zeros(template.shape, np.float64)
    cnt = None  # per-pixel count, only once a frame had non-finite pixels
    n_all = 0  # frames summed while every pixel was finite
    shifts, devs = [], []
    for a, b in iter_batches(stop - start, params.batch_size):
        out = register_pw_frames(
            movie,
            template,
            params,
            start=start + a,
            stop=start + b,
            with_corr=False,
            warp_estimate=True,
            origin=start + a,  # each frame in its own lane whatever the batch size: the same bits
        )
        c = out[-2][use[a:b]]
        shifts.append(out[0])
        devs.append(out[1] - out[0][:, None, None, :])
        if cnt is None and np.isfinite(c).all():
            for frame in c:  # frame by frame: the sum's rounding does not depend on the batching
                acc += frame
            n_all += len(c)
            continue
        if cnt is None:
            cnt = np.full(template.shape, float(n_all))
        for frame in c:
            ok = np.isfinite(frame)
            acc += np.where(ok, frame, 0.0)
            cnt += ok
    if cnt is None:
        cnt = np.full(template.shape, float(n_all))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, acc / np.maximum(cnt, 1.0), np.nan)
    return fill_invalid(mean).astype(np.float32), np.concatenate(shifts), np.concatenate(devs)


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
