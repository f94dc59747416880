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

The kernels (:mod:`xnormcorre.engine.rigid_kernels`, re-exported here) take float32
arrays and are ``jit``-compiled per input shape; the drivers (:func:`register_frames`,
:func:`apply_shifts`, :func:`mean_registered`) read a movie batch by batch
(:mod:`xnormcorre.engine.runner`) and return NumPy arrays.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache
from .borders import fill_invalid
from .defects import inpaint_plan
from .noise import pixel_weights
from .refine import rigid_constants
from .rigid_kernels import register_batch, register_mean_batch, shift_batch, spectrum_and_shift
from .runner import aligned_batch_size, default_batch_size, kernel_batch, run_kernels

compile_cache.enable()  # before the first kernel compiles: later processes load it from disk

if TYPE_CHECKING:  # pragma: no cover
    from .config import RigidParams

__all__ = [
    "apply_shifts",
    "iter_registered",
    "kernel_arrays",
    "mean_registered",
    "register_batch",
    "register_frames",
    "register_mean_batch",
    "shift_batch",
    "spectrum_and_shift",
    "template_spectrum",
]


@compile_cache.kernel_jit
def template_spectrum(template: jax.Array, window: jax.Array, scale: jax.Array) -> jax.Array:
    """The template's spectrum for the correlation: ``rfft2`` of the mean-free template,
    scaled (see :func:`register_batch`) and apodized by ``window``; computed once per
    template (:func:`kernel_arrays`), not per batch."""
    return jnp.fft.rfft2((template - template.mean()) * scale * window)


#: The per-template arrays of the latest templates (:func:`kernel_arrays`), most recent
#: last: a pass reads its movie in many batches with one template.
_ARRAYS: OrderedDict = OrderedDict()
_ARRAYS_KEEP = 2
_ARRAYS_LOCK = threading.Lock()


def _digest(*arrays: np.ndarray) -> bytes:
    """A digest of the arrays' dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.digest()


def kernel_arrays(params: RigidParams, template: np.ndarray) -> tuple:
    """The per-template arrays of the rigid kernels: ``(tmpl_spec, weight, consts, defects,
    scale)`` (``tmpl_spec`` from :func:`template_spectrum`; ``defects`` the
    :func:`xnormcorre.engine.defects.inpaint_plan` of the sensor-defect mask).

    They are computed once per template and parameters: the arrays of the last
    :data:`_ARRAYS_KEEP` (template, parameters) are kept and looked up by content (a
    pass calls this for each batch it reads; the Gauss-Newton constants cost more than a
    frame's registration).
    """
    h, w = template.shape
    window, weight = params.arrays((h, w))
    mask = params.defects if params.inpaint_defects else np.zeros((1, 1), bool)
    key = (
        _digest(np.asarray(template, np.float32), window, weight, mask),
        float(params.scale),
        int(params.refine_steps),
        tuple(params.noise),
    )
    with _ARRAYS_LOCK:
        if key in _ARRAYS:
            _ARRAYS.move_to_end(key)
            return _ARRAYS[key]
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
            *(np.zeros((1, 1, c, 1), np.float32) for c in (4, 6, 4, 1)),
        )
    # on the device once: not copied again at every kernel call (the refinement constants
    # are ~15 float32 frames)
    out = jax.device_put((tmpl_spec, weight, consts, inpaint_plan(mask), scale))
    with _ARRAYS_LOCK:
        _ARRAYS[key] = out
        while len(_ARRAYS) > _ARRAYS_KEEP:
            _ARRAYS.popitem(last=False)
    return out


def iter_registered(
    movie,
    template: np.ndarray,
    params: RigidParams,
    *,
    start: int = 0,
    stop: int | None = None,
    apply: bool = True,
    with_corr: bool = True,
    origin: int | None = None,
) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Register frames ``movie[start:stop]`` to ``template``, one kernel batch at a time.

    Yields ``(a, b, outputs)`` in frame order (``a:b`` relative to ``start``):
    ``outputs`` are the kernel's ``(shifts, corrected, corr)`` (``(shifts,)`` if not
    ``apply``), each cut to frames ``a:b`` when ``origin`` is given (padding lanes
    otherwise; see :func:`xnormcorre.engine.runner.run_kernels`).  One pass over the
    whole range keeps every kernel thread busy; a caller that reduces the frames (a
    template step) holds one batch at a time instead of the whole corrected block.
    """
    stop = len(movie) if stop is None else stop
    tmpl = np.asarray(template, dtype=np.float32)
    fill = np.float32(params.fill_min)
    arrays = kernel_arrays(params, tmpl)
    kw = params.kernel_kwargs()
    tmpl_d = jax.device_put(tmpl)

    def kernel(_, batch):
        return register_batch(batch, tmpl_d, fill, *arrays, apply=apply, with_corr=with_corr, **kw)

    return run_kernels(kernel, movie, start, stop, params.batch_size, origin=origin)


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
    shifts = np.empty((n, 2), np.float32)
    corrected = np.empty((n, h, w), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None
    batches = iter_registered(
        movie, template, params, start=start, stop=stop, apply=apply, with_corr=with_corr, origin=origin
    )
    for a, b, out in batches:
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
