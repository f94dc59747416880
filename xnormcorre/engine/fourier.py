"""Fourier building blocks (JAX; never imports xarray): frequencies, phase ramps, the
matrix DFT at chosen positions and the Fourier shift of an image.

Sign convention: moving an image by ``-(dy, dx)`` multiplies its spectrum by
``exp(2πi·ky·dy/h) ⊗ exp(2πi·kx·dx/w)`` (i.e. corrects a shift ``(dy, dx)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "dft_at",
    "dft_at_nd",
    "fourier_shift",
    "fourier_shift_nd",
    "fourier_shift_np",
    "freqs",
    "freqs_nd",
    "hermitian_weights",
    "materialize",
    "phase_ramp",
]


def freqs(h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Signed integer frequencies along y (full) and x (half-plane)."""
    ky = jnp.fft.fftfreq(h, d=1.0 / h).astype(jnp.float32)
    kx = jnp.arange(w // 2 + 1, dtype=jnp.float32)
    return ky, kx


def hermitian_weights(w: int) -> jax.Array:
    """Weights that turn a half-plane sum into the full-plane (real) sum."""
    wts = jnp.full((w // 2 + 1,), 2.0, dtype=jnp.float32)
    wts = wts.at[0].set(1.0)
    if w % 2 == 0:
        wts = wts.at[-1].set(1.0)
    return wts


def materialize(x: jax.Array) -> jax.Array:
    """``x`` itself (exactly), computed once: the product of the identity matrix with the
    rows of ``x`` ``(2, n)`` (float32, highest precision: ``1·a + 0·b == a``).

    XLA on CPU fuses elementwise producers into their consumers, so a per-row vector such
    as a phase ramp broadcast over a spectrum would have its cosines and sines evaluated
    again for every element of the spectrum (``optimization_barrier`` does not survive
    the CPU pipeline).  A dot is never fused into an elementwise consumer: the vector is
    evaluated once.
    """
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    return jnp.matmul(eye, x, precision=jax.lax.Precision.HIGHEST)


def _unit_phasor(phase: jax.Array) -> jax.Array:
    """``exp(i·phase)`` of a real vector, evaluated once (:func:`materialize`)."""
    cs = materialize(jnp.stack([jnp.cos(phase), jnp.sin(phase)]))
    return jax.lax.complex(cs[0], cs[1])


def phase_ramp(dy: jax.Array, dx: jax.Array, shape: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """Separable phase ramp ``exp(2πi·ky·dy/h)``, ``exp(2πi·kx·dx/w)`` on the rfft2 half-plane.

    Multiplying a spectrum by ``ramp_y[:, None] * ramp_x[None, :]`` moves its image by
    ``-(dy, dx)``.  The two vectors are evaluated once each (:func:`materialize`), not
    once per frequency of the spectrum they multiply.
    """
    h, w = shape
    ky, kx = freqs(h, w)
    return _unit_phasor((2 * jnp.pi / h) * (ky * dy)), _unit_phasor((2 * jnp.pi / w) * (kx * dx))


def fourier_shift(spec: jax.Array, dy: jax.Array, dx: jax.Array, shape: tuple[int, int]):
    """Move an image given by its rfft2 ``spec`` by ``-(dy, dx)`` (i.e. correct a shift).

    The phase ramp is separable: ``exp(2πi·ky·dy/h) ⊗ exp(2πi·kx·dx/w)``.
    """
    h, w = shape
    ramp_y, ramp_x = phase_ramp(dy, dx, (h, w))
    return jnp.fft.irfft2(spec * ramp_y[:, None] * ramp_x[None, :], s=(h, w))


def fourier_shift_np(image: np.ndarray, shift) -> np.ndarray:
    """Move ``image`` by ``+shift`` (content moves; periodic), in float64 NumPy.

    Examples
    --------
    >>> img = np.zeros((4, 4)); img[1, 1] = 1.0
    >>> np.argwhere(np.round(fourier_shift_np(img, (1.0, 2.0)), 9) == 1).tolist()
    [[2, 3]]
    """
    h, w = image.shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    ramp = np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
    return np.fft.irfft2(np.fft.rfft2(image.astype(np.float64)) * ramp, s=(h, w))


def dft_at(
    p: jax.Array,
    ry: jax.Array,
    rx: jax.Array,
    h: int,
    w: int,
    origin: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Real inverse DFT of a half-plane spectrum ``p`` at positions ``origin + ry`` x ``origin + rx``.

    ``p`` is ``(h, w // 2 + 1)`` (rfft2 layout of a real ``(h, w)`` image whose
    spectrum is Hermitian); ``ry``/``rx`` are 1-D offsets (px) that do not depend on the
    data, so their DFT matrices are compile-time constants; ``origin = (y0, x0)`` (traced,
    default 0) moves the grid, applied as one phase vector per axis.  Returns the
    ``(len(ry), len(rx))`` samples of ``h·w·irfft2(p)``, by two matrix products:
    ``O(len(ry)·h·w)`` instead of a full inverse FFT.
    """
    ky, kx = freqs(h, w)
    ey = jnp.exp((2j * jnp.pi / h) * (ry[:, None] * ky[None, :]))  # (ny, h), constant
    ex = jnp.exp((2j * jnp.pi / w) * (kx[:, None] * rx[None, :]))  # (wh, nx), constant
    ex = ex * hermitian_weights(w)[:, None]
    if origin is not None:
        ey = ey * jnp.exp((2j * jnp.pi / h) * (origin[0] * ky))[None, :]
        ex = ex * jnp.exp((2j * jnp.pi / w) * (origin[1] * kx))[:, None]
    ny, nx, wh = ry.shape[0], rx.shape[0], kx.shape[0]
    if ny * h * wh + ny * wh * nx <= h * wh * nx + ny * h * nx:
        return jnp.real((ey @ p) @ ex)
    return jnp.real(ey @ (p @ ex))


# --------------------------------------------------------------------------- n dimensions
def freqs_nd(shape: tuple[int, ...]) -> list[jax.Array]:
    """Signed integer frequencies along each axis of an ``rfftn`` spectrum (the last axis
    half-plane); ``freqs_nd((h, w))`` is :func:`freqs`."""
    ks = [jnp.fft.fftfreq(n, d=1.0 / n).astype(jnp.float32) for n in shape[:-1]]
    return [*ks, jnp.arange(shape[-1] // 2 + 1, dtype=jnp.float32)]


def dft_at_nd(
    p: jax.Array,
    offsets: tuple[jax.Array, ...],
    shape: tuple[int, ...],
    origin: tuple[jax.Array, ...] | None = None,
) -> jax.Array:
    """:func:`dft_at` in any number of dimensions: the real inverse DFT of the ``rfftn``
    spectrum ``p`` of a real image of ``shape`` at the grid ``origin + offsets`` (one 1-D
    offset vector per axis), by one matrix product per axis.  For two axes it is the
    same sum as :func:`dft_at`, evaluated in another order.

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(size=(4, 6, 8)).astype(np.float32)
    >>> p = jnp.fft.rfftn(jnp.asarray(img))
    >>> at = dft_at_nd(p, tuple(jnp.arange(n, dtype=jnp.float32) for n in img.shape), img.shape)
    >>> bool(np.allclose(np.asarray(at) / img.size, img, atol=1e-5))
    True
    """
    ks = freqs_nd(shape)
    nd = len(shape)
    w = shape[-1]
    ex = jnp.exp((2j * jnp.pi / w) * (ks[-1][:, None] * offsets[-1][None, :])) * hermitian_weights(w)[:, None]
    if origin is not None:
        ex = ex * jnp.exp((2j * jnp.pi / w) * (origin[-1] * ks[-1]))[:, None]
    res = p @ ex
    for ax in range(nd - 2, -1, -1):
        n = shape[ax]
        e = jnp.exp((2j * jnp.pi / n) * (offsets[ax][:, None] * ks[ax][None, :]))
        if origin is not None:
            e = e * jnp.exp((2j * jnp.pi / n) * (origin[ax] * ks[ax]))[None, :]
        res = jnp.moveaxis(jnp.tensordot(e, res, axes=([1], [ax])), 0, ax)
    return jnp.real(res)


def fourier_shift_nd(spec: jax.Array, shift: tuple[jax.Array, ...], shape: tuple[int, ...]) -> jax.Array:
    """Move an image given by its ``rfftn`` ``spec`` by ``-shift`` (any number of axes):
    the separable phase ramp of :func:`fourier_shift` with one factor per axis."""
    ks = freqs_nd(shape)
    nd = len(shape)
    out = spec
    for ax, (k, s, n) in enumerate(zip(ks, shift, shape, strict=True)):
        ramp = _unit_phasor((2 * jnp.pi / n) * (k * s))
        out = out * ramp.reshape((-1,) + (1,) * (nd - 1 - ax))
    return jnp.fft.irfftn(out, s=shape, axes=tuple(range(nd)))
