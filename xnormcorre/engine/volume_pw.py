"""Piecewise-rigid registration of volumes ``(z, y, x)`` (JAX kernels and NumPy drivers;
never imports xarray).

The 3-D form of :mod:`xnormcorre.engine.pwrigid`, built from the steps of the rigid
volume registration (:mod:`xnormcorre.engine.volume`).  Per volume: the rigid shift
(:func:`xnormcorre.engine.volume.register_volume_batch`); then each patch (the patch
geometry of :mod:`xnormcorre.engine.patches`, per axis) is cut where the template
patch's content went -- at the patch start moved by the rounded rigid shift, from the
volume edge-padded by ``max_shifts`` -- and registered to the template patch as a small
volume (:func:`xnormcorre.engine.volume_estimate.estimate_padded`: a patch axis shorter
than 16 planes is edge-padded, not tapered), its peak searched within ``rigid ±
max_dev``.  The
grid of patch shifts is interpolated linearly between patch centres (one matrix per
axis, :func:`xnormcorre.engine.patches.interp_matrix`) to a dense displacement field
(:func:`xnormcorre.engine.warp_nd.dense_field_nd`) and the volume resampled once with the
Keys cubic kernel (a = -0.75) of the 2-D warp, in n dimensions
(:func:`xnormcorre.engine.warp_nd.warp_nd`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache
from . import volume as _vol
from .patches import interp_matrix, patch_axis
from .runner import run_kernels
from .volume_estimate import corr_nd, estimate_padded, pad_volume, template_gradients, template_spectrum
from .warp_nd import dense_field_nd, warp_nd

compile_cache.enable()

__all__ = [
    "VolumePwParams",
    "apply_volume_pw_shifts",
    "centre_volume_patches",
    "corr_volume_batch",
    "dense_field_nd",
    "estimate_volume_pw_template",
    "make_volume_pw_params",
    "register_volumes_pw",
    "warp_nd",
]


# ----------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class VolumePwParams:
    """Static parameters of a piecewise-rigid volume registration."""

    #: the rigid step (whole volumes)
    rigid: _vol.VolumeParams
    #: a patch's registration: ``max_shifts`` = ``max_dev + 1``, its own padding, taper, weight
    patch: _vol.VolumeParams
    max_dev: tuple[int, ...]
    #: patch starts along each axis
    starts: tuple[tuple[int, ...], ...]
    size: tuple[int, ...]
    batch_size: int
    #: interpolation matrices from patch centres to samples, one ``(n, N)`` per axis
    mats: tuple[np.ndarray, ...] = ()

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Number of patches along each axis."""
        return tuple(len(s) for s in self.starts)

    @property
    def border(self) -> str:
        return self.rigid.border

    def kernel_kwargs(self) -> dict:
        return dict(
            pad=self.rigid.max_shifts,
            max_dev=self.max_dev,
            starts=self.starts,
            size=self.size,
            patch_kw=self.patch.static_kw(),
            border=self.rigid.border,
            clip=self.rigid.clip,
        )


def make_volume_pw_params(
    shape: tuple[int, ...],
    *,
    strides: tuple[int, ...],
    overlaps: tuple[int, ...],
    max_deviation_rigid: tuple[int, ...],
    refine_patches: bool = False,
    batch_size: int | None = None,
    n_frames: int | None = None,
    **rigid_kw,
) -> VolumePwParams:
    """Parameters of a piecewise-rigid volume registration: the rigid ones
    (:func:`xnormcorre.engine.volume.make_volume_params` with ``rigid_kw``), the patch
    grid (patch size ``strides + overlaps`` per axis, :func:`patch_axis`) and a patch's
    registration parameters (search radius ``max_deviation_rigid + 1``: the rounding of
    the rigid shift costs up to half a sample; ``refine_patches``: one Gauss-Newton step
    per patch, as the rigid step).  Validation of the values is the caller's."""
    rigid = _vol.make_volume_params(shape, batch_size=batch_size, n_frames=n_frames, **rigid_kw)
    axes = [patch_axis(n, s, o) for n, s, o in zip(shape, strides, overlaps, strict=True)]
    size = tuple(a.size for a in axes)
    md = tuple(int(d) for d in max_deviation_rigid)
    patch_kw = {
        k: v for k, v in rigid_kw.items() if k in ("upsample_factor", "phase_corr", "smooth_sigma", "taper")
    }
    patch = _vol.make_volume_params(size, max_shifts=tuple(d + 1 for d in md), batch_size=1, **patch_kw)
    patch = replace(patch, refine_steps=1 if refine_patches else 0)
    return VolumePwParams(
        rigid=rigid,
        patch=patch,
        max_dev=md,
        starts=tuple(tuple(int(s) for s in a.starts) for a in axes),
        size=size,
        batch_size=rigid.batch_size,
        mats=tuple(interp_matrix(n, a.centres) for n, a in zip(shape, axes, strict=True)),
    )


# ----------------------------------------------------------------------- kernels
def _template_patches(template, starts, size):
    """Template patches ``(P, *size)`` in grid order (C order of the patch grid)."""
    return jnp.stack(
        [
            template[tuple(slice(a, a + n) for a, n in zip(s, size, strict=True))]
            for s in itertools.product(*starts)
        ]
    )


@compile_cache.kernel_jit(
    static_argnames=("pad", "max_dev", "starts", "size", "patch_kw", "border", "clip", "apply")
)
def register_volume_pw_batch(
    vols,
    rshifts,
    template,
    pgrads,
    pwindow,
    pweight,
    mats,
    fill_min,
    *,
    pad,
    max_dev,
    starts,
    size,
    patch_kw,
    border="copy",
    clip=True,
    apply=True,
):
    """Piecewise-rigid registration of volumes ``(B, D, H, W)`` given their rigid shifts
    ``(B, 3)`` (``clip``: each corrected volume limited to its own range, see
    :func:`warp_nd`): patch shifts ``(B, *grid, 3)`` and, if ``apply``, the corrected
    volumes and the masks of their voxels whose source lay inside the volume (their
    correlation with the template: :func:`corr_volume_batch`, a separate computation:
    fused with the warp, XLA's CPU code recomputes the warp once per sum).  ``pgrads``:
    gradients of the padded template patches ``(P, 3, *padded size)``;
    ``pwindow``/``pweight``: a patch's taper and spectral weight (on the padded patch
    shape)."""
    kw = dict(patch_kw)
    tp = _template_patches(template, starts, size)
    tp_p, tp_spec = jax.vmap(lambda t: template_spectrum(t, kw["pads"], pwindow))(tp)
    grid = tuple(len(s) for s in starts)
    corners = jnp.asarray(list(itertools.product(*starts)), jnp.int32) + jnp.asarray(pad, jnp.int32)
    md = jnp.asarray(max_dev, jnp.float32)

    def one_volume(vol, rshift):
        """Patch shifts ``(*grid, ndim)`` of one volume and, if ``apply``, the volume
        warped by their dense field and the mask of its voxels whose source lay inside it."""
        nd = vol.ndim
        c = jnp.round(rshift).astype(jnp.int32)
        padded = jnp.pad(vol, [(m, m) for m in pad], mode="edge")
        origins = corners + c
        patches = jax.vmap(lambda o: jax.lax.dynamic_slice(padded, tuple(o[i] for i in range(nd)), size))(
            origins
        )
        cf = c.astype(jnp.float32)
        lo, hi = (
            rshift - md - cf,
            rshift + md - cf,
        )  # the residual's bounds: rigid ± max_dev, less the cut offset

        def one_patch(p, ts, tpp, g):
            # correlated mean-subtracted and tapered as the template patch (as 2-D patches are:
            # a raw patch's edge-padded planes would outweigh a few real ones), refined raw
            padded = pad_volume(p, kw["pads"])
            spec = jnp.fft.rfftn((padded - p.mean()) * pwindow)
            raw = jnp.fft.rfftn(padded) if kw["refine_steps"] else None
            return estimate_padded(spec, ts, tpp, g, pweight, size, kw=kw, lo=lo, hi=hi, raw=raw)

        res = jax.vmap(one_patch)(patches, tp_spec, tp_p, pgrads)  # (P, ndim)
        pshifts = (res + cf).reshape((*grid, nd))
        if not apply:
            return pshifts
        out, valid = warp_nd(vol, dense_field_nd(pshifts, mats), border, fill_min, clip)
        return pshifts, out, valid

    return jax.vmap(one_volume)(vols, rshifts)


@compile_cache.kernel_jit
def corr_volume_batch(vols, template, valid):
    """Pearson correlation of each volume ``(B, D, H, W)`` with ``template`` over its
    ``valid`` voxels (finite ones only)."""
    return jax.vmap(lambda v, m: corr_nd(v, template, m & jnp.isfinite(v)))(vols, valid)


@compile_cache.kernel_jit(static_argnames=("border", "clip"))
def warp_volume_batch(vols, pshifts, mats, fill_min, *, border="copy", clip=False):
    """Apply known patch shifts ``(B, *grid, 3)`` to volumes ``(B, D, H, W)`` (``clip``:
    each limited to its own range)."""
    return jax.vmap(lambda v, ps: warp_nd(v, dense_field_nd(ps, mats), border, fill_min, clip)[0])(
        vols, pshifts
    )


# ----------------------------------------------------------------------- NumPy drivers
def _patch_gradients(template: np.ndarray, params: VolumePwParams) -> np.ndarray:
    """Gradients of every edge-padded template patch ``(P, ndim, *padded size)``."""
    t = np.asarray(template, np.float32)
    pads = params.patch.pads
    out = []
    for s in itertools.product(*params.starts):
        patch = t[tuple(slice(a, a + n) for a, n in zip(s, params.size, strict=True))]
        out.append(template_gradients(patch, pads))
    return np.stack(out)


def register_volumes_pw(
    movie, template: np.ndarray, params: VolumePwParams, *, apply: bool = True, origin=None
):
    """Piecewise-rigid registration of every volume of ``movie`` (indexable ``(T, D, H, W)``)
    to ``template``: ``(rigid (T, 3), patch shifts (T, *grid, 3), corrected (T, D, H, W)
    or None, corr (T,) or None)``; ``origin`` as in
    :func:`xnormcorre.engine.volume.register_volumes` (the same bits whatever the chunking)."""
    n = len(movie)
    tmpl = np.asarray(template, np.float32)
    rp = params.rigid
    rgrads = template_gradients(tmpl, rp.pads)
    pgrads = _patch_gradients(tmpl, params)
    fill = np.float32(rp.fill_min)
    mats = tuple(np.asarray(m, np.float32) for m in params.mats)
    grid = params.grid_shape
    rigid = np.empty((n, tmpl.ndim), np.float32)
    pshifts = np.empty((n, *grid, tmpl.ndim), np.float32)
    corrected = np.empty((n, *tmpl.shape), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None
    kw = params.kernel_kwargs()

    def kernel(_, batch):
        rs = rp.register_batch(batch, tmpl, rgrads, apply=False)
        out = register_volume_pw_batch(
            batch,
            rs,
            tmpl,
            pgrads,
            params.patch.window,
            params.patch.weight,
            mats,
            fill,
            apply=apply,
            **kw,
        )
        if not apply:
            return rs, out
        ps, moved, valid = out
        return rs, ps, moved, corr_volume_batch(moved, tmpl, valid)

    for a, b, out in run_kernels(kernel, movie, 0, n, params.batch_size, origin=origin):
        k = b - a
        rigid[a:b] = out[0][:k]
        pshifts[a:b] = out[1][:k]
        if apply:
            corrected[a:b], corr[a:b] = out[2][:k], out[3][:k]
    return rigid, pshifts, corrected, corr


def apply_volume_pw_shifts(
    movie,
    patch_shifts: np.ndarray,
    mats: tuple[np.ndarray, ...],
    *,
    border: str = "copy",
    fill_min: float = 0.0,
    batch_size: int = 1,
    clip: bool = True,
    origin=None,
) -> np.ndarray:
    """Warp each volume of ``movie`` by the dense field of its patch shifts ``(T, *grid, 3)``
    (``mats``: the interpolation matrices, :func:`xnormcorre.engine.patches.interp_matrix`),
    as the registration does."""
    n = len(movie)
    out = np.empty((n, *movie.shape[1:]), np.float32)
    ps = np.asarray(patch_shifts, np.float32)
    mats = tuple(np.asarray(m, np.float32) for m in mats)

    def kernel(_, batch, sh):
        return warp_volume_batch(batch, sh, mats, np.float32(fill_min), border=border, clip=clip)

    for a, b, (res,) in run_kernels(kernel, movie, 0, n, batch_size, ps, origin=origin):
        out[a:b] = res[: b - a]
    return out


def centre_volume_patches(template: np.ndarray, deviations: np.ndarray, params: VolumePwParams) -> np.ndarray:
    """Deform a volume template to the volumes' mean local geometry: moved by each patch's
    mean deviation from the rigid shift over ``deviations (T, *grid, 3)`` (its dense field,
    Keys cubic, edges replicated), as :func:`xnormcorre.engine.warp.centre_patches` does in 2-D."""
    dev = np.mean(np.asarray(deviations, np.float64), axis=0).astype(np.float32)
    mats = tuple(np.asarray(m, np.float32) for m in params.mats)
    out = warp_volume_batch(np.asarray(template, np.float32)[None], -dev[None], mats, np.float32(0.0))
    return np.asarray(out)[0]


def estimate_volume_pw_template(
    movie, params: VolumePwParams, *, niter_rig: int = 1, niter_els: int = 1, max_frames: int | None = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """Template of a volumetric movie for a piecewise-rigid run: the rigid volume template
    (:func:`xnormcorre.engine.volume.estimate_volume_template`, ``niter_rig`` passes), then
    ``niter_els`` times the mean of up to ``max_frames`` evenly spaced volumes registered
    piecewise-rigidly to it (each voxel over the volumes in which it stayed in view),
    deformed to their mean local geometry (:func:`centre_volume_patches`).  Deterministic.
    Returns ``(template, rigid shifts of the last pass)``."""
    tmpl, shifts = _vol.estimate_volume_template(movie, params.rigid, niter=niter_rig, max_frames=max_frames)
    n = len(movie)
    m = n if max_frames is None else min(n, max_frames)
    sample = np.unique(np.linspace(0, n - 1, m).round().astype(int))
    p = replace(params, rigid=replace(params.rigid, border="nan", clip=False))
    for _ in range(niter_els):

        def register(vols, tmpl=tmpl):
            rs, ps, out, _ = register_volumes_pw(vols, tmpl, p)
            return out, (rs, ps - rs.reshape((len(rs),) + (1,) * (ps.ndim - 2) + (-1,)))

        tmpl, parts = _vol.valid_mean_of(movie, sample, p.batch_size, register)
        shifts = np.concatenate([r for r, _ in parts])
        tmpl = centre_volume_patches(tmpl, np.concatenate([d for _, d in parts]), params)
    return tmpl, shifts
