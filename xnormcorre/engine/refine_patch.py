"""The cheap, robust Gauss-Newton step of a patch (JAX; never imports xarray).

A patch is registered as a frame is (:mod:`xnormcorre.engine.refine`: a noise-weighted
Gauss-Newton step of the patch moved by its correlation-peak shift, against the template
patch), but one cell lighting up is a large part of a patch: the step is a Tukey-biweight
M-estimate, made cheap by assembling its weighted normal matrix on a quarter of the pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .refine import MAX_STEP, PAIR_INDEX, solve_normal, valid_rows_cols

__all__ = ["ROBUST_BISECT", "ROBUST_ITERS", "TUKEY_C", "quarter_products", "robust_step"]

#: Threshold of :func:`robust_step`'s Tukey-biweight reweighting, in units of the
#: residual's robust standard deviation (1.4826 × median absolute residual): 95 %
#: efficiency under Gaussian noise.
TUKEY_C = 4.685
#: Tukey-biweight iterations of :func:`robust_step` after its least-squares start.
ROBUST_ITERS = 2
#: Bisection steps of :func:`robust_step`'s median absolute residual (bracket ``[0, 1.5·rms]``:
#: resolution 0.6 % of the rms).
ROBUST_BISECT = 8


def quarter_products(prods: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The ``prods`` of :func:`xnormcorre.engine.refine.refine_constants` (``(..., 10, H·W)``) on every other row
    and column (``(..., 10, ⌈H/2⌉·⌈W/2⌉)``): the weighted normal matrix of
    :func:`robust_step` is assembled on a quarter of the pixels.

    Examples
    --------
    >>> quarter_products(np.arange(32.0).reshape(2, 16), (4, 4)).tolist()
    [[0.0, 2.0, 8.0, 10.0], [16.0, 18.0, 24.0, 26.0]]
    """
    p = np.asarray(prods)
    q = p.reshape(p.shape[:-1] + tuple(shape))[..., ::2, ::2]
    return np.ascontiguousarray(q.reshape(p.shape[:-1] + (-1,)))


def robust_step(moved: jax.Array, consts, limits, iters: int = ROBUST_ITERS) -> tuple[jax.Array, jax.Array]:
    """Shift increment ``δ = (dy, dx)`` for a small window (a patch) already moved by
    ``-s0``: the Gauss-Newton step of :func:`xnormcorre.engine.refine.gauss_newton_step`,
    made cheap, with a Tukey-biweight M-estimate.

    ``consts`` is ``(rhs, prefix, jac, sqrt_w, prods_q)``: those of
    :func:`xnormcorre.engine.refine.refine_constants` and its products on a quarter of the
    pixels (:func:`quarter_products`); ``limits`` as in
    :func:`xnormcorre.engine.refine.gauss_newton_step`.  The
    weighted least-squares solution over the valid rectangle (normal matrix from the
    row prefix sums) starts ``iters`` iteratively reweighted steps with the Tukey
    biweight, threshold :data:`TUKEY_C` times the robust standard deviation of the
    start's residual (1.4826 × its median absolute value, by :data:`ROBUST_BISECT`
    bisection steps on every other row and column).  Each step takes the weighted
    right-hand side on every pixel and the weighted normal matrix on a quarter of them
    (scaled to the valid pixel count): ``θ += N_w⁻¹ Jᵀ W^½ ψ(r)``, the reweighted
    least-squares step with an approximate matrix, whose fixed point is the same
    M-estimate.  Pixels far outside the residual's spread -- a cell that lit up, a large
    part of a small window -- get no weight.  Returns ``(0, 0)`` where the step is not
    trustworthy (singular system, negative gain, non-finite pixels in the window,
    ``|δ| > MAX_STEP``).

    Examples
    --------
    >>> from xnormcorre.engine.fourier import fourier_shift_np
    >>> from xnormcorre.engine.refine import refine_constants
    >>> yy, xx = np.mgrid[:24, :24]
    >>> t = np.exp(-((yy - 11.0) ** 2 + (xx - 12.0) ** 2) / 18.0) + np.exp(-((yy - 6.0) ** 2 + (xx - 16.0) ** 2) / 8.0)
    >>> rhs, prefix, prods, jac, sqrt_w = refine_constants(t, np.ones_like(t))
    >>> consts = (rhs, prefix, jac, sqrt_w, quarter_products(prods, t.shape))
    >>> frame = jnp.asarray(fourier_shift_np(t, (0.2, -0.3)), jnp.float32)  # content moved by (0.2, -0.3)
    >>> dy, dx = robust_step(frame, consts, (0, 23, 0, 23))
    >>> round(float(dy), 2), round(float(dx), 2)
    (0.2, -0.3)
    """
    rhs_c, prefix, jac, sqrt_w, prods_q = consts
    h, w = moved.shape
    x0, x1, ry, rx = valid_rows_cols(limits, (h, w))
    mask = ry[:, None] & rx[None, :]
    maskf = mask.astype(moved.dtype)
    finite = jnp.isfinite(moved)
    g = jnp.where(mask & finite, moved, 0.0)
    rows = jax.lax.dynamic_index_in_dim(
        prefix, jnp.clip(x1 + 1, 0, w), axis=2, keepdims=False
    ) - jax.lax.dynamic_index_in_dim(prefix, jnp.clip(x0, 0, w), axis=2, keepdims=False)
    nmat = (rows @ ry.astype(moved.dtype))[jnp.asarray(PAIR_INDEX)]  # (4, 4) over the valid rectangle
    rhs = rhs_c.reshape(4, h, w)
    jy, jx, jt = jac[2].reshape(h, w), jac[3].reshape(h, w), jac[0].reshape(h, w)
    sw = sqrt_w.reshape(h, w)
    n = jnp.maximum(ry.sum() * rx.sum(), 1).astype(moved.dtype)
    mq = mask[::2, ::2]
    nq = jnp.maximum(jnp.sum(mq), 1).astype(moved.dtype)
    sol, ok = solve_normal(nmat, jnp.einsum("khw,hw->k", rhs, g))
    scale = jnp.ones((), moved.dtype)
    for it in range(iters):
        r = (g - (sol[0] * jt + sol[1] + sol[2] * jy + sol[3] * jx)) * sw * maskf
        if it == 0:
            # robust scale of the least-squares residual: median of |r| by bisection on a
            # quarter of the pixels, bracket [0, 1.5 rms] (the median is below sqrt(2) rms)
            a = jnp.abs(r[::2, ::2])
            lo = jnp.zeros((), r.dtype)
            hi = 1.5 * jnp.sqrt(jnp.sum(r * r) / n)
            for _ in range(ROBUST_BISECT):
                mid = 0.5 * (lo + hi)
                below = 2 * jnp.sum(mq & (a <= mid)) >= nq
                lo, hi = jnp.where(below, lo, mid), jnp.where(below, mid, hi)
            scale = TUKEY_C * 1.4826 * 0.5 * (lo + hi) + 1e-30
        u2 = (r / scale) ** 2
        wt = jnp.where((u2 < 1.0) & mask, (1.0 - u2) ** 2, 0.0)
        nw = (jnp.einsum("khw,hw->k", prods_q.reshape((10,) + mq.shape), wt[::2, ::2]) * (n / nq))[
            jnp.asarray(PAIR_INDEX)
        ]
        d = 1.0 / jnp.sqrt(jnp.maximum(jnp.diag(nw), 1e-30))
        step = (
            jnp.linalg.solve(nw * d[:, None] * d[None, :], jnp.einsum("khw,hw->k", rhs, wt * r / sw) * d) * d
        )
        sol = jnp.where(jnp.all(jnp.isfinite(step)), sol + step, sol)
    ok = ok & (sol[0] > 0) & jnp.all(jnp.isfinite(sol)) & jnp.all(finite | ~mask)
    a = jnp.where(ok, sol[0], 1.0)
    dy, dx = sol[2] / a, sol[3] / a
    ok = ok & (jnp.abs(dy) <= MAX_STEP) & (jnp.abs(dx) <= MAX_STEP)
    return jnp.where(ok, dy, 0.0), jnp.where(ok, dx, 0.0)
