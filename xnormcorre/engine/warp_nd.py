"""The Keys cubic warp of an image or volume by a dense displacement field, in any
number of dimensions (JAX kernels; never imports xarray): the field interpolated from a
grid of patch shifts (:func:`dense_field_nd`) and the image resampled once
(:func:`warp_nd`), the n-dimensional forms of :func:`xnormcorre.engine.warp.dense_field`
and :func:`xnormcorre.engine.warp.warp`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .borders import fill_outside
from .warp import clamp, keys_weights

__all__ = ["dense_field_nd", "warp_nd"]


def warp_nd(img: jax.Array, fields: tuple[jax.Array, ...], border: str, fill_min, clip: bool = False):
    """Sample ``img`` (any number of axes) at ``r + field(r)`` with Keys cubic
    interpolation: the image moved by ``-field`` (``clip``: limited to the image's own
    range, no overshoot of the cubic kernel, by :func:`xnormcorre.engine.warp.clamp`).
    Returns the image and the mask of samples whose source lay inside it.

    The n-dimensional form of :func:`xnormcorre.engine.warp.warp` (for two axes the same
    sums in the same order): sources clamped to the image (the edge-replicated image
    supplies the taps outside it, so ``border="copy"`` is the nearest valid value), the
    ``4**ndim`` taps read with 1-D gathers from the flattened, edge-padded image.

    Examples
    --------
    >>> vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    >>> f = tuple(jnp.full(vol.shape, v, jnp.float32) for v in (1.0, 0.0, 0.0))
    >>> out, valid = warp_nd(jnp.asarray(vol), f, "nan", 0.0)
    >>> bool(np.allclose(np.asarray(out)[:3], vol[1:], atol=1e-4)), bool(np.isnan(np.asarray(out)[3]).all())
    (True, True)
    """
    shape = img.shape
    nd = len(shape)
    eps = 1e-3
    valid = jnp.ones(shape, bool)
    base = jnp.zeros(shape, jnp.int32)
    padded = tuple(n + 3 for n in shape)
    strides = [int(np.prod(padded[ax + 1 :])) for ax in range(nd)]
    wts = []
    for ax, (n, f) in enumerate(zip(shape, fields, strict=True)):
        s = jnp.arange(n, dtype=jnp.float32).reshape((-1,) + (1,) * (nd - 1 - ax)) + f
        valid = valid & (s >= -eps) & (s <= n - 1 + eps)
        s = jnp.clip(s, 0.0, n - 1.0)
        i0 = jnp.floor(s)
        wts.append(keys_weights(s - i0))
        base = base + i0.astype(jnp.int32) * strides[ax]
    # taps i0 - 1 ... i0 + 2 are samples i0 ... i0 + 3 of the image padded by 1 / 2
    flat = jnp.pad(img, [(1, 2)] * nd, mode="edge").ravel()

    def taps(ax: int, offset: int):
        if ax == nd:
            return flat.at[base + offset].get(mode="promise_in_bounds")
        acc = jnp.zeros(shape, img.dtype)
        for i in range(4):
            acc = acc + wts[ax][..., i] * taps(ax + 1, offset + i * strides[ax])
        return acc

    out = taps(0, 0)
    if clip:
        out = clamp(out, jnp.min(img), jnp.max(img))
    if border != "copy":
        out = fill_outside(out, valid, border, fill_min)
    return out, valid


def dense_field_nd(pshifts: jax.Array, mats: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    """Interpolate a grid of patch shifts ``(N_0, ..., N_k, ndim)`` to dense fields, one
    per axis, of shape ``(n_0, ..., n_k)`` (``mats[ax]``: ``(n_ax, N_ax)``, rows summing
    to one): linear between patch centres along each axis, constant beyond the outer ones.

    Examples
    --------
    >>> from xnormcorre.engine.patches import interp_matrix
    >>> mats = tuple(jnp.asarray(interp_matrix(n, np.array([1.0, n - 2.0]))) for n in (4, 6, 8))
    >>> ps = jnp.zeros((2, 2, 2, 3)).at[1, :, :, 0].set(1.0)  # z shift 1 in the far z patches
    >>> fz = np.asarray(dense_field_nd(ps, mats)[0])
    >>> fz[:, 0, 0].tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    out = []
    for a in range(pshifts.shape[-1]):
        g = pshifts[..., a]
        for ax, m in enumerate(mats):
            g = jnp.moveaxis(jnp.tensordot(m, g, axes=([1], [ax])), 0, ax)
        out.append(g)
    return tuple(out)
