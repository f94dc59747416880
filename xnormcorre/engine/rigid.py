"""Rigid registration (JAX kernels and their NumPy drivers; never imports xarray).

Sign convention
---------------
A *shift* ``s = (s_y, s_x)`` is the displacement of a frame's content relative to the
template: ``frame(r) ≈ template(r - s)``.  The corrected frame is the frame moved by
``-s``: ``corrected(r) = frame(r + s)``.  (NoRMCorre and CaImAn report the applied
correction, i.e. ``-s``.)

Per frame: the frame's spectrum, its shift (:func:`xnormcorre.engine.estimate.estimate_shift`),
the frame moved by a Fourier phase ramp (exact for band-limited rigid shifts; the
spectrum is computed once for both), then border handling so that nothing wraps
around (:mod:`xnormcorre.engine.borders`).

The kernels take float32 arrays and are ``jit``-compiled per input shape; the drivers
(:func:`register_frames`, :func:`apply_shifts`, :func:`mean_spectrum`) read a movie
batch by batch (:mod:`xnormcorre.engine.runner`) and return NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from .borders import apply_border, border_limits, fill_edges
from .correlation import rect_corr
from .estimate import estimate_shift
from .fourier import fourier_shift, phase_ramp
from .runner import aligned_batch_size, default_batch_size, kernel_batch, run_kernels

if TYPE_CHECKING:  # pragma: no cover
    from .config import RigidParams

__all__ = [
    "apply_shifts",
    "mean_spectrum",
    "register_batch",
    "register_frames",
    "register_sum_batch",
    "shift_batch",
    "spectrum_and_shift",
]


def spectrum_and_shift(
    frame: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    whiten: bool,
    peak_fit: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A frame's rfft2 and its displacement relative to the template (``tmpl_spec``).

    Only the template is apodized: its taper (wider than max_shifts) vanishes wherever
    a shifted frame would wrap around, so the frame's own border discontinuity never
    meets template content and the raw frame's spectrum serves both the estimate and
    the Fourier-shift application (one forward FFT per frame).  The frame's mean only
    adds a constant to the correlation surface.
    """
    spec = jnp.fft.rfft2(frame)
    dy, dx = estimate_shift(
        spec,
        tmpl_spec,
        weight,
        frame.shape,
        radius=max_shifts,
        upsample_factor=upsample_factor,
        whiten=whiten,
        peak_fit=peak_fit,
    )
    return spec, dy, dx


def _register_one(
    frame: jax.Array,
    tmpl_spec: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    window: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    border: str,
    apply: bool,
    whiten: bool,
    peak_fit: bool = False,
    with_corr: bool = True,
):
    h, w = frame.shape
    mean = frame.mean()
    spec, dy, dx = spectrum_and_shift(
        frame,
        tmpl_spec,
        weight,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        whiten=whiten,
        peak_fit=peak_fit,
    )
    shift = jnp.stack([dy, dx])
    if not apply:
        return shift
    out = fourier_shift(spec, dy, dx, (h, w))
    out, _ = apply_border(out, dy, dx, border, fill_min)
    if with_corr:
        b0, b0sq = template
        corr = rect_corr(out, b0, b0sq, mean, border_limits(dy, dx, h, w))
    else:
        corr = jnp.float32(jnp.nan)
    return shift, out, corr


@partial(
    jax.jit,
    static_argnames=("max_shifts", "upsample_factor", "border", "apply", "whiten", "peak_fit", "with_corr"),
)
def register_batch(
    frames: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    window: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    border: str = "copy",
    apply: bool = True,
    whiten: bool = False,
    peak_fit: bool = False,
    with_corr: bool = True,
):
    """Register a batch of frames ``(B, H, W)`` to ``template`` ``(H, W)``.

    Returns ``shifts (B, 2)`` and, if ``apply``, also the corrected frames
    ``(B, H, W)`` and their correlation with the template ``(B,)`` (NaN if not
    ``with_corr``: template estimation needs only the corrected frames).
    """
    tmpl_mean = template.mean()
    tmpl_spec = jnp.fft.rfft2((template - tmpl_mean) * window)
    b0 = template - tmpl_mean
    fn = partial(
        _register_one,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        border=border,
        apply=apply,
        whiten=whiten,
        peak_fit=peak_fit,
        with_corr=with_corr,
    )
    return jax.vmap(fn, in_axes=(0, None, None, None, None, None))(
        frames, tmpl_spec, (b0, b0 * b0), fill_min, window, weight
    )


@partial(jax.jit, static_argnames=("border",))
def shift_batch(frames: jax.Array, shifts: jax.Array, fill_min: jax.Array, *, border: str = "copy"):
    """Move each frame ``(B, H, W)`` by ``-shifts[b]`` (apply known rigid shifts)."""
    h, w = frames.shape[1:]

    def one(frame, s):
        spec = jnp.fft.rfft2(frame)
        out = fourier_shift(spec, s[0], s[1], (h, w))
        out, _ = apply_border(out, s[0], s[1], border, fill_min)
        return out

    return jax.vmap(one)(frames, shifts)


@partial(jax.jit, static_argnames=("max_shifts", "upsample_factor", "whiten", "peak_fit"))
def register_sum_batch(
    frames: jax.Array,
    keep: jax.Array,
    template: jax.Array,
    window: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    whiten: bool = False,
    peak_fit: bool = False,
):
    """Register a batch ``(B, H, W)`` and sum the spectra of the corrected frames.

    Template estimation needs only the mean of the corrected frames, and the mean of
    their spectra is its spectrum: each frame's spectrum is multiplied by its phase
    ramp and the ``keep``-weighted ``(B,)`` sum is returned, with no inverse FFT, border
    handling or transfer of corrected frames.  The corrected frames are moved
    periodically here (their content wraps around): the caller repairs the affected
    edge strip of the mean (see :func:`xnormcorre.engine.borders.fill_edges`).

    Returns ``shifts (B, 2)`` and the summed half-plane spectrum ``(H, W // 2 + 1)``.
    """
    h, w = frames.shape[1:]
    tmpl_mean = template.mean()
    tmpl_spec = jnp.fft.rfft2((template - tmpl_mean) * window)

    def one(frame):
        spec, dy, dx = spectrum_and_shift(
            frame,
            tmpl_spec,
            weight,
            max_shifts=max_shifts,
            upsample_factor=upsample_factor,
            whiten=whiten,
            peak_fit=peak_fit,
        )
        ramp_y, ramp_x = phase_ramp(dy, dx, (h, w))
        return jnp.stack([dy, dx]), spec, ramp_y, ramp_x

    shifts, specs, ramp_y, ramp_x = jax.vmap(one)(frames)
    ramp_y = ramp_y * keep.astype(ramp_y.dtype)[:, None]
    # sum_b keep_b·ramp_y[b, i]·spec[b, i, j]·ramp_x[b, j] as one contraction: XLA CPU
    # does it several times faster than a product of the full planes and a sum over b
    return shifts, jnp.einsum("bi,bij,bj->ij", ramp_y, specs, ramp_x)


# ----------------------------------------------------------------------- NumPy drivers
def register_frames(
    movie,
    template: np.ndarray,
    params: RigidParams,
    *,
    start: int = 0,
    stop: int | None = None,
    apply: bool = True,
    on_batch: Callable[[int], None] | None = None,
    with_corr: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Register frames ``movie[start:stop]`` to ``template``.

    ``with_corr=False`` skips the correlation with the template (``corr`` is then NaN):
    template estimation only needs the corrected frames.

    Returns
    -------
    shifts : ndarray, (T, 2) float32
        Displacement ``(y, x)`` of each frame's content relative to the template.
    corrected : ndarray, (T, H, W) float32 or None
        Frames moved by ``-shift`` (None if ``apply=False``).
    corr : ndarray, (T,) float32 or None
        Pearson correlation of each corrected frame with the template over the
        pixels that stayed inside the field of view.
    """
    stop = len(movie) if stop is None else stop
    n = stop - start
    h, w = template.shape
    tmpl = np.asarray(template, dtype=np.float32)
    fill = np.float32(params.fill_min)
    bs = params.batch_size
    window, weight = params.arrays((h, w))
    shifts = np.empty((n, 2), np.float32)
    corrected = np.empty((n, h, w), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None
    kw = params.kernel_kwargs()

    def kernel(_, batch):
        return register_batch(batch, tmpl, fill, window, weight, apply=apply, with_corr=with_corr, **kw)

    for a, b, out in run_kernels(kernel, movie, start, stop, bs):
        k = b - a
        shifts[a:b] = out[0][:k]
        if apply:
            corrected[a:b] = out[1][:k]
            corr[a:b] = out[2][:k]
        if on_batch is not None:
            on_batch(k)
    return shifts, corrected, corr


def apply_shifts(
    movie,
    shifts: np.ndarray,
    *,
    border: str = "copy",
    fill_min: float = 0.0,
    batch_size: int | None = None,
) -> np.ndarray:
    """Move each frame of ``movie`` by ``-shifts[t]`` (Fourier phase ramp + border)."""
    n = len(movie)
    h, w = movie.shape[1:]
    bs = batch_size or default_batch_size((h, w), n)
    shifts = np.asarray(shifts, dtype=np.float32)
    out = np.empty((n, h, w), np.float32)
    fill = np.float32(fill_min)

    def kernel(_, batch, sh):
        return shift_batch(batch, sh, fill, border=border)

    for a, b, (res,) in run_kernels(kernel, movie, 0, n, bs, shifts):
        out[a:b] = res[: b - a]
    return out


def mean_spectrum(movie, template, params: RigidParams, start, stop) -> tuple[np.ndarray, np.ndarray]:
    """Rigid template step: mean of frames ``start:stop`` registered to ``template``.

    Computed from the spectra (:func:`register_sum_batch`):
    one forward FFT per frame and one inverse FFT in all.  The frames are moved
    periodically, so the strip that wrapped around in some frame (at most the largest
    shift on each side) is then replaced by the nearest row/column that no frame
    wrapped into (:func:`fill_edges`, as ``border="copy"``), whatever the ``border``
    of the pass: a template never holds NaN or fill values.

    Kernel batches start at multiples of the kernel batch from ``start`` whatever
    ``params.batch_size``, and the batch sums are added in order in complex128, so the
    result is bit-identical for every batch size and chunking.
    """
    h, w = template.shape
    m = kernel_batch((h, w))
    bs = aligned_batch_size(params.batch_size, (h, w))  # read batches aligned to kernel batches
    tmpl = np.asarray(template, dtype=np.float32)
    window, weight = params.arrays((h, w))
    kw = params.kernel_kwargs()
    kw.pop("border")
    acc = np.zeros((h, w // 2 + 1), np.complex128)
    shifts = np.empty((stop - start, 2), np.float32)

    def kernel(n_valid, batch):
        keep = np.zeros(m, np.float32)
        keep[:n_valid] = 1.0
        return register_sum_batch(batch, keep, tmpl, window, weight, **kw)

    for a, b, (s, spec) in run_kernels(kernel, movie, start, stop, bs):
        shifts[a:b] = s[: b - a]
        acc += spec  # in frame order: the same bits however the calls were scheduled
    mean = np.fft.irfft2(acc / (stop - start), s=(h, w))
    lo = np.minimum(shifts.min(axis=0), 0.0)
    hi = np.maximum(shifts.max(axis=0), 0.0)
    return fill_edges(mean, lo, hi).astype(np.float32), shifts
