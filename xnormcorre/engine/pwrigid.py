"""Piecewise-rigid (NoRMCorre) registration (JAX kernels and their NumPy drivers;
never imports xarray).

Per frame: a rigid estimate on the whole frame; then each patch (geometry:
:mod:`xnormcorre.engine.patches`) is registered to the same patch of the template,
with the peak searched only within ``rigid ± max_deviation_rigid`` and, optionally
(``PwParams.patch_refine_steps > 0``), refined as the rigid estimate by a
noise-weighted Gauss-Newton step of the patch against the template patch
(:func:`xnormcorre.engine.refine_patch.robust_step`: one rfft2/irfft2 pair per patch, a
least-squares start and two Tukey-biweight steps against cells that lit up; bounded by
``MAX_STEP`` and by the search window); the grid of patch
shifts is interpolated to a dense displacement field and the frame resampled once
(:mod:`xnormcorre.engine.warp`).
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
from .borders import border_limits, fill_invalid
from .correlation import masked_corr
from .defects import inpaint_at
from .estimate import estimate_shift
from .fourier import fourier_shift
from .noise import pixel_weights
from .refine import refine_constants
from .refine_patch import quarter_products, robust_step
from .runner import run_kernels
from .warp import dense_field, warp

compile_cache.enable()  # before the first kernel compiles: later processes load it from disk

if TYPE_CHECKING:  # pragma: no cover
    from .config import PwParams

__all__ = [
    "iter_pw_registered",
    "mean_registered",
    "patch_constants",
    "register_pw_batch",
    "register_pw_frames",
]


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
    refine,
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
    refine_steps=0,
):
    est = frame * scale
    if inpaint_defects:
        est = inpaint_at(est, defects)
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
    bounds = (ry - max_dev[0] - cy, ry + max_dev[0] - cy, rx - max_dev[1] - cx, rx + max_dev[1] - cx)

    def peak(ps, ts):
        return estimate_shift(
            ps,
            ts,
            pweight,
            size,
            radius=radius,
            upsample_factor=upsample_factor,
            whiten=whiten,
            peak_fit=peak_fit,
            bounds=bounds,
            grid=refine_steps == 0,
        )

    if refine_steps == 0:

        def one_patch(ps, ts):
            res_y, res_x = peak(ps, ts)
            return jnp.stack([res_y + cy, res_x + cx])

        pshifts = jax.vmap(jax.vmap(one_patch))(pspec, tmpl_pspec)  # (Ny, Nx, 2)
    else:
        # the unwindowed (mean-free) patch spectra, moved by the peak estimate for the
        # refinement: one rfft2/irfft2 pair per patch and step
        raw_spec = jnp.fft.rfft2(pm)
        h, w = frame.shape

        def refined_patch(ps, ts, rs, consts, y0, x0):
            res_y, res_x = peak(ps, ts)
            # the rigid estimator's Gauss-Newton step, on the patch against the template
            # patch: only pixels that stayed in the patch after the move and whose source
            # lay inside the frame (edge patches are cut from the padded frame).  A cell
            # lighting up is a large part of a patch: the Tukey biweight leaves it out
            for _ in range(refine_steps):
                moved = fourier_shift(rs, res_y, res_x, size)
                lo_y, hi_y, lo_x, hi_x = border_limits(res_y, res_x, *size)
                oy, ox = y0 + cy + res_y, x0 + cx + res_x  # frame position of the moved patch's origin
                limits = (
                    jnp.maximum(lo_y, jnp.ceil(-oy).astype(jnp.int32)),
                    jnp.minimum(hi_y, jnp.floor(h - 1 - oy).astype(jnp.int32)),
                    jnp.maximum(lo_x, jnp.ceil(-ox).astype(jnp.int32)),
                    jnp.minimum(hi_x, jnp.floor(w - 1 - ox).astype(jnp.int32)),
                )
                ddy, ddx = robust_step(moved, consts, limits)
                res_y = jnp.clip(res_y + ddy, bounds[0], bounds[1])
                res_x = jnp.clip(res_x + ddx, bounds[2], bounds[3])
            return jnp.stack([res_y + cy, res_x + cx])

        pshifts = jax.vmap(jax.vmap(refined_patch))(pspec, tmpl_pspec, raw_spec, refine, syy, sxx)
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
    "refine_steps",
)


@compile_cache.kernel_jit(static_argnames=_STATIC)
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
    refine=None,
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
    refine_steps=0,
):
    """Piecewise-rigid registration of a batch ``(B, H, W)`` to ``template``, given the
    frames' rigid shifts ``(B, 2)`` (from :func:`xnormcorre.engine.rigid.register_batch`:
    the rigid step of a piecewise-rigid run is the rigid registration itself).

    Returns patch shifts ``(B, Ny, Nx, 2)`` and, if ``apply``, the corrected frames
    ``(B, H, W)`` and their correlation with the template ``(B,)`` (NaN if not
    ``with_corr``).  ``defects``/``scale``/``inpaint_defects`` as in the rigid kernel;
    ``clip`` limits each corrected frame to its raw frame's range.  ``refine``: the
    Gauss-Newton constants of each template patch (:func:`patch_constants`); each patch's
    correlation peak is then refined by ``refine_steps`` noise-weighted, Tukey-robust
    Gauss-Newton steps (:func:`xnormcorre.engine.refine_patch.robust_step`), within the same
    bounds.
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
        refine_steps=refine_steps if refine is not None else 0,
    )
    consts = (template, tmpl_pspec, fill_min, pwindow, pweight, wy, wx, defects, scale)
    return jax.vmap(lambda f, r: fn(f, r, *consts, refine))(frames, rigid_shifts)


# ----------------------------------------------------------------------- NumPy drivers
def patch_constants(template: np.ndarray, params: PwParams) -> tuple[np.ndarray, ...] | None:
    """Gauss-Newton constants of every template patch, stacked ``(Ny, Nx, ...)``, or None
    without patch refinement (``params.patch_refine_steps == 0``, the default).

    Each patch gets :func:`xnormcorre.engine.refine.refine_constants` of the template
    patch, weighted by the noise model's ``1/var`` on the whole template (cut to the
    patch), as the rigid step: ``(rhs, prefix, jac, sqrt_w, prods_q)``, the products
    of the Jacobian on a quarter of the pixels
    (:func:`xnormcorre.engine.refine_patch.quarter_products`), as
    :func:`xnormcorre.engine.refine_patch.robust_step` takes them.
    """
    if params.patch_refine_steps <= 0:
        return None
    t = np.asarray(template, np.float64)
    wts = pixel_weights(t, params.rigid.noise)
    py, px = params.size
    rows = []
    for y0 in params.starts_y:
        cells = [
            refine_constants(t[y0 : y0 + py, x0 : x0 + px], wts[y0 : y0 + py, x0 : x0 + px])
            for x0 in params.starts_x
        ]
        rows.append([np.stack(parts) for parts in zip(*cells, strict=True)])
    rhs, prefix, prods, jac, sqrt_w = (np.stack(parts) for parts in zip(*rows, strict=True))
    return rhs, prefix, jac, sqrt_w, quarter_products(prods, (py, px))


def iter_pw_registered(
    movie,
    template: np.ndarray,
    params: PwParams,
    *,
    start: int = 0,
    stop: int | None = None,
    apply: bool = True,
    with_corr: bool = True,
    origin: int | None = None,
    warp_estimate: bool = False,
    refine: bool = True,
):
    """Piecewise-rigid registration of ``movie[start:stop]`` to ``template``, one kernel
    batch at a time: yields ``(a, b, outputs)`` in frame order (``a:b`` relative to
    ``start``), ``outputs`` the kernels' ``(rigid_shifts, patch_shifts, corrected,
    corr)`` (the first two if not ``apply``), as
    :func:`xnormcorre.engine.runner.run_kernels` yields them.  One pass over the whole
    range keeps every kernel thread busy; a template step sums the corrected frames as
    they come instead of holding the block.  ``refine=False``: the rigid step without its
    Gauss-Newton steps (the template iterations; the patches cut at the rounded rigid
    shift do not need its last hundredths of a pixel)."""
    stop = len(movie) if stop is None else stop
    tmpl = np.asarray(template, dtype=np.float32)
    fill = np.float32(params.rigid.fill_min)
    rarrays = _rigid.kernel_arrays(params.rigid, tmpl)
    rkw = params.rigid.kernel_kwargs()
    defects, scale = rarrays[3], rarrays[4]
    kw = params.kernel_kwargs()
    pconsts = patch_constants(tmpl, params)
    consts = (tmpl, fill, params.pwindow, params.pweight, params.wy, params.wx, defects, scale, pconsts)

    def kernel(_, batch):
        rs = _rigid.register_batch(batch, tmpl, fill, *rarrays, apply=False, refine=refine, **rkw)
        out = register_pw_batch(
            batch, rs, *consts, apply=apply, with_corr=with_corr, warp_estimate=warp_estimate, **kw
        )
        return (rs, *out) if apply else (rs, out)

    return run_kernels(kernel, movie, start, stop, params.batch_size, origin=origin)


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
    ny, nx = len(params.starts_y), len(params.starts_x)
    rigid = np.empty((n, 2), np.float32)
    pshifts = np.empty((n, ny, nx, 2), np.float32)
    corrected = np.empty((n, h, w), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None
    batches = iter_pw_registered(
        movie,
        template,
        params,
        start=start,
        stop=stop,
        apply=apply,
        with_corr=with_corr,
        origin=origin,
        warp_estimate=warp_estimate,
    )
    for a, b, out in batches:
        k = b - a
        rigid[a:b] = out[0][:k]
        pshifts[a:b] = out[1][:k]
        if apply:
            corrected[a:b] = out[2][:k]
            corr[a:b] = out[3][:k]
        if on_batch is not None:
            on_batch(k)
    return rigid, pshifts, corrected, corr


def mean_registered(movie, template, params: PwParams, start: int, stop: int, keep=None, refine=True):
    """Piecewise-rigid template step: mean of frames ``start:stop`` registered to
    ``template``, their rigid shifts and their patch deviations from the rigid shift.

    Frames are read and registered one batch at a time; the corrected frames are summed
    one by one in float64, in frame order (NaN-aware), so the result does not depend on
    the batching.

    Pixels are averaged over the frames whose warp kept them in view (the pass runs
    with ``border="nan"``, unclipped); pixels never in view take the nearest averaged
    value.  ``keep`` (bool per frame) leaves frames out of the mean.

    Returns ``(mean, shifts, deviations)``: ``deviations`` is ``(T, Ny, Nx, 2)``, each
    patch shift minus the frame's rigid shift.  ``refine=False`` (the template
    iterations): the rigid step without its Gauss-Newton steps, about 40 % of a frame's
    cost; that step only places the patches (cut at the rounded rigid shift, searched
    within ``rigid ± max_deviation_rigid``) and the mean is of the frames warped by their
    patch shifts.
    """
    params = replace(params, rigid=replace(params.rigid, border="nan", clip=False))
    use = np.ones(stop - start, bool) if keep is None else np.asarray(keep, bool)
    acc = np.zeros(template.shape, np.float64)
    cnt = None  # per-pixel count, only once a frame had non-finite pixels
    n_all = 0  # frames summed while every pixel was finite
    shifts, devs = [], []
    # one pass over start:stop (every kernel thread busy), each frame in the lane of its
    # frame number whatever the batching: the same bits
    batches = iter_pw_registered(
        movie,
        template,
        params,
        start=start,
        stop=stop,
        with_corr=False,
        warp_estimate=True,
        origin=start,
        refine=refine,
    )
    for a, b, out in batches:
        c = out[2][use[a:b]]
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
