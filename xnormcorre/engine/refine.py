"""Noise-weighted Gauss-Newton (Lucas-Kanade) refinement of a rigid shift.

The correlation peak locates a shift to a fraction of a pixel; this step brings it to
the statistical limit.  With the frame moved by ``-s0`` (``g(r) = frame(r + s0)``) and
``frame(r) = a·T(r - s) + b + noise``, a first-order expansion around ``s0`` gives the
linear model ``g ≈ a·T + b - c·∇T`` with ``c = a·δ``, ``δ = s - s0``.  Its weighted
least-squares solution, each pixel weighted by ``1/var(r)`` of a Poisson-Gaussian noise
model evaluated on the *template* (weights from the noisy frame itself would bias the
estimate), is the maximum-likelihood step: one step from a peak-fit start reaches the
Cramér-Rao bound within the accuracy of the template.  The intensity gain ``a`` and
offset ``b`` are free, so bleaching and global brightness changes do not bias ``δ``.

Only pixels that stayed in view after the move (the border rectangle, less a 2-pixel
margin against the ringing of the Fourier shift at the wrapped edge) enter the sums.
The normal matrix is assembled from row prefix sums of constant images (one gather per
row), the right-hand side is one matrix-vector product: the step costs far less than
the inverse FFT that produces ``g``.  JAX; never imports xarray.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "HUBER_K",
    "MARGIN",
    "ROBUST_BISECT",
    "ROBUST_ITERS",
    "TUKEY_C",
    "gauss_newton_step",
    "gradient",
    "quarter_products",
    "refine_constants",
    "robust_step",
]

#: Pixels left out next to the border rectangle (ringing of the Fourier shift).
MARGIN = 2
#: Largest step (px) taken: the correlation peak is within a fraction of a pixel, and a
#: larger step means the linear model does not hold for this frame (e.g. content that
#: changed, not moved): the peak estimate is kept.
MAX_STEP = 0.5
#: Huber threshold of the robust reweighting, in units of the RMS weighted residual.
HUBER_K = 2.0
#: Threshold of :func:`robust_step`'s Tukey-biweight reweighting, in units of the
#: residual's robust standard deviation (1.4826 × median absolute residual): 95 %
#: efficiency under Gaussian noise.
TUKEY_C = 4.685

_TRIU = [(i, k) for i in range(4) for k in range(i, 4)]
_IDX = np.zeros((4, 4), np.int32)
for _n, (_i, _k) in enumerate(_TRIU):
    _IDX[_i, _k] = _IDX[_k, _i] = _n


def gradient(img: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fourth-order central differences of ``img`` along each axis (float64): y and x of
    a frame, z, y and x of a volume.

    The two outer rows/columns take the nearest interior value; axes shorter than 5
    pixels use second-order differences.

    Examples
    --------
    >>> gy, gx = gradient(np.add.outer(np.arange(8.0) ** 2, 3 * np.arange(6.0)))
    >>> float(gy[4, 2]), float(gx[4, 2])
    (8.0, 3.0)
    """
    t = np.asarray(img, np.float64)
    out = []
    for axis in range(t.ndim):
        if t.shape[axis] < 5:
            out.append(np.gradient(t, axis=axis))
            continue
        a = np.moveaxis(t, axis, 0)
        d = np.empty_like(a)
        d[2:-2] = (-a[4:] + 8 * a[3:-1] - 8 * a[1:-3] + a[:-4]) / 12.0
        d[:2], d[-2:] = d[2], d[-3]
        out.append(np.moveaxis(d, 0, axis))
    return tuple(out)


def refine_constants(template: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Constant arrays of the Gauss-Newton step for one template.

    Returns ``rhs`` ``(4, H·W)``: ``w·J_k`` with ``J = [T0, 1, -∂yT, -∂xT] / s``
    (``T0 = T - mean(T)``, ``s`` its standard deviation, for float32 range);
    ``prefix`` ``(10, H, W + 1)``: row prefix sums of the 10 products ``w·J_i·J_j``
    (``i <= j``, computed in float64, stored as float32); ``prods`` ``(10, H·W)``: the
    products themselves; ``jac`` ``(4, H·W)``: ``J``; ``sqrt_w`` ``(H·W)``.
    """
    t = np.asarray(template, np.float64)
    w = np.asarray(weights, np.float64)
    gy, gx = gradient(t)
    t0 = t - t.mean()
    s = t0.std() or 1.0
    jac = [t0 / s, np.ones_like(t), -gy / s, -gx / s]
    rhs = np.stack([w * j for j in jac]).reshape(4, -1).astype(np.float32)
    prods = np.stack([w * jac[i] * jac[k] for i, k in _TRIU])
    prefix = np.zeros(prods.shape[:2] + (prods.shape[2] + 1,))
    np.cumsum(prods, axis=2, out=prefix[:, :, 1:])
    return (
        rhs,
        prefix.astype(np.float32),
        prods.reshape(10, -1).astype(np.float32),
        np.stack(jac).reshape(4, -1).astype(np.float32),
        np.sqrt(w).reshape(-1).astype(np.float32),
    )


def _valid_rows_cols(limits, shape: tuple[int, int]):
    """``(x0, x1, rows, cols)`` of the valid rectangle ``limits`` shrunk by :data:`MARGIN`:
    its first and last column and the 0/1 masks of its rows and columns."""
    h, w = shape
    lo_y, hi_y, lo_x, hi_x = limits
    y0, y1 = lo_y + MARGIN, hi_y - MARGIN
    x0, x1 = lo_x + MARGIN, hi_x - MARGIN
    ry = (jnp.arange(h) >= y0) & (jnp.arange(h) <= y1)
    rx = (jnp.arange(w) >= x0) & (jnp.arange(w) <= x1)
    return x0, x1, ry, rx


def _solve(nmat: jax.Array, rhs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Jacobi-scaled solve of the 4x4 normal equations; ``(solution, ok)``."""
    d = 1.0 / jnp.sqrt(jnp.maximum(jnp.diag(nmat), 1e-30))
    sol = jnp.linalg.solve(nmat * d[:, None] * d[None, :], rhs * d) * d
    return sol, (sol[0] > 0) & jnp.all(jnp.isfinite(sol))


def gauss_newton_step(moved: jax.Array, consts, limits) -> tuple[jax.Array, jax.Array]:
    """Shift increment ``δ = (dy, dx)`` for a frame already moved by ``-s0``.

    ``moved`` is ``(H, W)``, ``consts`` the output of :func:`refine_constants`,
    ``limits`` the ``(lo_y, hi_y, lo_x, hi_x)`` valid rectangle of the move.  Returns
    ``(0, 0)`` where the step is not trustworthy (singular system, negative gain,
    ``|δ| > MAX_STEP``: then the linearization does not hold and ``s0`` is kept).
    One Huber reweighting follows the least-squares solve (patches, where one cell is a
    large part of the content, use the Tukey-robust :func:`robust_step`).
    """
    rhs_c, prefix, prods, jac, sqrt_w = consts
    h, w = moved.shape
    x0, x1, ry, rx = _valid_rows_cols(limits, (h, w))
    mask = (ry[:, None] & rx[None, :]).ravel()
    maskf = mask.astype(moved.dtype)
    n = jnp.maximum(ry.sum() * rx.sum(), 1).astype(moved.dtype)
    g = jnp.where(mask & jnp.isfinite(moved.ravel()), moved.ravel(), 0.0)
    # the offset column absorbs any constant: centring keeps float32 sums precise
    gc = jnp.where(mask, g - jnp.sum(g) / n, 0.0)
    x1c = jnp.clip(x1 + 1, 0, w)
    x0c = jnp.clip(x0, 0, w)
    rows = jax.lax.dynamic_index_in_dim(prefix, x1c, axis=2, keepdims=False) - jax.lax.dynamic_index_in_dim(
        prefix, x0c, axis=2, keepdims=False
    )  # (10, H): each row's sum over the valid columns
    sums = rows @ ry.astype(moved.dtype)
    sol, ok = _solve(sums[jnp.asarray(_IDX)], rhs_c @ gc)
    # one robust reweighting (Huber): pixels the model does not explain -- a neuron
    # that lit up, a passing artefact -- are down-weighted, so that local intensity
    # changes do not pull the shift
    resid = (gc - sol @ jac) * sqrt_w * maskf
    sigma = jnp.sqrt(jnp.sum(resid * resid) / n) + 1e-30
    hub = jnp.minimum(1.0, HUBER_K * sigma / jnp.maximum(jnp.abs(resid), 1e-30)) * maskf
    sol_r, ok_r = _solve((prods @ hub)[jnp.asarray(_IDX)], rhs_c @ (gc * hub))
    sol = jnp.where(ok_r, sol_r, sol)
    ok = ok | ok_r
    a, cy, cx = sol[0], sol[2], sol[3]
    a = jnp.where(ok, a, 1.0)
    dy, dx = cy / a, cx / a
    ok = ok & (jnp.abs(dy) <= MAX_STEP) & (jnp.abs(dx) <= MAX_STEP)
    return jnp.where(ok, dy, 0.0), jnp.where(ok, dx, 0.0)


#: Tukey-biweight iterations of :func:`robust_step` after its least-squares start.
ROBUST_ITERS = 2
#: Bisection steps of :func:`robust_step`'s median absolute residual (bracket ``[0, 1.5·rms]``:
#: resolution 0.6 % of the rms).
ROBUST_BISECT = 8


def quarter_products(prods: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The ``prods`` of :func:`refine_constants` (``(..., 10, H·W)``) on every other row
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
    ``-s0``: the Gauss-Newton step of :func:`gauss_newton_step`, made cheap, with a
    Tukey-biweight M-estimate.

    ``consts`` is ``(rhs, prefix, jac, sqrt_w, prods_q)``: those of
    :func:`refine_constants` and its products on a quarter of the pixels
    (:func:`quarter_products`); ``limits`` as in :func:`gauss_newton_step`.  The
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
    x0, x1, ry, rx = _valid_rows_cols(limits, (h, w))
    mask = ry[:, None] & rx[None, :]
    maskf = mask.astype(moved.dtype)
    finite = jnp.isfinite(moved)
    g = jnp.where(mask & finite, moved, 0.0)
    rows = jax.lax.dynamic_index_in_dim(
        prefix, jnp.clip(x1 + 1, 0, w), axis=2, keepdims=False
    ) - jax.lax.dynamic_index_in_dim(prefix, jnp.clip(x0, 0, w), axis=2, keepdims=False)
    nmat = (rows @ ry.astype(moved.dtype))[jnp.asarray(_IDX)]  # (4, 4) over the valid rectangle
    rhs = rhs_c.reshape(4, h, w)
    jy, jx, jt = jac[2].reshape(h, w), jac[3].reshape(h, w), jac[0].reshape(h, w)
    sw = sqrt_w.reshape(h, w)
    n = jnp.maximum(ry.sum() * rx.sum(), 1).astype(moved.dtype)
    mq = mask[::2, ::2]
    nq = jnp.maximum(jnp.sum(mq), 1).astype(moved.dtype)
    sol, ok = _solve(nmat, jnp.einsum("khw,hw->k", rhs, g))
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
            jnp.asarray(_IDX)
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
