"""Noise-weighted Gauss-Newton (Lucas-Kanade) refinement of a rigid shift.

The correlation peak locates a shift to a fraction of a pixel; this step brings it to
the statistical limit.  With the frame moved by ``-s0`` (``g(r) = frame(r + s0)``) and
``frame(r) = a·T(r - s) + b + noise``, a first-order expansion around ``s0`` gives the
linear model ``g ≈ a·T + b - c·∇T`` with ``c = a·δ``, ``δ = s - s0``.  Its weighted
least-squares solution, each pixel weighted by ``1/var(r)`` of a Poisson-Gaussian noise
model evaluated on the *template* (weights from the noisy frame itself would bias the
estimate), is the maximum-likelihood step: one step from a peak-fit start reaches the
Cramér-Rao bound within the accuracy of the template.  The intensity gain ``a`` and
offset ``b`` are free, so bleaching and global brightness changes do not bias ``δ``;
where an F test finds it significant, each block of about 16 px gets its own gain and
offset (a frame of a calcium movie is a different mix of its cells), and a step beyond
:data:`MAX_STEP` that the data determine is clipped and taken again from there (a trust
region).  The robust form of the step for patches is :mod:`xnormcorre.engine.refine_patch`.

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
    "MAX_STEP",
    "PAIR_INDEX",
    "ACTIVITY_F",
    "BLOCK",
    "HUBER_K_BLOCKS",
    "TRUST_STEPS",
    "TRUST_Z",
    "block_grid",
    "gauss_newton_step",
    "gauss_newton_steps",
    "gradient",
    "refine_constants",
    "rigid_constants",
    "solve_normal",
    "valid_rows_cols",
]

#: Pixels left out next to the border rectangle (ringing of the Fourier shift).
MARGIN = 2
#: Largest step (px) taken: the correlation peak is within a fraction of a pixel, and a
#: larger step means the linear model does not hold for this frame (e.g. content that
#: changed, not moved): the peak estimate is kept.
MAX_STEP = 0.5
#: Huber threshold of the robust reweighting, in units of the RMS weighted residual.
HUBER_K = 2.0

PAIRS = [(i, k) for i in range(4) for k in range(i, 4)]
PAIR_INDEX = np.zeros((4, 4), np.int32)
for _n, (_i, _k) in enumerate(PAIRS):
    PAIR_INDEX[_i, _k] = PAIR_INDEX[_k, _i] = _n
#: The pairs without the constant column (index 1), as indices into :data:`PAIRS`.
_PAIRS6 = [n for n, (i, k) in enumerate(PAIRS) if 1 not in (i, k)]
#: Where each of the 10 pair sums comes from in ``concat(sums of rhs (4), sums of the 6
#: products)``: the pair ``(i, 1)`` is the sum of ``rhs_i``.
_PAIR_SOURCE = np.asarray(
    [k if i == 1 else i if k == 1 else 4 + _PAIRS6.index(n) for n, (i, k) in enumerate(PAIRS)]
)


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
    prods = np.stack([w * jac[i] * jac[k] for i, k in PAIRS])
    prefix = np.zeros(prods.shape[:2] + (prods.shape[2] + 1,))
    np.cumsum(prods, axis=2, out=prefix[:, :, 1:])
    return (
        rhs,
        prefix.astype(np.float32),
        prods.reshape(10, -1).astype(np.float32),
        np.stack(jac).reshape(4, -1).astype(np.float32),
        np.sqrt(w).reshape(-1).astype(np.float32),
    )


def valid_rows_cols(limits, shape: tuple[int, int]):
    """``(x0, x1, rows, cols)`` of the valid rectangle ``limits`` shrunk by :data:`MARGIN`:
    its first and last column and the 0/1 masks of its rows and columns."""
    h, w = shape
    lo_y, hi_y, lo_x, hi_x = limits
    y0, y1 = lo_y + MARGIN, hi_y - MARGIN
    x0, x1 = lo_x + MARGIN, hi_x - MARGIN
    ry = (jnp.arange(h) >= y0) & (jnp.arange(h) <= y1)
    rx = (jnp.arange(w) >= x0) & (jnp.arange(w) <= x1)
    return x0, x1, ry, rx


def solve_normal(nmat: jax.Array, rhs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Jacobi-scaled solve of the 4x4 normal equations; ``(solution, ok)``."""
    d = 1.0 / jnp.sqrt(jnp.maximum(jnp.diag(nmat), 1e-30))
    sol = jnp.linalg.solve(nmat * d[:, None] * d[None, :], rhs * d) * d
    return sol, (sol[0] > 0) & jnp.all(jnp.isfinite(sol))


def _solve2(m: jax.Array, r: jax.Array) -> jax.Array:
    """Jacobi-scaled solve of a 2x2 system in closed form (a general solve lowers to a
    LAPACK call and pivoting: more to trace and compile in every kernel); a singular
    system gives non-finite values."""
    d = 1.0 / jnp.sqrt(jnp.maximum(jnp.diag(m), 1e-30))
    a = m * d[:, None] * d[None, :]
    b = r * d
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    return jnp.stack([a[1, 1] * b[0] - a[0, 1] * b[1], a[0, 0] * b[1] - a[1, 0] * b[0]]) / det * d


#: Side (px) aimed at by the blocks of :func:`gauss_newton_step`'s activity model (each
#: block has its own gain and offset).
BLOCK = 16
#: Most blocks per axis (larger frames get larger blocks: the block sums stay cheap).
MAX_BLOCKS = 8
#: Huber threshold with the activity model: it explains the activity, what is left is
#: noise and what no gain explains.
HUBER_K_BLOCKS = 1.5
#: The activity model is used where it explains this many times more of the residual per
#: extra parameter than the noise does (an F ratio): otherwise its ``2·(K - 1)`` extra
#: parameters would only cost precision, and one gain and offset are used.
ACTIVITY_F = 2.0
#: Steps clipped to :data:`MAX_STEP` and re-linearized after the first (trust region).
TRUST_STEPS = 2
#: A step beyond :data:`MAX_STEP` is followed (clipped) only where it is this many
#: standard errors from zero (elsewhere it is refused and the correlation peak kept): a
#: frame with little signal does not walk away from the peak.
TRUST_Z = 5.0


def block_grid(shape: tuple[int, int]) -> tuple[int, int]:
    """Blocks ``(n_y, n_x)`` of the activity model for a frame of ``shape``: about
    :data:`BLOCK` px, at least 2 and at most :data:`MAX_BLOCKS` per axis.

    Examples
    --------
    >>> block_grid((40, 50)), block_grid((128, 128)), block_grid((512, 512))
    ((2, 3), (8, 8), (8, 8))
    """
    return tuple(min(MAX_BLOCKS, max(2, int(round(n / BLOCK)))) for n in shape)


def rigid_constants(template: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Constant arrays of :func:`gauss_newton_step` for one template: the ``prefix`` of
    :func:`refine_constants`; the first column of each block of :func:`block_grid` and
    the frame width ``(n_x + 1,)`` (int32), and the same for rows ``(n_y + 1,)``; then
    ``rhs``, the 6 ``prods`` of the non-constant columns (:data:`_PAIRS6`; a product
    with the constant column is ``rhs`` itself), ``jac`` and ``sqrt_w`` of
    :func:`refine_constants` in block layout ``(n_y, n_x, c, by·bx)`` (zero-padded at
    the far edges).

    Examples
    --------
    >>> c = rigid_constants(np.random.default_rng(0).random((40, 50)), np.ones((40, 50)))
    >>> c[1].tolist(), c[2].tolist(), c[4].shape
    ([0, 17, 34, 50], [0, 20, 40], (2, 3, 6, 340))
    """
    h, w = np.shape(template)
    nb = block_grid((h, w))
    ex = np.minimum(np.arange(nb[1] + 1) * -(-w // nb[1]), w).astype(np.int32)
    ey = np.minimum(np.arange(nb[0] + 1) * -(-h // nb[0]), h).astype(np.int32)
    rhs, prefix, prods, jac, sqrt_w = refine_constants(template, weights)
    # the per-pixel constants in block layout, once per template (not per frame)
    # the products with the constant column (J_1 = 1) are ``rhs`` itself: only the 6
    # products of the other columns are kept (4 fewer frame-sized constants to read)
    prods6 = prods[np.asarray(_PAIRS6)]
    blocked = [
        np.asarray(_blocks(np.asarray(c).reshape(-1, h, w), nb)) for c in (rhs, prods6, jac, sqrt_w[None])
    ]
    return (prefix, ex, ey, *blocked)


def _blocks(x, nb: tuple[int, int]):
    """``x`` ``(..., H, W)`` as ``(n_y, n_x, ..., by·bx)``: the pixels of each block of a
    ``nb`` grid (zero-padded at the far edges).  NumPy or JAX arrays: the template
    constants ``(c, H, W)`` and a batch of frames ``(B, H, W)`` share the layout, so each
    block sum is a plain matrix product."""
    xp = jnp if isinstance(x, jax.Array) else np
    h, w = x.shape[-2:]
    nby, nbx = nb
    by, bx = -(-h // nby), -(-w // nbx)
    lead = x.shape[:-2]
    x = xp.pad(x, [(0, 0)] * len(lead) + [(0, nby * by - h), (0, nbx * bx - w)])
    x = x.reshape(lead + (nby, by, nbx, bx))
    x = xp.moveaxis(x, (len(lead), len(lead) + 2), (0, 1))
    return x.reshape((nby, nbx) + lead + (by * bx,))


def _block_solve(sums: jax.Array, data: jax.Array):
    """Shift step of the block model from the block sums of the 10 products ``(10, n_y, n_x)``
    and of the data products ``(4, n_y, n_x)``: ``(delta (2,), gain (n_y, n_x), offset
    (n_y, n_x), ok)``; the per-block 2x2 algebra written out elementwise."""
    s = sums[jnp.asarray(PAIR_INDEX)]  # (4, 4, n_y, n_x)
    n00, n01, n11 = s[0, 0], s[0, 1], s[1, 1]
    det = n00 * n11 - n01 * n01
    good = (det > 1e-6 * n00 * n11) & (n11 > 0)
    inv = jnp.where(good, 1.0 / jnp.where(good, det, 1.0), 0.0)
    # per block: gain and offset of the template alone, and the gradient columns with
    # the (template, 1) columns projected out (Schur complement)
    a0 = inv * (n11 * data[0] - n01 * data[1])
    b0 = inv * (-n01 * data[0] + n00 * data[1])
    c = s[0:2, 2:4]  # (2, 2, n_y, n_x): rows (T, 1), columns (gy, gx)
    # N^-1 C
    nic0 = inv * (n11 * c[0] - n01 * c[1])
    nic1 = inv * (-n01 * c[0] + n00 * c[1])
    m = s[2:4, 2:4] - (c[0][:, None] * nic0[None, :] + c[1][:, None] * nic1[None, :])
    r = data[2:4] - (c[0] * a0 + c[1] * b0)
    a0 = jnp.where(good, a0, 0.0)
    mm = jnp.sum(m * (a0 * a0), axis=(-2, -1))
    rr = jnp.sum(r * a0, axis=(-2, -1))
    delta = _solve2(mm, rr)
    gain = jnp.sum(a0 * (m[0, 0] + m[1, 1]))
    ok = (gain > 0) & jnp.all(jnp.isfinite(delta))
    # gain and offset of each block at this step
    cd = a0 * (c[:, 0] * delta[0] + c[:, 1] * delta[1])  # (2, n_y, n_x)
    a = a0 - jnp.where(good, inv * (n11 * cd[0] - n01 * cd[1]), 0.0)
    b = b0 - jnp.where(good, inv * (-n01 * cd[0] + n00 * cd[1]), 0.0)
    fitted = jnp.sum(a * data[0] + b * data[1]) + delta @ jnp.sum(a0 * data[2:4], axis=(-2, -1))
    return delta, a0, a, b, ok, mm, fitted


def _block_dot(const_b: jax.Array, x_b: jax.Array) -> jax.Array:
    """Block sums of ``const · x`` (``(n_y, n_x, c, P)`` constants, ``(n_y, n_x, B, P)``
    frames): ``(B, c, n_y, n_x)``."""
    return jnp.einsum("klcp,klbp->bckl", const_b, x_b)


def _rect_sums(prefix, ex, x0, x1, ry, nb: tuple[int, int], h: int, w: int) -> jax.Array:
    """Block sums ``(10, n_y, n_x)`` of the constant products over one frame's valid
    rectangle: row prefix sums at the block columns (one gather per row and block),
    then sums over the block rows."""
    cb = jnp.clip(ex, jnp.clip(x0, 0, w), jnp.clip(x1 + 1, 0, w))
    rows = jnp.take(prefix, cb, axis=2)
    rows = (rows[..., 1:] - rows[..., :-1]) * ry[:, None].astype(prefix.dtype)  # (10, H, n_x)
    by = -(-h // nb[0])
    rows = jnp.pad(rows, ((0, 0), (0, nb[0] * by - h), (0, 0)))
    return rows.reshape(10, nb[0], by, nb[1]).sum(axis=2)


def _solve_both(sums: jax.Array, data: jax.Array):
    """:func:`_block_solve` of the activity model and of one gain and offset."""
    glob = _block_solve(sums.sum(axis=(-2, -1), keepdims=True), data.sum(axis=(-2, -1), keepdims=True))
    return _block_solve(sums, data), glob


def gauss_newton_steps(moved: jax.Array, consts, limits) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Shift increments ``δ = (dy, dx)`` for a batch of frames ``(B, H, W)`` each already
    moved by its ``-s0``, and whether each was clipped to the trust radius
    :data:`MAX_STEP`: ``(dy (B,), dx (B,), clipped (B,))``.

    ``consts`` is the output of :func:`rigid_constants`, ``limits`` the ``(lo_y, hi_y,
    lo_x, hi_x)`` valid rectangles of the moves (each ``(B,)``).

    Activity model: each block ``k`` of :func:`block_grid` has its own gain and offset,
    ``g ≈ a_k·T + b_k - a_k·δ·∇T`` (a frame of a calcium movie is a different mix of its
    cells, not a scaled template).  Solved by variable projection: per block, the gain
    ``a_k`` of the template alone, and the (template, 1) columns projected out of the
    gradient columns and the data (a Schur complement); the 2x2 system for ``δ`` sums the
    blocks weighted by ``a_k``.  It is used where an F test finds that it explains the
    frame significantly better than one gain and offset (:data:`ACTIVITY_F`), else the
    global model is (its extra parameters would only cost precision).  One Huber
    reweighting follows.  A frame gets ``(0, 0, False)`` where the step is not
    trustworthy (singular system, negative gain, a step beyond :data:`MAX_STEP` that is
    less than :data:`TRUST_Z` standard errors from zero); a larger, significant step is
    clipped to ``MAX_STEP`` (``clipped`` True: the caller re-linearizes from there).

    The per-pixel work runs on the whole batch in block layout ``(n_y, n_x, B, P)``
    (:func:`_blocks`), each block sum a matrix product of the constants with the
    batch's frames.
    """
    prefix, ex, ey, rhs_b, prods_b, jac_b, sw_b = consts
    bsz, h, w = moved.shape
    nb = (ey.shape[0] - 1, ex.shape[0] - 1)
    x0, x1, ry, rx = jax.vmap(lambda *lim: valid_rows_cols(lim, (h, w)))(*limits)
    mask = ry[:, :, None] & rx[:, None, :]
    n = jnp.maximum(ry.sum(axis=1) * rx.sum(axis=1), 1).astype(moved.dtype)  # (B,)
    g = jnp.where(mask & jnp.isfinite(moved), moved, 0.0)
    # the offset columns absorb any constant: centring keeps float32 sums precise
    gc = jnp.where(mask, g - (jnp.sum(g, axis=(1, 2)) / n)[:, None, None], 0.0)
    sums = jax.vmap(lambda a, b, r: _rect_sums(prefix, ex, a, b, r, nb, h, w))(
        x0, x1, ry
    )  # (B, 10, n_y, n_x)
    gc_b = _blocks(gc, nb)
    mask_b = _blocks(mask.astype(moved.dtype), nb)
    sw = sw_b[:, :, :1]  # (n_y, n_x, 1, P)
    data = _block_dot(rhs_b, gc_b)  # (B, 4, n_y, n_x)
    gg = jnp.sum(jnp.square(gc_b * sw), axis=(0, 1, 3))
    blk, glob = jax.vmap(_solve_both)(sums, data)
    # F test of the activity model against one gain and offset (residual sums of squares
    # from the fitted sums; the weights make the residual's variance 1 where the noise
    # model holds, the ratio does not depend on it)
    extra = 2.0 * (nb[0] * nb[1] - 1)
    rss_b = jnp.maximum(gg - blk[6], 0.0)
    use = (blk[6] - glob[6]) * (n - 2.0 * nb[0] * nb[1] - 2.0) > ACTIVITY_F * extra * rss_b

    def pick(u, v):
        return jnp.where(use.reshape((-1,) + (1,) * (u.ndim - 1)), u, v)

    delta, a0, a, b, ok, mm = (pick(u, v) for u, v in zip(blk[:6], glob[:6], strict=True))

    def per_block(x):  # (B, n_y, n_x) or (B, 1, 1) -> (n_y, n_x, B, 1)
        return jnp.broadcast_to(x, (bsz, *nb)).transpose(1, 2, 0)[..., None]

    def per_frame(x):  # (B,) -> (1, 1, B, 1)
        return x[None, None, :, None]

    model = (
        per_block(a) * jac_b[:, :, :1]
        + per_block(b)
        + per_block(a0)
        * (per_frame(delta[:, 0]) * jac_b[:, :, 2:3] + per_frame(delta[:, 1]) * jac_b[:, :, 3:4])
    )
    resid = (gc_b - model) * sw * mask_b
    sigma = jnp.sqrt(jnp.sum(resid * resid, axis=(0, 1, 3)) / n) + 1e-30
    # squared distance of the step from zero in standard errors
    signif = jnp.einsum("bi,bij,bj->b", delta, mm, delta) / (sigma * sigma)
    # one robust reweighting (Huber): pixels the model does not explain -- a passing
    # artefact, activity within a block -- are down-weighted
    k = jnp.where(use, HUBER_K_BLOCKS, HUBER_K)
    hub = jnp.minimum(1.0, per_frame(k * sigma) / jnp.maximum(jnp.abs(resid), 1e-30)) * mask_b
    # the reweighted sums: the products with the constant column are rhs itself (the 6
    # others are the constants ``prods_b``)
    pairs = jnp.concatenate([_block_dot(rhs_b, hub), _block_dot(prods_b, hub)], axis=1)
    blk_r, glob_r = jax.vmap(_solve_both)(pairs[:, jnp.asarray(_PAIR_SOURCE)], _block_dot(rhs_b, gc_b * hub))
    delta_r = pick(blk_r[0], glob_r[0])
    ok_r = pick(blk_r[4], glob_r[4])
    delta = jnp.where(ok_r[:, None], delta_r, delta)
    ok = ok | ok_r
    big = jnp.max(jnp.abs(delta), axis=1)
    # a step beyond the trust radius is taken (clipped) only where the data determine it
    ok = ok & ((big <= MAX_STEP) | (signif > TRUST_Z * TRUST_Z))
    clipped = ok & (big > MAX_STEP)
    delta = jnp.where(clipped[:, None], delta * (MAX_STEP / jnp.maximum(big, 1e-30))[:, None], delta)
    delta = jnp.where(ok[:, None], delta, 0.0)
    return delta[:, 0], delta[:, 1], clipped


def gauss_newton_step(moved: jax.Array, consts, limits) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`gauss_newton_steps` of one frame ``(H, W)`` (``limits`` scalars):
    ``(dy, dx, clipped)``."""
    dy, dx, clipped = gauss_newton_steps(moved[None], consts, tuple(jnp.asarray(v)[None] for v in limits))
    return dy[0], dx[0], clipped[0]
