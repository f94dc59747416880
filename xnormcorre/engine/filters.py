"""Spatial filters for shift estimation on 1-photon / low-contrast data (JAX, no xarray)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache

compile_cache.enable()  # before the first kernel compiles: later processes load it from disk


def highpass_kernel(sigma: tuple[float, float]) -> np.ndarray:
    """CaImAn's ``gSig_filt`` kernel: a Gaussian minus its mean over its central support.

    The kernel is ``G(σ)`` on a ``(3σ // 2) * 2 + 1`` window; inside the region where
    ``G`` exceeds its largest border value the mean is subtracted (zero-sum kernel, a
    "Gaussian-minus-local-mean" band-pass), outside it is zero.

    Examples
    --------
    >>> k = highpass_kernel((3.0, 3.0))
    >>> k.shape, abs(float(k.sum())) < 1e-6
    ((9, 9), True)
    """
    sizes = [int((3 * s) // 2 * 2 + 1) for s in sigma]
    k1 = []
    for n, s in zip(sizes, sigma, strict=True):
        x = np.arange(n) - (n - 1) / 2
        g = np.exp(-(x**2) / (2 * s**2))
        k1.append(g / g.sum())
    ker = np.outer(k1[0], k1[1])
    border_max = max(ker[:, 0].max(), ker[0, :].max())
    inside = ker >= border_max
    ker = np.where(inside, ker - ker[inside].mean(), 0.0)
    return ker.astype(np.float32)


@compile_cache.kernel_jit(static_argnames=())
def convolve_reflect(frames: jax.Array, kernel: jax.Array) -> jax.Array:
    """2-D correlation of each frame ``(B, H, W)`` with ``kernel``, reflecting borders
    (OpenCV ``BORDER_REFLECT``, i.e. NumPy ``mode="symmetric"``)."""
    ky, kx = kernel.shape
    py, px = ky // 2, kx // 2
    padded = jnp.pad(frames, ((0, 0), (py, py), (px, px)), mode="symmetric")
    out = jax.lax.conv_general_dilated(
        padded[:, None],
        kernel[None, None],
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return out[:, 0]
