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

from . import compile_cache
from .borders import apply_border, border_limits, fill_invalid
from .correlation import rect_corr
from .defects import inpaint
from .estimate import estimate_shift
from .fourier import fourier_shift
from .noise import pixel_weights
from .refine import TRUST_STEPS, gauss_newton_step, rigid_constants
from .runner import aligned_batch_size, default_batch_size, kernel_batch, run_kernels

compile_cache.enable()  # before the first kernel compiles: later processes load it from disk

if TYPE_CHECKING:  # pragma: no cover
    from .config import RigidParams

__all__ = [
    "apply_shifts",
    "kernel_arrays",
    "mean_registered",
    "register_batch",
    "register_frames",
    "register_mean_batch",
    "shift_batch",
    "spectrum_and_shift",
    "template_spectrum",
]


def spectrum_and_shift(
    frame: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    consts,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    whiten: bool,
    peak_fit: bool,
    refine_steps: int = 0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A frame's rfft2 and its displacement relative to the template (``tmpl_spec``).

    Only the template is apodized: its taper (wider than max_shifts) vanishes wherever
    a shifted frame would wrap around, so the frame's own border discontinuity never
    meets template content and the frame's spectrum serves both the estimate and the
    Fourier-shift application.  The correlation peak (:func:`estimate_shift`) is then
    refined by ``refine_steps`` noise-weighted Gauss-Newton steps against the template
    (:func:`xnormcorre.engine.refine.gauss_newton_step`; ``consts`` from
    :func:`xnormcorre.engine.refine.refine_constants`), which take the estimate to the
    statistical limit whatever the correlation's whitening, smoothing or taper.
    """
    h, w = frame.shape
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
        grid=refine_steps == 0,
    )

    def step(dy, dx):
        moved = fourier_shift(spec, dy, dx, (h, w))
        ddy, ddx, clipped = gauss_newton_step(moved, consts, border_limits(dy, dx, h, w))
        dy = jnp.clip(dy + ddy, -max_shifts[0], max_shifts[0])
        dx = jnp.clip(dx + ddx, -max_shifts[1], max_shifts[1])
        return dy, dx, clipped

    for _ in range(refine_steps):
        dy, dx, clipped = step(dy, dx)
        if TRUST_STEPS > 0:
            # trust region: a step clipped to MAX_STEP is followed by another from there
            # (a loop: batches where no frame was clipped pay nothing)
            def body(state):
                i, dy, dx, _ = state
                return (i + 1, *step(dy, dx))

            _, dy, dx, _ = jax.lax.while_loop(
                lambda st: st[3] & (st[0] < TRUST_STEPS), body, (0, dy, dx, clipped)
            )
    return spec, dy, dx


def _prepare(frame, defects, scale, inpaint_defects: bool):
    """Scaled frame and the frame used for estimation (sensor defects inpainted)."""
    raw = frame * scale
    est = inpaint(raw, defects) if inpaint_defects else raw
    return raw, est


def _output(raw, spec_est, dy, dx, fill_min, scale, *, border: str, clip: bool, inpaint_defects: bool):
    """The frame moved by ``-(dy, dx)``, clipped to its own range, unscaled, border filled."""
    h, w = raw.shape
    spec = jnp.fft.rfft2(raw) if inpaint_defects else spec_est
    out = fourier_shift(spec, dy, dx, (h, w))
    if clip:
        out = jnp.clip(out, jnp.min(raw), jnp.max(raw))
    out = out * (1.0 / scale)
    return apply_border(out, dy, dx, border, fill_min)[0]


def _register_one(
    frame: jax.Array,
    tmpl_spec: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    weight: jax.Array,
    consts,
    defects: jax.Array,
    scale: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    border: str,
    apply: bool,
    whiten: bool,
    peak_fit: bool = False,
    with_corr: bool = True,
    refine_steps: int = 0,
    inpaint_defects: bool = False,
    clip: bool = False,
):
    h, w = frame.shape
    raw, est = _prepare(frame, defects, scale, inpaint_defects)
    spec, dy, dx = spectrum_and_shift(
        est,
        tmpl_spec,
        weight,
        consts,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        whiten=whiten,
        peak_fit=peak_fit,
        refine_steps=refine_steps,
    )
    shift = jnp.stack([dy, dx])
    if not apply:
        return shift
    out = _output(
        raw, spec, dy, dx, fill_min, scale, border=border, clip=clip, inpaint_defects=inpaint_defects
    )
    if with_corr:
        b0, b0sq = template
        corr = rect_corr(out, b0, b0sq, frame.mean(), border_limits(dy, dx, h, w))
    else:
        corr = jnp.float32(jnp.nan)
    return shift, out, corr


_STATIC = (
    "max_shifts",
    "upsample_factor",
    "border",
    "apply",
    "whiten",
    "peak_fit",
    "with_corr",
    "refine_steps",
    "inpaint_defects",
    "clip",
)


@partial(jax.jit, static_argnames=_STATIC)
def register_batch(
    frames: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    consts,
    defects: jax.Array,
    scale: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    border: str = "copy",
    apply: bool = True,
    whiten: bool = False,
    peak_fit: bool = False,
    with_corr: bool = True,
    refine_steps: int = 0,
    inpaint_defects: bool = False,
    clip: bool = False,
):
    """Register a batch of frames ``(B, H, W)`` to ``template`` ``(H, W)``.

    ``tmpl_spec`` is the template's apodized spectrum (:func:`template_spectrum`),
    ``consts`` are the Gauss-Newton constants of the template
    (:func:`xnormcorre.engine.refine.refine_constants`; unused if ``refine_steps == 0``),
    ``defects`` the ``(H, W)`` sensor-defect mask inpainted in the estimate (if
    ``inpaint_defects``; the output keeps the raw values), ``scale`` a power of two
    that brings the frames near unit magnitude (exact: the same bits for any scale of
    the movie by a power of two, and no float32 overflow in the spectra).  ``clip``
    limits each corrected frame to its raw frame's range (no interpolation ringing
    beyond the data).

    Returns ``shifts (B, 2)`` and, if ``apply``, also the corrected frames
    ``(B, H, W)`` and their correlation with the template ``(B,)`` (NaN if not
    ``with_corr``).
    """
    b0 = template - template.mean()
    fn = partial(
        _register_one,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        border=border,
        apply=apply,
        whiten=whiten,
        peak_fit=peak_fit,
        with_corr=with_corr,
        refine_steps=refine_steps,
        inpaint_defects=inpaint_defects,
        clip=clip,
    )
    return jax.vmap(fn, in_axes=(0, None, None, None, None, None, None, None))(
        frames, tmpl_spec, (b0, b0 * b0), fill_min, weight, consts, defects, scale
    )


@partial(jax.jit, static_argnames=("border", "clip"))
def shift_batch(
    frames: jax.Array,
    shifts: jax.Array,
    fill_min: jax.Array,
    scale: jax.Array = 1.0,
    *,
    border: str = "copy",
    clip: bool = False,
):
    """Move each frame ``(B, H, W)`` by ``-shifts[b]`` (apply known rigid shifts), as
    :func:`register_batch` does: the same output for the same shift, bit for bit."""

    def one(frame, s):
        raw = frame * scale
        return _output(
            raw,
            jnp.fft.rfft2(raw),
            s[0],
            s[1],
            fill_min,
            scale,
            border=border,
            clip=clip,
            inpaint_defects=False,
        )

    return jax.vmap(one)(frames, shifts)


@partial(
    jax.jit,
    static_argnames=(
        "max_shifts",
        "upsample_factor",
        "whiten",
        "peak_fit",
        "refine_steps",
        "inpaint_defects",
    ),
)
def register_mean_batch(
    frames: jax.Array,
    keep: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    consts,
    defects: jax.Array,
    scale: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    whiten: bool = False,
    peak_fit: bool = False,
    refine_steps: int = 0,
    inpaint_defects: bool = False,
):
    """Register a batch ``(B, H, W)`` to the template of spectrum ``tmpl_spec``
    (:func:`template_spectrum`) and sum the corrected frames where they are valid.

    Template estimation needs only the mean of the corrected frames: each pixel is the
    mean over the frames in which it stayed in view (no wrapped or filled content, so
    the template's edges are as good as its centre).  The sums are of the estimation
    frames (sensor defects inpainted), moved by the refined shifts, unclipped.

    Returns ``shifts (B, 2)``, the ``keep``-weighted sum of the valid corrected pixels
    ``(H, W)`` and their count ``(H, W)``.
    """
    h, w = frames.shape[1:]

    def one(frame):
        _, est = _prepare(frame, defects, scale, inpaint_defects)
        spec, dy, dx = spectrum_and_shift(
            est,
            tmpl_spec,
            weight,
            consts,
            max_shifts=max_shifts,
            upsample_factor=upsample_factor,
            whiten=whiten,
            peak_fit=peak_fit,
            refine_steps=refine_steps,
        )
        out = fourier_shift(spec, dy, dx, (h, w)) * (1.0 / scale)
        lo_y, hi_y, lo_x, hi_x = border_limits(dy, dx, h, w)
        rows = jnp.arange(h)[:, None]
        cols = jnp.arange(w)[None, :]
        valid = (rows >= lo_y) & (rows <= hi_y) & (cols >= lo_x) & (cols <= hi_x)
        return jnp.stack([dy, dx]), jnp.where(valid, out, 0.0), valid.astype(out.dtype)

    shifts, outs, valid = jax.vmap(one)(frames)
    k = keep.astype(outs.dtype)
    return shifts, jnp.einsum("b,bij->ij", k, outs), jnp.einsum("b,bij->ij", k, valid)


# ----------------------------------------------------------------------- NumPy drivers
@jax.jit
def template_spectrum(template: jax.Array, window: jax.Array, scale: jax.Array) -> jax.Array:
    """The template's spectrum for the correlation: ``rfft2`` of the mean-free template,
    scaled (see :func:`register_batch`) and apodized by ``window``; computed once per
    template (:func:`kernel_arrays`), not per batch."""
    return jnp.fft.rfft2((template - template.mean()) * scale * window)


def kernel_arrays(params: RigidParams, template: np.ndarray) -> tuple:
    """The per-template arrays of the rigid kernels: ``(tmpl_spec, weight, consts, defects,
    scale)`` (``tmpl_spec`` from :func:`template_spectrum`)."""
    h, w = template.shape
    window, weight = params.arrays((h, w))
    scale = np.float32(params.scale)
    tmpl_spec = template_spectrum(np.asarray(template, np.float32), np.asarray(window, np.float32), scale)
    if params.refine_steps > 0:
        consts = rigid_constants(template, pixel_weights(template, params.noise))
    else:
        # unused without refinement (placeholders of the same structure)
        consts = (
            np.zeros((10, 1, 2), np.float32),
            np.zeros((2,), np.int32),
            np.zeros((2,), np.int32),
            *(np.zeros((1, 1, c, 1), np.float32) for c in (4, 10, 4, 1)),
        )
    defects = params.defects if params.inpaint_defects else np.zeros((1, 1), bool)
    # on the device once: not copied again at every kernel call (the refinement constants
    # are ~15 float32 frames)
    return jax.device_put((tmpl_spec, weight, consts, defects, scale))


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
    origin: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Register frames ``movie[start:stop]`` to ``template``.

    ``with_corr=False`` skips the correlation with the template (``corr`` is then NaN).
    ``origin``: the frame number of ``movie[start]`` in the whole movie (a dask chunk's
    first frame), so that each frame is computed in the same kernel lane whatever the
    chunking (:func:`xnormcorre.engine.runner.run_kernels`): the same bits.

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
    arrays = kernel_arrays(params, tmpl)
    shifts = np.empty((n, 2), np.float32)
    corrected = np.empty((n, h, w), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None
    kw = params.kernel_kwargs()

    tmpl_d = jax.device_put(tmpl)

    def kernel(_, batch):
        return register_batch(batch, tmpl_d, fill, *arrays, apply=apply, with_corr=with_corr, **kw)

    for a, b, out in run_kernels(kernel, movie, start, stop, params.batch_size, origin=origin):
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
    clip: bool = True,
    scale: float = 1.0,
    origin: int | None = None,
) -> np.ndarray:
    """Move each frame of ``movie`` by ``-shifts[t]`` (Fourier phase ramp + border), as the
    registration does (``clip``: to each raw frame's range; ``scale``: the power of two
    of the registration)."""
    n = len(movie)
    h, w = movie.shape[1:]
    bs = batch_size or default_batch_size((h, w), n)
    shifts = np.asarray(shifts, dtype=np.float32)
    out = np.empty((n, h, w), np.float32)
    fill = np.float32(fill_min)
    sc = np.float32(scale)

    def kernel(_, batch, sh):
        return shift_batch(batch, sh, fill, sc, border=border, clip=clip)

    for a, b, (res,) in run_kernels(kernel, movie, 0, n, bs, shifts, origin=origin):
        out[a:b] = res[: b - a]
    return out


def mean_registered(
    movie, template, params: RigidParams, start, stop, keep=None
) -> tuple[np.ndarray, np.ndarray]:
    """Rigid template step: mean of frames ``start:stop`` registered to ``template``.

    Each pixel is averaged over the frames in which it stayed in view
    (:func:`register_mean_batch`); pixels that left the view in every frame take the
    nearest averaged value (:func:`xnormcorre.engine.borders.fill_invalid`), so a
    template never holds NaN or fill values.  ``keep`` (bool per frame, default all)
    leaves frames out of the mean (their shifts are still returned).

    Kernel batches start at multiples of the kernel batch from ``start`` whatever
    ``params.batch_size``, and the batch sums are added in order in float64, so the
    result is bit-identical for every batch size and chunking.
    """
    h, w = template.shape
    m = kernel_batch((h, w))
    bs = aligned_batch_size(params.batch_size, (h, w))  # read batches aligned to kernel batches
    tmpl = np.asarray(template, dtype=np.float32)
    arrays = kernel_arrays(params, tmpl)
    kw = params.kernel_kwargs()
    for k in ("border", "clip"):
        kw.pop(k)
    acc = np.zeros((h, w), np.float64)
    cnt = np.zeros((h, w), np.float64)
    n = stop - start
    shifts = np.empty((n, 2), np.float32)
    use = np.ones(n, bool) if keep is None else np.asarray(keep, bool)

    def kernel(n_valid, batch, k):
        weights = np.zeros(m, np.float32)
        weights[:n_valid] = k[:n_valid]
        return register_mean_batch(batch, weights, *arrays, **kw)

    for a, b, (s, total, count) in run_kernels(kernel, movie, start, stop, bs, use.astype(np.float32)):
        shifts[a:b] = s[: b - a]
        acc += total  # in frame order: the same bits however the calls were scheduled
        cnt += count
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, acc / np.maximum(cnt, 1.0), np.nan)
    return fill_invalid(mean).astype(np.float32), shifts
