"""The steps of a volume's (or a 3-D patch's) shift estimate, in n dimensions (JAX
kernels; never imports xarray): the edge padding of short axes (:func:`pad_width`,
:func:`pad_volume`), the template's spectrum and gradients, the correlation peak and its
Gauss-Newton refinement (:func:`estimate_padded`, :func:`gauss_newton_nd`) and the
correlation of a corrected volume with the template (:func:`corr_nd`).  Used by the
rigid (:mod:`xnormcorre.engine.volume`) and piecewise-rigid
(:mod:`xnormcorre.engine.volume_pw`) volume registrations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .borders import border_limits_nd, valid_nd
from .estimate import estimate_shift_nd
from .fourier import fourier_shift_nd
from .refine import gradient

__all__ = [
    "MIN_TAPERED",
    "corr_nd",
    "estimate_padded",
    "gauss_newton_nd",
    "pad_volume",
    "pad_width",
    "template_gradients",
    "template_spectrum",
]

#: Axes shorter than this get no edge taper.
MIN_TAPERED = 16


def pad_width(n: int) -> int:
    """Edge padding (samples on each side) of an axis shorter than :data:`MIN_TAPERED`.

    The Fourier steps treat every axis as periodic: along a long axis the template's
    taper hides the wrap-around, but a short axis (a few planes) cannot be tapered.  It
    is padded instead, by repeating its end planes, with the taper over the padding only,
    so that content moving in or out at one end never meets the other end.

    Examples
    --------
    >>> pad_width(4), pad_width(10), pad_width(16)
    (4, 5, 0)
    """
    return 0 if n >= MIN_TAPERED else max(4, -(-n // 2))


def pad_volume(x, pads: tuple[int, ...]):
    """``x`` (an image or volume) edge-padded by ``pads`` samples on both sides of each axis."""
    if not any(pads):
        return x
    return jnp.pad(x, [(p, p) for p in pads], mode="edge")


def _margin(n: int) -> int:
    """Samples left out next to the valid box in the Gauss-Newton sums (ringing)."""
    return 2 if n >= 32 else (1 if n >= 8 else 0)


def template_gradients(template: np.ndarray, pads: tuple[int, ...] = ()) -> np.ndarray:
    """Gradient along each axis ``(ndim, *padded shape)`` of the template edge-padded by
    ``pads`` samples on both sides of each axis (fourth-order central differences,
    :func:`xnormcorre.engine.refine.gradient`)."""
    if any(pads):
        template = np.pad(template, [(p, p) for p in pads], mode="edge")
    return np.stack(gradient(template)).astype(np.float32)


def gauss_newton_nd(
    moved: jax.Array, template: jax.Array, grads: jax.Array, lo, hi, margin: tuple[int, ...] | None = None
) -> jax.Array:
    """One Gauss-Newton step ``δ`` (clipped to ±0.5 voxel) of a volume already moved by
    ``-s0`` towards the template: least squares of ``moved ≈ a·T + b - c·∇T`` over the
    voxels that stayed in view (less a margin per axis), ``δ = c / a``.  The gain and
    offset are free."""
    shape = moved.shape
    margin = jnp.asarray([_margin(n) for n in shape] if margin is None else margin, jnp.int32)
    valid = valid_nd(lo + margin, hi - margin, shape).astype(jnp.float32)
    cols = [template, jnp.ones_like(template), *(-g for g in grads)]
    x = jnp.stack([c.ravel() for c in cols], axis=1)  # (N, 2 + ndim)
    wx = x * valid.ravel()[:, None]
    a = wx.T @ x
    rhs = wx.T @ moved.ravel()
    k = a.shape[0]
    sol = jnp.linalg.solve(a + 1e-6 * jnp.trace(a) / k * jnp.eye(k), rhs)
    step = sol[2:] / jnp.where(jnp.abs(sol[0]) > 1e-12, sol[0], 1.0)
    ok = jnp.isfinite(step).all() & (sol[0] > 0)
    return jnp.where(ok, jnp.clip(step, -0.5, 0.5), 0.0)


def template_spectrum(template, pads: tuple[int, ...], window):
    """The edge-padded template ``(tmpl_p)`` and the ``rfftn`` of its mean-subtracted,
    tapered form (what each volume or patch is correlated with)."""
    tmpl_p = pad_volume(template, pads)
    return tmpl_p, jnp.fft.rfftn((tmpl_p - template.mean()) * window)


def estimate_padded(spec, tmpl_spec, tmpl_p, grads, weight, shape, *, kw, lo=None, hi=None, raw=None):
    """Shift ``(ndim,)`` of a volume (or patch) of ``shape`` whose edge-padded ``rfftn`` is
    ``spec`` against a template (:func:`template_spectrum`; ``grads``: its gradients on the
    padded shape): the correlation peak within ``±kw["max_shifts"]``
    (:func:`xnormcorre.engine.estimate.estimate_shift_nd`), clipped to ``[lo, hi]``
    (default ``±max_shifts``), then ``kw["refine_steps"]`` Gauss-Newton steps
    (:func:`gauss_newton_nd`) within the same bounds, on the volume whose padded
    ``rfftn`` is ``raw`` (default ``spec``; a patch is correlated mean-subtracted and
    tapered, but refined as it is)."""
    raw = spec if raw is None else raw
    pads = kw["pads"]
    shape_p = tuple(n + 2 * p for n, p in zip(shape, pads, strict=True))
    shift = estimate_shift_nd(
        spec,
        tmpl_spec,
        weight,
        shape_p,
        radius=kw["max_shifts"],
        upsample_factor=kw["upsample_factor"],
        whiten=kw["whiten"],
        peak_fit=kw["peak_fit"],
        grid=kw["refine_steps"] == 0,
    )
    lim = jnp.asarray(kw["max_shifts"], jnp.float32)
    lo = -lim if lo is None else lo
    hi = lim if hi is None else hi
    shift = jnp.clip(shift, lo, hi)
    offset = jnp.asarray(pads, jnp.int32)
    margin = tuple(0 if p else _margin(n) for n, p in zip(shape, pads, strict=True))
    for _ in range(kw["refine_steps"]):
        moved = fourier_shift_nd(raw, tuple(shift), shape_p)
        a, b = border_limits_nd(shift, shape)  # the volume's own samples that stayed in view
        shift = jnp.clip(
            shift + gauss_newton_nd(moved, tmpl_p, grads, a + offset, b + offset, margin), lo, hi
        )
    return shift


def corr_nd(out, template, valid):
    """Pearson correlation of ``out`` with ``template`` over ``valid``."""
    v = valid.astype(jnp.float32)
    n = jnp.maximum(v.sum(), 1.0)
    a = out - (out * v).sum() / n
    b = template - (template * v).sum() / n
    return (a * b * v).sum() / jnp.sqrt((a * a * v).sum() * (b * b * v).sum() + 1e-30)
