"""Running the compiled kernels over a movie: batch sizes, padding, the kernel thread pool.

Everything here takes array-likes indexable along the first (time) axis -- NumPy
arrays, NumPy memmaps, dask arrays or lazy backend arrays -- reads them one batch at a
time and returns NumPy arrays.  Two sizes are involved: the *read batch*
(:func:`default_batch_size`, the user's ``batch_size``: frames read from the movie at
once) and the *kernel batch* (:func:`kernel_batch`: frames per compiled call, a
function of the frame shape only).  Each read batch is cut into kernel batches, the
last one padded (:func:`pad_batch`), so that each kernel compiles once per frame shape
and the results do not depend on the batching.  Never imports xarray.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import allocator, compile_cache

__all__ = [
    "aligned_batch_size",
    "default_batch_size",
    "iter_batches",
    "kernel_batch",
    "kernel_threads",
    "lane_batches",
    "ordered_map",
    "pad_batch",
    "pw_batch_size",
    "read_frames",
    "run_kernels",
]

#: Target number of float32 pixels per batch (about 16 MiB per batch of frames).
_PIXELS_PER_BATCH = 2**22


def default_batch_size(shape: tuple[int, int], n_frames: int | None = None) -> int:
    """Frames read per batch (default ``batch_size``): a power of two, about 4 Mpixel.

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
    b = max(1, _PIXELS_PER_KERNEL // int(np.prod(shape)))  # a frame (H, W) or a volume (D, H, W)
    return min(1 << (b.bit_length() - 1), 64)


def kernel_calls(block: np.ndarray, *others: np.ndarray) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Split a read batch into padded kernel batches: ``(start, stop, [padded arrays])``."""
    m = kernel_batch(block.shape[1:])
    for a, b in iter_batches(block.shape[0], m):
        yield a, b, [pad_batch(x[a:b], m) for x in (block, *others)]


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


_NONE = object()


def ordered_map(fn: Callable, items: Iterable) -> Iterator:
    """``map(fn, items)`` with up to :func:`kernel_threads` calls in flight, in order.

    ``items`` is consumed lazily in the calling thread (so reading the next frames
    overlaps the kernels), at most two items per thread ahead of the results.  The
    first call runs alone: it compiles the kernels once, instead of every thread
    compiling the same programs at the same time (twice the work, and concurrent XLA
    compilations of one program have crashed the process).  Before it, compiled
    programs are dropped if the process is near its memory-map cap
    (:func:`xnormcorre.engine.compile_cache.release_if_crowded`).  While it runs, memory
    the kernels free is kept for their next calls (:mod:`xnormcorre.engine.allocator`).
    """
    n = kernel_threads()
    items = iter(items)
    first = next(items, _NONE)
    if first is _NONE:
        return
    compile_cache.release_if_crowded()
    allocator.pass_started()
    try:
        yield fn(first)
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
    finally:
        allocator.pass_ended()


def run_kernels(
    kernel: Callable[..., object],
    movie,
    start: int,
    stop: int,
    batch_size: int,
    *others: np.ndarray,
    origin: int | None = None,
) -> Iterator[tuple[int, int, list[np.ndarray]]]:
    """Run ``kernel(n_valid, *padded arrays)`` over frames ``movie[start:stop]``.

    Frames are read ``batch_size`` at a time and cut into padded kernel batches
    (:func:`kernel_calls`; ``others`` are per-frame arrays indexed like the frames,
    relative to ``start``); the calls run on the kernel thread pool
    (:func:`ordered_map`).  Yields ``(a, b, outputs)`` in frame order, ``a:b``
    relative to ``start``, the outputs as NumPy arrays.

    ``origin=None``: kernel batches start at ``start``; the valid frames are lanes
    ``0:n_valid`` and the outputs are yielded whole (padding included): kernels whose
    outputs are sums over the batch (template steps) use this.

    ``origin``: the frame number of ``movie[start]`` in the whole movie (e.g. the first
    frame of a dask chunk).  Frame ``t`` is then computed in lane ``(origin + t - start)
    % m`` of its kernel batch of ``m`` frames (:func:`kernel_batch`) -- the block is
    padded at the front as well as at the back -- so each frame goes through the same
    lane of the same compiled computation whatever the chunking and ``batch_size``
    (XLA may round a frame differently in another lane): the results are the same bits.
    Every output must then be per frame (leading axis of length ``m``); each is yielded
    cut to its valid frames (``b - a`` rows, so ``out[:b - a]`` still works).
    """
    if origin is not None:
        return _run_aligned(kernel, movie, start, stop, batch_size, others, int(origin))

    def calls():
        for a0, b0 in iter_batches(stop - start, batch_size):
            block = read_frames(movie, start + a0, start + b0)
            for c0, d0, arrays in kernel_calls(block, *(o[a0:b0] for o in others)):
                yield a0 + c0, a0 + d0, arrays

    def run(call):
        a, b, arrays = call
        out = kernel(b - a, *arrays)
        out = out if isinstance(out, tuple | list) else (out,)
        return a, b, [np.asarray(o) for o in out]

    return ordered_map(run, calls())


def lane_batches(origin: int, n: int, m: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """Read batches ``(a, b)`` (relative to ``origin``) of frames ``origin .. origin + n - 1``
    whose bounds fall on multiples of ``m`` (and of ``batch_size`` rounded up to ``m``) in
    absolute frame numbers, so that no kernel batch is split by a read.

    Examples
    --------
    >>> list(lane_batches(5, 20, 4, 6))
    [(0, 3), (3, 11), (11, 19), (19, 20)]
    """
    step = -(-max(1, batch_size) // m) * m
    a = 0
    while a < n:
        b = min(n, (origin + a) // step * step + step - origin)
        yield a, b
        a = b


def _run_aligned(kernel, movie, start, stop, batch_size, others, origin):
    n = stop - start
    m = kernel_batch(tuple(movie.shape[1:]))

    def calls():
        for a0, b0 in lane_batches(origin, n, m, batch_size):
            block = read_frames(movie, start + a0, start + b0)
            parts = [block, *(np.asarray(o[a0:b0]) for o in others)]
            c0 = 0
            while c0 < b0 - a0:
                lane = (origin + a0 + c0) % m
                d0 = min(b0 - a0, c0 + m - lane)
                arrays = [pad_batch(x[c0:d0], m, front=lane) for x in parts]
                yield a0 + c0, a0 + d0, lane, arrays
                c0 = d0

    def run(call):
        a, b, lane, arrays = call
        out = kernel(b - a, *arrays)
        out = out if isinstance(out, tuple | list) else (out,)
        return a, b, [np.asarray(o)[lane : lane + b - a] for o in out]

    return ordered_map(run, calls())


def read_frames(movie, start: int, stop: int) -> np.ndarray:
    """Frames ``movie[start:stop]`` as float32 (one read)."""
    return np.asarray(movie[start:stop], dtype=np.float32)


def pad_batch(batch: np.ndarray, size: int, front: int = 0) -> np.ndarray:
    """``batch`` padded to ``size`` frames (fixed kernel shapes): ``front`` copies of its
    first frame before it, copies of its last frame after it.

    Examples
    --------
    >>> pad_batch(np.array([1, 2]), 5, front=2).tolist()
    [1, 1, 1, 2, 2]
    """
    n = batch.shape[0]
    if n == size and front == 0:
        return batch
    back = size - n - front
    if back < 0:
        raise ValueError(f"cannot pad {n} frames to {size} with {front} in front")
    parts = [np.repeat(batch[:1], front, axis=0), batch, np.repeat(batch[-1:], back, axis=0)]
    return np.concatenate([p for p in parts if p.shape[0]], axis=0)


def iter_batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(n)`` in steps of ``batch_size``."""
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def pw_batch_size(shape: tuple[int, int], n_frames: int | None = None) -> int:
    """Default read batch of a piecewise-rigid pass: half the rigid one (more work per frame).

    Examples
    --------
    >>> pw_batch_size((512, 512))
    8
    """
    return max(1, default_batch_size(shape, n_frames) // 2)


def aligned_batch_size(batch_size: int, shape: tuple[int, int]) -> int:
    """``batch_size`` rounded up to a multiple of the kernel batch (no partly filled call
    except the last).

    Examples
    --------
    >>> aligned_batch_size(10, (128, 128))
    64
    """
    m = kernel_batch(shape)
    return -(-batch_size // m) * m
