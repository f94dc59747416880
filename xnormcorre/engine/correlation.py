"""Pearson correlation of a corrected frame with the template (JAX; never imports xarray)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["masked_corr", "rect_corr"]


def masked_corr(a: jax.Array, b: jax.Array, mask: jax.Array) -> jax.Array:
    """Pearson correlation of ``a`` and ``b`` over ``mask`` (NaN if undefined).

    One pass: the sums are dot products (vectorized BLAS-like kernels rather than
    scalar reduction loops) of values centred on their plain means, so float32
    accumulation keeps its precision.
    """
    ok = mask & jnp.isfinite(a) & jnp.isfinite(b)
    n = jnp.maximum(ok.sum().astype(a.dtype), 1.0)
    a0 = jnp.where(ok, a - jnp.mean(jnp.where(ok, a, 0.0)), 0.0).ravel()
    b0 = jnp.where(ok, b - jnp.mean(jnp.where(ok, b, 0.0)), 0.0).ravel()
    hp = jax.lax.Precision.HIGHEST
    sa, sb = a0.sum(), b0.sum()
    cov = jnp.dot(a0, b0, precision=hp) - sa * sb / n
    va = jnp.dot(a0, a0, precision=hp) - sa * sa / n
    vb = jnp.dot(b0, b0, precision=hp) - sb * sb / n
    return cov / jnp.sqrt(va * vb)


def rect_corr(a: jax.Array, b0: jax.Array, b0sq: jax.Array, ca: jax.Array, limits) -> jax.Array:
    """Pearson correlation of ``a`` with a template over the rectangle ``limits``.

    ``b0``/``b0sq`` are the template minus its mean and its square, ``ca`` a constant
    close to ``a``'s mean (centring keeps float32 sums precise), ``limits`` the
    ``(lo_y, hi_y, lo_x, hi_x)`` of the valid rectangle (both ends included).  Every sum
    is a bilinear form ``rows · X · cols`` with 0/1 row and column masks: matrix
    products instead of scalar reduction loops.
    """
    h, w = a.shape
    lo_y, hi_y, lo_x, hi_x = limits
    iy = jnp.arange(h)
    ix = jnp.arange(w)
    ry = ((iy >= lo_y) & (iy <= hi_y)).astype(a.dtype)
    rx = ((ix >= lo_x) & (ix <= hi_x)).astype(a.dtype)
    ac = a - ca
    ac = jnp.where(jnp.isnan(ac), 0.0, ac)  # border="nan": outside the rectangle anyway
    hp = jax.lax.Precision.HIGHEST

    def rect_sum(x):
        return jnp.dot(jnp.dot(ry, x, precision=hp), rx, precision=hp)

    sa, saa, sab = rect_sum(ac), rect_sum(ac * ac), rect_sum(ac * b0)
    sb, sbb = rect_sum(b0), rect_sum(b0sq)
    n = jnp.maximum(ry.sum() * rx.sum(), 1.0)
    cov = sab - sa * sb / n
    va = saa - sa * sa / n
    vb = sbb - sb * sb / n
    return cov / jnp.sqrt(va * vb)
