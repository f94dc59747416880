"""NumPy boundary of the engine: batching, padding, template estimation.

Everything here takes array-likes indexable along the first (time) axis -- NumPy
arrays, NumPy memmaps, dask arrays or lazy backend arrays -- reads them one batch
at a time, and returns NumPy arrays.  Batches are padded to a fixed size so that each
JAX kernel compiles once per frame shape.  Never imports xarray.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import rigid as _rigid

#: Target number of float32 pixels per batch (about 16 MiB per batch of frames).
_PIXELS_PER_BATCH = 2**22


def default_batch_size(shape: tuple[int, int], n_frames: int | None = None) -> int:
    """Frames per padded batch: a power of two, about 4 Mpixel per batch.

    Parameters
    ----------
    shape : (int, int)
        Frame shape ``(H, W)``.
    n_frames : int, optional
        Number of frames in the movie; the batch is not made larger than the next
        power of two above it.

    Examples
    --------
    >>> default_batch_size((512, 512))
    16
    >>> default_batch_size((128, 128), n_frames=20)
    32
    """
    h, w = shape
    b = max(1, _PIXELS_PER_BATCH // (h * w))
    b = 1 << (b.bit_length() - 1)  # round down to a power of two
    b = min(b, 256)
    if n_frames is not None:
        b = min(b, 1 << max(0, int(n_frames - 1).bit_length()))
    return max(b, 1)


def edge_taper(n: int, width: float) -> np.ndarray:
    """Sigmoid apodization that falls to ~0 over ``width`` pixels at both ends."""
    x = np.arange(n, dtype=np.float64)
    d = np.minimum(x, n - 1 - x)
    return (1.0 / (1.0 + np.exp(-(d - width) / (width / 4.0)))).astype(np.float32)


def auto_taper(n: int, max_shift: int) -> float:
    """Default taper width: ``2·max_shift + 2`` px, at least 4 px, at most ``n / 6``."""
    return float(max(4.0, min(2.0 * max_shift + 2.0, n / 6.0)))


#: Target number of pixels per compiled kernel call (a power-of-two number of frames).
_PIXELS_PER_KERNEL = 2**20


def kernel_batch(shape: tuple[int, int]) -> int:
    """Frames per compiled kernel call: a power of two, about 1 Mpixel, at most 64.

    It depends on the frame shape only -- never on ``batch_size``, the movie length or
    the chunking -- so every frame goes through the same compiled computation and the
    results are bit-identical however the movie is batched or chunked (XLA's batched
    FFTs and matrix products may round differently for different batch sizes).

    Examples
    --------
    >>> kernel_batch((128, 128)), kernel_batch((512, 512)), kernel_batch((2048, 2048))
    (64, 4, 1)
    """
    h, w = shape
    b = max(1, _PIXELS_PER_KERNEL // (h * w))
    return min(1 << (b.bit_length() - 1), 64)


def _kernel_calls(block: np.ndarray, *others: np.ndarray) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Split a read batch into padded kernel batches: ``(start, stop, [padded arrays])``."""
    m = kernel_batch(block.shape[1:3])
    for a, b in iter_batches(block.shape[0], m):
        yield a, b, [_pad(x[a:b], m) for x in (block, *others)]


def kernel_threads() -> int:
    """Kernel calls run at once: ``XNORMCORRE_KERNEL_THREADS`` if set, otherwise the
    number of usable CPU cores, at most 4.

    XLA's CPU runtime leaves cores idle between the many small operations of one
    kernel call; two calls in flight keep them busy (on 2 cores ~1.3x the throughput
    of one call at a time).  Every call is the same compiled computation on its own
    frames, so the results are bit-identical whatever the number of threads.

    Examples
    --------
    >>> kernel_threads() >= 1
    True
    """
    env = os.environ.get("XNORMCORRE_KERNEL_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"XNORMCORRE_KERNEL_THREADS must be an integer >= 1, got {env!r}") from None
        if n < 1:
            raise ValueError(f"XNORMCORRE_KERNEL_THREADS must be an integer >= 1, got {env!r}")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


_POOL: dict[
    tuple[int, int], ThreadPoolExecutor
] = {}  # by (process id, threads): a forked child makes its own
_POOL_LOCK = threading.Lock()


def _pool(n_threads: int) -> ThreadPoolExecutor:
    key = (os.getpid(), n_threads)
    with _POOL_LOCK:
        if key not in _POOL:
            _POOL[key] = ThreadPoolExecutor(n_threads, thread_name_prefix="xnormcorre-kernel")
        return _POOL[key]


def _ordered_map(fn: Callable, items: Iterable) -> Iterator:
    """``map(fn, items)`` with up to :func:`kernel_threads` calls in flight, in order.

    ``items`` is consumed lazily in the calling thread (so reading the next frames
    overlaps the kernels), at most two items per thread ahead of the results.
    """
    n = kernel_threads()
    if n == 1:
        yield from map(fn, items)
        return
    pool = _pool(n)
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= 2 * n:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _run_kernels(
    kernel: Callable[..., object],
    movie,
    start: int,
    stop: int,
    batch_size: int,
    *others: np.ndarray,
) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Run ``kernel(n_valid, *padded arrays)`` over frames ``movie[start:stop]``.

    Frames are read ``batch_size`` at a time and cut into padded kernel batches
    (:func:`_kernel_calls`; ``others`` are per-frame arrays indexed like the frames,
    relative to ``start``); the calls run on the kernel thread pool
    (:func:`_ordered_map`).  Yields ``(a, b, outputs)`` in frame order, ``a:b``
    relative to ``start``, the outputs as NumPy arrays (padding included).
    """

    def calls():
        for a0, b0 in iter_batches(stop - start, batch_size):
            block = _read(movie, start + a0, start + b0)
            for c0, d0, arrays in _kernel_calls(block, *(o[a0:b0] for o in others)):
                yield a0 + c0, a0 + d0, arrays

    def run(call):
        a, b, arrays = call
        out = kernel(b - a, *arrays)
        out = out if isinstance(out, tuple | list) else (out,)
        return a, b, [np.asarray(o) for o in out]

    return _ordered_map(run, calls())


def _read(movie, start: int, stop: int) -> np.ndarray:
    return np.asarray(movie[start:stop], dtype=np.float32)


def _pad(batch: np.ndarray, size: int) -> np.ndarray:
    n = batch.shape[0]
    if n == size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - n, axis=0)], axis=0)


def iter_batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(n)`` in steps of ``batch_size``."""
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


@dataclass(frozen=True)
class RigidParams:
    """Static parameters of a rigid registration pass."""

    max_shifts: tuple[int, int]
    upsample_factor: int
    border: str
    batch_size: int
    fill_min: float = 0.0
    window: object = None
    weight: object = None
    whiten: bool = False
    peak_fit: bool = False

    def kernel_kwargs(self) -> dict:
        return {
            "max_shifts": tuple(int(m) for m in self.max_shifts),
            "upsample_factor": int(self.upsample_factor),
            "border": self.border,
            "whiten": self.whiten,
            "peak_fit": self.peak_fit,
        }


#: Smallest ``smooth_sigma`` (px) for which the phase-correlation peak is a Gaussian
#: sampled finely enough (its spectrum is at most 6 % at Nyquist) to be located by a
#: Gaussian fit of its integer samples; below it the upsampled DFT refines the peak.
PEAK_FIT_MIN_SIGMA = 0.75


def make_rigid_params(
    shape: tuple[int, int],
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int = 10,
    border: str = "copy",
    batch_size: int | None = None,
    n_frames: int | None = None,
    fill_min: float = 0.0,
    phase_corr: bool = True,
    smooth_sigma: float = 1.15,
    taper: float | None = None,
) -> RigidParams:
    """Build the static parameters (apodization window, spectral weight) of a pass.

    The estimate correlates each raw frame with the mean-subtracted template multiplied
    by an edge taper (so that the frame border does not pull the peak towards zero
    shift), optionally whitened (phase correlation) and smoothed by a Gaussian of
    ``smooth_sigma`` px.  The shift is then applied to the raw frame (same spectrum).
    """
    h, w = shape
    ty = auto_taper(h, max_shifts[0]) if taper is None else float(taper)
    tx = auto_taper(w, max_shifts[1]) if taper is None else float(taper)
    window = None
    if ty > 0 and tx > 0:
        window = edge_taper(h, ty)[:, None] * edge_taper(w, tx)[None, :]
    weight = None
    if smooth_sigma and smooth_sigma > 0:
        ky = np.fft.fftfreq(h)[:, None]
        kx = np.fft.rfftfreq(w)[None, :]
        weight = np.exp(-2 * np.pi**2 * smooth_sigma**2 * (ky**2 + kx**2)).astype(np.float32)
    return RigidParams(
        max_shifts=(int(max_shifts[0]), int(max_shifts[1])),
        upsample_factor=int(upsample_factor),
        border=border,
        batch_size=batch_size or default_batch_size(shape, n_frames),
        fill_min=float(fill_min),
        window=window,
        weight=weight,
        whiten=bool(phase_corr),
        peak_fit=bool(phase_corr) and smooth_sigma is not None and smooth_sigma >= PEAK_FIT_MIN_SIGMA,
    )


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
    window, weight = _rigid_arrays(params, (h, w))
    shifts = np.empty((n, 2), np.float32)
    corrected = np.empty((n, h, w), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None
    kw = params.kernel_kwargs()

    def kernel(_, batch):
        return _rigid.register_batch(
            batch, tmpl, fill, window, weight, apply=apply, with_corr=with_corr, **kw
        )

    for a, b, out in _run_kernels(kernel, movie, start, stop, bs):
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
        return _rigid.shift_batch(batch, sh, fill, border=border)

    for a, b, (res,) in _run_kernels(kernel, movie, 0, n, bs, shifts):
        out[a:b] = res[: b - a]
    return out


def _mean_registered(movie, template, params, start, stop):
    """Mean of frames ``start:stop`` registered to ``template``, their (rigid) shifts
    and, piecewise rigid, their patch deviations from the rigid shift.

    ``params`` is a :class:`RigidParams` or :class:`PwParams`; frames are read and
    registered one batch at a time.  Rigid: the mean is taken in the Fourier domain
    (:func:`_mean_spectrum`).  Piecewise rigid: the corrected frames are summed one by
    one in float64, in frame order (NaN-aware), so the result does not depend on the
    batching.

    Returns ``(mean, shifts, deviations)``: ``deviations`` is None (rigid) or
    ``(T, Ny, Nx, 2)``, each patch shift minus the frame's rigid shift.
    """
    if not isinstance(params, PwParams):
        return (*_mean_spectrum(movie, template, params, start, stop), None)
    acc = np.zeros(template.shape, np.float64)
    cnt = None  # per-pixel count, only once a frame had non-finite pixels
    n_all = 0  # frames summed while every pixel was finite
    shifts, devs = [], []
    for a, b in iter_batches(stop - start, params.batch_size):
        out = register_pw_frames(movie, template, params, start=start + a, stop=start + b, with_corr=False)
        c = out[-2]
        shifts.append(out[0])
        devs.append(out[1] - out[0][:, None, None, :])
        if cnt is None and np.isfinite(c).all():
            for frame in c:  # frame by frame: the sum's rounding does not depend on the batching
                acc += frame
            n_all += len(c)
            continue
        if cnt is None:
            cnt = np.full(template.shape, float(n_all))
        for frame in c:
            ok = np.isfinite(frame)
            acc += np.where(ok, frame, 0.0)
            cnt += ok
    if cnt is None:
        cnt = float(n_all)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (acc / cnt).astype(np.float32), np.concatenate(shifts), np.concatenate(devs)


def _mean_spectrum(movie, template, params: RigidParams, start, stop) -> tuple[np.ndarray, np.ndarray]:
    """Rigid template step: mean of frames ``start:stop`` registered to ``template``.

    Computed from the spectra (:func:`xnormcorre.engine.rigid.register_sum_batch`):
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
    bs = -(-params.batch_size // m) * m  # read batches aligned to kernel batches
    tmpl = np.asarray(template, dtype=np.float32)
    window, weight = _rigid_arrays(params, (h, w))
    kw = params.kernel_kwargs()
    kw.pop("border")
    acc = np.zeros((h, w // 2 + 1), np.complex128)
    shifts = np.empty((stop - start, 2), np.float32)

    def kernel(n_valid, batch):
        keep = np.zeros(m, np.float32)
        keep[:n_valid] = 1.0
        return _rigid.register_sum_batch(batch, keep, tmpl, window, weight, **kw)

    for a, b, (s, spec) in _run_kernels(kernel, movie, start, stop, bs):
        shifts[a:b] = s[: b - a]
        acc += spec  # in frame order: the same bits however the calls were scheduled
    mean = np.fft.irfft2(acc / (stop - start), s=(h, w))
    lo = np.minimum(shifts.min(axis=0), 0.0)
    hi = np.maximum(shifts.max(axis=0), 0.0)
    return fill_edges(mean, lo, hi).astype(np.float32), shifts


def fill_edges(img: np.ndarray, lo, hi) -> np.ndarray:
    """Replace the edge strips that frames moved by shifts in ``[lo, hi]`` wrapped into.

    ``lo``/``hi`` are the ``(y, x)`` extremes of the shifts (``lo <= 0 <= hi``); a frame
    moved by ``-shift`` wraps ``ceil(hi)`` rows/columns into the far side and
    ``ceil(-lo)`` into the near side.  They are replaced by the nearest untouched row,
    then column (edge replication, as ``border="copy"``).

    Examples
    --------
    >>> fill_edges(np.arange(16.0).reshape(4, 4), (-1.0, 0.0), (0.0, 0.5))[:, -1].tolist()
    [6.0, 6.0, 10.0, 14.0]
    """
    out = np.array(img, copy=True)
    h, w = out.shape
    lo_y = min(int(np.ceil(-lo[0])), h - 1)
    hi_y = max(h - 1 - int(np.ceil(hi[0])), lo_y)
    lo_x = min(int(np.ceil(-lo[1])), w - 1)
    hi_x = max(w - 1 - int(np.ceil(hi[1])), lo_x)
    out[:lo_y] = out[lo_y]
    out[hi_y + 1 :] = out[hi_y]
    out[:, :lo_x] = out[:, lo_x : lo_x + 1]
    out[:, hi_x + 1 :] = out[:, hi_x : hi_x + 1]
    return out


def _centre(template: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Move ``template`` to the centre of the range of positions of the frames registered
    to it (midpoint of their 5th and 95th shift percentiles: a few outlier frames do
    not move it).

    The ``±max_shifts`` search window is then centred on the motion rather than on
    wherever the initial frames happened to be, so fewer frames are clipped at the
    search bound (e.g. a movie that jumps between a few positions).  The move is a
    Fourier shift (float64), with the strip that wrapped around edge-replicated.
    """
    lo, hi = np.percentile(shifts, [5, 95], axis=0)
    med = (lo + hi) / 2
    h, w = template.shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    # content moves by +med: the frames' shifts relative to the result are shifts - med
    ramp = np.exp(-2j * np.pi * (ky * med[0] + kx * med[1]))
    moved = np.fft.irfft2(np.fft.rfft2(template.astype(np.float64)) * ramp, s=(h, w))
    return fill_edges(moved, np.minimum(-med, 0.0), np.maximum(-med, 0.0)).astype(np.float32)


def _nanmedian(stack: np.ndarray) -> np.ndarray:
    """Per-pixel (NaN-)median over the first axis.

    Computed on a pixel-major copy, so that each median comes from one contiguous row.
    Without NaN the rows are sorted (NumPy's vectorized sort is several times faster
    than the partition behind :func:`numpy.median`) and the middle value, or the mean of
    the two middle values in the input's precision, is taken: the same bits as
    :func:`numpy.median`.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(6, 3, 4)).astype(np.float32)
    >>> np.array_equal(_nanmedian(x), np.median(x, axis=0))
    True
    """
    n = stack.shape[0]
    if n == 1:
        return stack[0]
    flat = np.ascontiguousarray(stack.reshape(n, -1).T)
    if np.isnan(flat).any():
        return np.nanmedian(flat, axis=1).astype(np.float32).reshape(stack.shape[1:])
    flat.sort(axis=1)  # in place: flat is our own copy
    # even n, as numpy.median: the mean of the two middle values, in their dtype
    med = flat[:, n // 2] if n % 2 else (flat[:, n // 2 - 1] + flat[:, n // 2]) / flat.dtype.type(2)
    return med.astype(np.float32).reshape(stack.shape[1:])


def initial_template(movie, params: RigidParams, n_init: int = 100) -> np.ndarray:
    """Median of up to ``n_init`` evenly spaced frames, refined once.

    The evenly spaced frames are registered to their median and averaged (the
    NoRMCorre ``init_batch`` step), which gives a sharper starting point than the
    median of unregistered frames; the result is centred on the range of their positions.
    """
    n = len(movie)
    idx = np.unique(np.linspace(0, n - 1, min(n, n_init)).round().astype(np.int64))
    sample = np.stack([np.asarray(movie[int(i)], dtype=np.float32) for i in idx])
    tmpl = _nanmedian(sample)
    mean, shifts, _ = _mean_registered(sample, tmpl, params, 0, len(sample))
    return _centre(mean, shifts)


def split_bounds(n_frames: int, frames_per_split: int) -> list[tuple[int, int]]:
    """Consecutive, non-overlapping splits of ``frames_per_split`` frames.

    The last split holds the remainder (no frame is registered twice).

    Examples
    --------
    >>> split_bounds(10, 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    return [(a, min(n_frames, a + frames_per_split)) for a in range(0, n_frames, frames_per_split)]


def estimate_template(
    movie,
    params: RigidParams | PwParams,
    *,
    frames_per_split: int = 1000,
    num_splits_to_process: int | None = None,
    niter: int = 1,
    seed: int = 0,
    init: np.ndarray | None = None,
    on_split: Callable[[], None] | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Estimate a template as in NoRMCorre/CaImAn's batch path.

    Start from :func:`initial_template` (or ``init``); then ``niter`` times: register
    the frames of each split (all splits, or ``num_splits_to_process`` of them drawn
    without replacement by ``numpy.random.default_rng(seed)``) to the current
    template and take the median of the split means.  After each step the template is
    moved (Fourier shift) to the centre of the range of positions of the frames registered to it, so
    that the ``±max_shifts`` window is centred on the motion.

    ``max_frames`` bounds the work when ``num_splits_to_process`` is None: at most
    ``max(1, max_frames // frames_per_split)`` splits are drawn per iteration, so a
    long movie is not registered in full for every template iteration.
    """
    n = len(movie)
    if init is None:
        rigid = params.rigid if isinstance(params, PwParams) else params
        tmpl = initial_template(movie, rigid)
    else:
        tmpl = np.asarray(init, np.float32)
    splits = split_bounds(n, frames_per_split)
    if num_splits_to_process is None and max_frames is not None:
        num_splits_to_process = max(1, max_frames // frames_per_split)
    rng = np.random.default_rng(seed)
    for _ in range(niter):
        chosen = splits
        if num_splits_to_process is not None and num_splits_to_process < len(splits):
            pick = np.sort(rng.choice(len(splits), size=num_splits_to_process, replace=False))
            chosen = [splits[i] for i in pick]
        means, shifts, devs = [], [], []
        for a, b in chosen:
            m, s, d = _mean_registered(movie, tmpl, params, a, b)
            means.append(m)
            shifts.append(s)
            devs.append(d)
            if on_split is not None:
                on_split()
        tmpl = _centre(_nanmedian(np.stack(means)), np.concatenate(shifts))
        if isinstance(params, PwParams):
            tmpl = _centre_patches(tmpl, np.concatenate(devs), params)
    return tmpl


def _centre_patches(template: np.ndarray, deviations: np.ndarray, params: PwParams) -> np.ndarray:
    """Deform a piecewise-rigid template to the frames' mean local geometry.

    The mean of frames registered to a template keeps that template's local geometry,
    which for the first piecewise-rigid template is the rigid template's: wherever the
    frames' content most often was, a blur-weighted position that is not the frames'
    mean deformation where the deformation's distribution over time is skewed.  Each
    patch's mean deviation from the rigid shift over the frames of the pass (a
    ``(Ny, Nx, 2)`` grid) is the template's offset from that mean; the template is
    moved by it (the dense field of :func:`xnormcorre.engine.pwrigid.dense_field`,
    Keys-cubic, edges replicated), so that the next pass's patch shifts deviate from
    the rigid shifts by zero on average in every patch -- the piecewise analogue of
    :func:`_centre`.
    """
    from . import pwrigid as _pw

    dev = np.mean(np.asarray(deviations, np.float64), axis=0).astype(np.float32)  # (Ny, Nx, 2)
    # content moved by +dev: warp with the displacement -dev
    out = _pw.warp_batch(
        np.asarray(template, np.float32)[None],
        -dev[None],
        np.float32(0.0),
        params.wy,
        params.wx,
        border="copy",
    )
    return np.asarray(out)[0]


# ----------------------------------------------------------------------- piecewise rigid
@dataclass(frozen=True)
class PwParams:
    """Static parameters of a piecewise-rigid pass (wraps the rigid ones)."""

    rigid: RigidParams
    max_dev: tuple[int, int]
    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]
    size: tuple[int, int]
    batch_size: int
    pwindow: object
    pweight: object
    wy: object
    wx: object

    def kernel_kwargs(self) -> dict:
        kw = self.rigid.kernel_kwargs()
        kw.pop("max_shifts")
        return {
            "max_shifts": self.rigid.max_shifts,
            "max_dev": self.max_dev,
            "starts_y": self.starts_y,
            "starts_x": self.starts_x,
            "size": self.size,
            **kw,
        }


def make_pw_params(
    shape: tuple[int, int],
    *,
    strides: tuple[int, int],
    overlaps: tuple[int, int],
    max_deviation_rigid: tuple[int, int],
    batch_size: int | None = None,
    n_frames: int | None = None,
    **rigid_kw,
) -> PwParams:
    """Build the static parameters of a piecewise-rigid pass (patch grid, windows)."""
    from . import pwrigid as _pw

    h, w = shape
    size = (strides[0] + overlaps[0], strides[1] + overlaps[1])
    sy = tuple(_pw.patch_starts(h, strides[0], overlaps[0]))
    sx = tuple(_pw.patch_starts(w, strides[1], overlaps[1]))
    bs = batch_size or max(1, default_batch_size(shape, n_frames) // 2)
    rigid = make_rigid_params(shape, batch_size=bs, n_frames=n_frames, **rigid_kw)
    md = (int(max_deviation_rigid[0]), int(max_deviation_rigid[1]))
    taper = rigid_kw.get("taper")
    # patches are cut at the rigidly displaced position: the residual displacement is
    # at most max_dev + 0.5 px, which sets the patch taper
    reach = (md[0] + 1, md[1] + 1)
    patch_rigid = make_rigid_params(
        size,
        max_shifts=reach,
        batch_size=bs,
        phase_corr=rigid.whiten,
        smooth_sigma=rigid_kw.get("smooth_sigma", 1.15),
        taper=taper,
    )
    ones_w = np.ones(size, np.float32)
    ones_k = np.ones((size[0], size[1] // 2 + 1), np.float32)
    return PwParams(
        rigid=rigid,
        max_dev=md,
        starts_y=sy,
        starts_x=sx,
        size=size,
        batch_size=bs,
        pwindow=ones_w if patch_rigid.window is None else patch_rigid.window,
        pweight=ones_k if patch_rigid.weight is None else patch_rigid.weight,
        wy=_pw.interp_matrix(h, _pw.patch_centres(list(sy), size[0])),
        wx=_pw.interp_matrix(w, _pw.patch_centres(list(sx), size[1])),
    )


def _rigid_arrays(params: RigidParams, shape: tuple[int, int]):
    h, w = shape
    window = np.ones((h, w), np.float32) if params.window is None else params.window
    weight = np.ones((h, w // 2 + 1), np.float32) if params.weight is None else params.weight
    return window, weight


def register_pw_frames(
    movie,
    template: np.ndarray,
    params: PwParams,
    *,
    start: int = 0,
    stop: int | None = None,
    apply: bool = True,
    on_batch: Callable[[int], None] | None = None,
    with_corr: bool = True,
):
    """Piecewise-rigid registration of ``movie[start:stop]`` to ``template``.

    ``with_corr=False`` skips the correlation with the template (``corr`` is then NaN).

    Returns
    -------
    rigid_shifts : (T, 2) float32
    patch_shifts : (T, Ny, Nx, 2) float32
    corrected : (T, H, W) float32 or None
    corr : (T,) float32 or None
    """
    from . import pwrigid as _pw

    stop = len(movie) if stop is None else stop
    n = stop - start
    h, w = template.shape
    tmpl = np.asarray(template, dtype=np.float32)
    fill = np.float32(params.rigid.fill_min)
    window, weight = _rigid_arrays(params.rigid, (h, w))
    bs = params.batch_size
    ny, nx = len(params.starts_y), len(params.starts_x)
    rigid = np.empty((n, 2), np.float32)
    pshifts = np.empty((n, ny, nx, 2), np.float32)
    corrected = np.empty((n, h, w), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None
    kw = params.kernel_kwargs()
    consts = (tmpl, fill, window, weight, params.pwindow, params.pweight, params.wy, params.wx)

    def kernel(_, batch):
        return _pw.register_pw_batch(batch, *consts, apply=apply, with_corr=with_corr, **kw)

    for a, b, out in _run_kernels(kernel, movie, start, stop, bs):
        k = b - a
        rigid[a:b] = out[0][:k]
        pshifts[a:b] = out[1][:k]
        if apply:
            corrected[a:b] = out[2][:k]
            corr[a:b] = out[3][:k]
        if on_batch is not None:
            on_batch(k)
    return rigid, pshifts, corrected, corr


def apply_pw_shifts(
    movie,
    patch_shifts: np.ndarray,
    wy: np.ndarray,
    wx: np.ndarray,
    *,
    border: str = "copy",
    fill_min: float = 0.0,
    batch_size: int | None = None,
) -> np.ndarray:
    """Move each frame by the dense field interpolated from its patch shifts.

    ``patch_shifts`` is ``(T, Ny, Nx, 2)``; ``wy`` ``(H, Ny)`` and ``wx`` ``(W, Nx)`` are
    the interpolation matrices from patch centres to pixels
    (:func:`xnormcorre.engine.pwrigid.interp_matrix`).
    """
    from . import pwrigid as _pw

    n = len(movie)
    h, w = movie.shape[1:]
    bs = batch_size or default_batch_size((h, w), n)
    ps = np.asarray(patch_shifts, dtype=np.float32)
    out = np.empty((n, h, w), np.float32)
    fill = np.float32(fill_min)
    wy = np.asarray(wy, np.float32)
    wx = np.asarray(wx, np.float32)

    def kernel(_, batch, sh):
        return _pw.warp_batch(batch, sh, fill, wy, wx, border=border)

    for a, b, (res,) in _run_kernels(kernel, movie, 0, n, bs, ps):
        out[a:b] = res[: b - a]
    return out
