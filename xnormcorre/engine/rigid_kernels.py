"""Rigid registration kernels (JAX, ``jit``-compiled per input shape; never imports xarray).

One frame: its spectrum, its shift (the correlation peak,
:func:`xnormcorre.engine.estimate.estimate_shift`, then the noise-weighted Gauss-Newton
steps of :func:`xnormcorre.engine.refine.gauss_newton_steps`), the frame moved by a
Fourier phase ramp (exact for band-limited rigid shifts; the spectrum is computed once for
both), then border handling so that nothing wraps around
(:mod:`xnormcorre.engine.borders`).  Batches are ``vmap``-ped.  The sign convention and
the NumPy drivers that feed these kernels are in :mod:`xnormcorre.engine.rigid`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache
from .borders import apply_border_traced, border_code, border_limits
from .correlation import rect_corr
from .defects import inpaint_at
from .estimate import estimate_shift, refine_fit
from .fourier import fourier_shift
from .refine import TRUST_STEPS, gauss_newton_steps

compile_cache.enable()  # before the first kernel compiles: later processes load it from disk

__all__ = ["register_batch", "register_mean_batch", "shift_batch", "spectra_and_shifts", "spectrum_and_shift"]


def spectra_and_shifts(
    frames: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    consts,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    whiten: bool,
    peak_fit: bool,
    refine_steps: int = 0,
    refine: jax.Array | bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The rfft2 of each frame of a batch ``(B, H, W)`` and its displacement relative to
    the template (``tmpl_spec``): ``(spectra, dy (B,), dx (B,))``.

    Only the template is apodized: its taper (wider than max_shifts) vanishes wherever
    a shifted frame would wrap around, so the frame's own border discontinuity never
    meets template content and the frame's spectrum serves both the estimate and the
    Fourier-shift application.  The correlation peak (:func:`estimate_shift`) is then
    refined by ``refine_steps`` noise-weighted Gauss-Newton steps against the template
    (:func:`xnormcorre.engine.refine.gauss_newton_steps`, on the whole batch; ``consts`` from
    :func:`xnormcorre.engine.refine.rigid_constants`), which take the estimate to the
    statistical limit whatever the correlation's whitening, smoothing or taper.  A step
    clipped to the trust radius is followed by another from there, at most
    :data:`xnormcorre.engine.refine.TRUST_STEPS` more (trust region).

    ``refine`` (a traced bool, so that one compiled program serves both) False skips the
    Gauss-Newton steps: the shift is the correlation peak on the ``1/upsample_factor``
    grid, at about half the cost of a frame (the rigid step of the piecewise-rigid
    template iterations, which only places the patches).
    """
    h, w = frames.shape[1:]

    def first(frame):
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
        return spec, dy, dx

    def steps(spec, dy, dx):
        moved = jax.vmap(lambda s, a, b: fourier_shift(s, a, b, (h, w)))(spec, dy, dx)
        ddy, ddx, clipped = gauss_newton_steps(moved, consts, border_limits(dy, dx, h, w))
        dy = jnp.clip(dy + ddy, -max_shifts[0], max_shifts[0])
        dx = jnp.clip(dx + ddx, -max_shifts[1], max_shifts[1])
        return dy, dx, clipped

    spec, dy, dx = jax.vmap(first)(frames)
    if refine_steps > 0 and peak_fit and upsample_factor > 1:
        # without the steps, the grid the Gaussian fit skipped for them
        def grid(args):
            s, a, b = args
            fit = partial(
                refine_fit,
                tmpl_spec=tmpl_spec,
                weight=weight,
                shape=(h, w),
                radius=max_shifts,
                upsample_factor=upsample_factor,
                whiten=whiten,
            )
            return jax.vmap(lambda s1, a1, b1: fit(s1, dy=a1, dx=b1))(s, a, b)

        dy, dx = jax.lax.cond(refine, lambda args: (args[1], args[2]), grid, (spec, dy, dx))

    # each refinement step, then (trust region) the frames whose step was clipped to
    # MAX_STEP step again from there, at most TRUST_STEPS times: one loop over the batch
    # (not a loop per frame under vmap), so that the step is traced and compiled once;
    # batches where no frame was clipped run one iteration
    def body(state):
        i, dy, dx, active = state
        ndy, ndx, clipped = steps(spec, dy, dx)
        return i + 1, jnp.where(active, ndy, dy), jnp.where(active, ndx, dx), active & clipped

    def more(state):
        i, _, _, active = state
        return jnp.any(active) & (i <= TRUST_STEPS)

    start = jnp.broadcast_to(jnp.asarray(refine, bool), dy.shape)  # no steps without refine
    for _ in range(refine_steps):
        _, dy, dx, _ = jax.lax.while_loop(more, body, (0, dy, dx, start))
    return spec, dy, dx


def spectrum_and_shift(frame: jax.Array, tmpl_spec: jax.Array, weight: jax.Array, consts, **kw):
    """One frame's rfft2 and its displacement relative to the template:
    :func:`spectra_and_shifts` of a batch of one frame (same keywords)."""
    spec, dy, dx = spectra_and_shifts(frame[None], tmpl_spec, weight, consts, **kw)
    return spec[0], dy[0], dx[0]


def _prepare(frame, defects, scale, inpaint_defects: bool):
    """Scaled frame and the frame used for estimation (sensor defects inpainted)."""
    raw = frame * scale
    est = inpaint_at(raw, defects) if inpaint_defects else raw
    return raw, est


def _estimate(
    frames, tmpl_spec, weight, consts, defects, scale, inpaint_defects: bool, static: tuple, refine=True
):
    """The scaled frames of a batch, their spectra (of the estimation frames) and shifts:
    ``(raw, spectra, dy, dx)`` (:func:`_prepare`, then :func:`spectra_and_shifts` with
    ``static = (max_shifts, upsample_factor, whiten, peak_fit, refine_steps)`` and the
    traced ``refine``)."""
    max_shifts, upsample_factor, whiten, peak_fit, refine_steps = static
    raw, est = jax.vmap(lambda f: _prepare(f, defects, scale, inpaint_defects))(frames)
    spec, dy, dx = spectra_and_shifts(
        est,
        tmpl_spec,
        weight,
        consts,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        whiten=whiten,
        peak_fit=peak_fit,
        refine_steps=refine_steps,
        refine=refine,
    )
    return raw, spec, dy, dx


def _output(raw, spec_est, dy, dx, fill_min, scale, border, clip, *, inpaint_defects: bool):
    """The frame moved by ``-(dy, dx)``, clipped to its own range if ``clip``, unscaled,
    border filled (``border``: a :func:`xnormcorre.engine.borders.border_code`; both
    traced, so that one program serves every border and clip setting)."""
    h, w = raw.shape
    spec = jnp.fft.rfft2(raw) if inpaint_defects else spec_est
    out = fourier_shift(spec, dy, dx, (h, w))
    out = jnp.where(clip, jnp.clip(out, jnp.min(raw), jnp.max(raw)), out)
    out = out * (1.0 / scale)
    return apply_border_traced(out, dy, dx, border, fill_min)[0]


def _finish_one(
    frame: jax.Array,
    raw: jax.Array,
    spec: jax.Array,
    dy: jax.Array,
    dx: jax.Array,
    template,
    fill_min: jax.Array,
    scale: jax.Array,
    border: jax.Array,
    clip: jax.Array,
    *,
    with_corr: bool,
    inpaint_defects: bool,
):
    """A registered frame's output: its corrected frame and its correlation with the
    template (NaN if not ``with_corr``)."""
    h, w = frame.shape
    out = _output(raw, spec, dy, dx, fill_min, scale, border, clip, inpaint_defects=inpaint_defects)
    if with_corr:
        b0, b0sq = template
        corr = rect_corr(out, b0, b0sq, frame.mean(), border_limits(dy, dx, h, w))
    else:
        corr = jnp.float32(jnp.nan)
    return out, corr


_STATIC = (
    "max_shifts",
    "upsample_factor",
    "apply",
    "whiten",
    "peak_fit",
    "with_corr",
    "refine_steps",
    "inpaint_defects",
)


def register_batch(
    frames: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    consts,
    defects,
    scale: jax.Array,
    *,
    border: str = "copy",
    clip: bool = False,
    refine: bool = True,
    **kw,
):
    """Register a batch of frames ``(B, H, W)`` to ``template`` ``(H, W)``.

    ``border`` (one of :data:`xnormcorre.engine.borders.BORDERS`) and ``clip`` reach the
    compiled program as traced values: the template step (NaN border, unclipped) and the
    final pass run one program.

    ``tmpl_spec`` is the template's apodized spectrum (:func:`template_spectrum`),
    ``consts`` are the Gauss-Newton constants of the template
    (:func:`xnormcorre.engine.refine.refine_constants`; unused if ``refine_steps == 0``),
    ``defects`` where the sensor defects are inpainted in the estimate (if
    ``inpaint_defects``; the output keeps the raw values): the
    :func:`xnormcorre.engine.defects.inpaint_plan` of their mask, ``scale`` a power of two
    that brings the frames near unit magnitude (exact: the same bits for any scale of
    the movie by a power of two, and no float32 overflow in the spectra).  ``clip``
    limits each corrected frame to its raw frame's range (no interpolation ringing
    beyond the data).

    Returns ``shifts (B, 2)`` and, if ``apply``, also the corrected frames
    ``(B, H, W)`` and their correlation with the template ``(B,)`` (NaN if not
    ``with_corr``).  ``refine`` False skips the Gauss-Newton steps (traced, as
    ``border`` and ``clip``; see :func:`spectra_and_shifts`).
    """
    modes = (border_code(border), np.bool_(clip), np.bool_(refine))
    return _register(frames, template, fill_min, tmpl_spec, weight, consts, defects, scale, *modes, **kw)


@compile_cache.kernel_jit(static_argnames=_STATIC)
def _register(
    frames: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    consts,
    defects,
    scale: jax.Array,
    border: jax.Array,
    clip: jax.Array,
    refine: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    apply: bool = True,
    whiten: bool = False,
    peak_fit: bool = False,
    with_corr: bool = True,
    refine_steps: int = 0,
    inpaint_defects: bool = False,
):
    """:func:`register_batch` with ``border`` a traced :func:`border_code`, ``clip`` and
    ``refine`` traced bools."""
    est = (max_shifts, upsample_factor, whiten, peak_fit, refine_steps)
    raw, spec, dy, dx = _estimate(
        frames, tmpl_spec, weight, consts, defects, scale, inpaint_defects, est, refine
    )
    shifts = jnp.stack([dy, dx], axis=1)
    if not apply:
        return shifts
    b0 = template - template.mean()
    fn = partial(_finish_one, with_corr=with_corr, inpaint_defects=inpaint_defects)
    out, corr = jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, None, None, None, None, None))(
        frames, raw, spec, dy, dx, (b0, b0 * b0), fill_min, scale, border, clip
    )
    return shifts, out, corr


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
    return _shift(frames, shifts, fill_min, scale, border_code(border), np.bool_(clip))


@compile_cache.kernel_jit
def _shift(frames, shifts, fill_min, scale, border, clip):
    def one(frame, s):
        raw = frame * scale
        return _output(
            raw, jnp.fft.rfft2(raw), s[0], s[1], fill_min, scale, border, clip, inpaint_defects=False
        )

    return jax.vmap(one)(frames, shifts)


@compile_cache.kernel_jit(
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
    defects,
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
    est = (max_shifts, upsample_factor, whiten, peak_fit, refine_steps)
    _, spec, dy, dx = _estimate(frames, tmpl_spec, weight, consts, defects, scale, inpaint_defects, est)

    def one(spec, dy, dx):
        out = fourier_shift(spec, dy, dx, (h, w)) * (1.0 / scale)
        lo_y, hi_y, lo_x, hi_x = border_limits(dy, dx, h, w)
        rows = jnp.arange(h)[:, None]
        cols = jnp.arange(w)[None, :]
        valid = (rows >= lo_y) & (rows <= hi_y) & (cols >= lo_x) & (cols <= hi_x)
        return jnp.where(valid, out, 0.0), valid.astype(out.dtype)

    outs, valid = jax.vmap(one)(spec, dy, dx)
    shifts = jnp.stack([dy, dx], axis=1)
    k = keep.astype(outs.dtype)
    return shifts, jnp.einsum("b,bij->ij", k, outs), jnp.einsum("b,bij->ij", k, valid)
