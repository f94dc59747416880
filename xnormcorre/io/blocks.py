"""Movie frames for the writers: the output dtype (integers rounded and clipped, with a
warning when many pixels saturate) and the stream of computed blocks of frames.

A ``(time, y, x)`` movie -- NumPy, lazily indexed or dask-backed, e.g. the lazy
``corrected`` of :func:`xnormcorre.rigid` -- is computed block by block: dask chunks
(small ones merged up to about 2**24 pixels) or batches of frames, the next block
computed in a background thread while the current one is written.  Memory stays at a
few blocks whatever the movie length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..schema import DIM_TIME, DIM_X, DIM_Y, MOVIE_DIMS
from ..stacklevel import warn
from ..validate import as_movie
from ._common import default_time_chunk
from .atomic import Terminated, check_target

__all__ = [
    "CLIP_WARN_FRACTION",
    "as_written_movie",
    "cast_block",
    "cast_movie",
    "count_clipped",
    "lazy_clipped",
    "out_dtype",
    "stream_movie",
    "warn_clipped",
]


def out_dtype(dtype: Any) -> np.dtype:
    if dtype is None:
        return np.dtype(np.float32)
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be a NumPy integer or float dtype, got {dtype!r}") from exc
    if out.kind not in "iuf":
        raise TypeError(f"dtype must be a NumPy integer or float dtype, got {out}")
    return out


def count_clipped(block: np.ndarray, dtype: np.dtype) -> int:
    """Pixels of ``block`` outside the range of an integer ``dtype`` (0 for a float dtype).

    Examples
    --------
    >>> count_clipped(np.array([-3.0, 1.6, 300.0]), np.dtype(np.uint8))
    2
    """
    if dtype.kind == "f":
        return 0
    info = np.iinfo(dtype)
    vals = np.asarray(block)
    return int(np.count_nonzero((vals < info.min - 0.5) | (vals >= info.max + 0.5)))


#: Fraction of clipped pixels above which an integer output gets a warning.
CLIP_WARN_FRACTION = 1e-3


def warn_clipped(n_clipped: int, n_pixels: int, dtype: np.dtype, target: Path) -> None:
    """Warn (``UserWarning``) when more than :data:`CLIP_WARN_FRACTION` of the pixels written
    to ``target`` saturated the integer ``dtype``, naming the fraction and the remedy."""
    frac = n_clipped / max(1, n_pixels)
    if frac > CLIP_WARN_FRACTION:
        info = np.iinfo(dtype)
        warn(
            f"{frac:.1%} of the pixels written to {str(target)!r} were outside the range of {dtype} "
            f"[{info.min}, {info.max}] and were clipped; write float32 (the default dtype) or a wider "
            "integer dtype, or rescale the movie first",
            UserWarning,
        )


def cast_block(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Convert frames to the output dtype; integers are rounded and clipped, NaN -> 0.

    Examples
    --------
    >>> cast_block(np.array([-3.0, 1.6, np.nan, 70000.0]), np.dtype(np.uint16))
    array([    0,     2,     0, 65535], dtype=uint16)
    """
    if dtype.kind == "f":
        return np.asarray(block, dtype=dtype)
    info = np.iinfo(dtype)
    vals = np.asarray(block)
    if vals.dtype.kind == "f":
        vals = np.rint(np.nan_to_num(vals, nan=0.0, posinf=info.max, neginf=info.min))
    return np.clip(vals, info.min, info.max).astype(dtype)


def as_written_movie(da: Any, name: str = "da") -> xr.DataArray:
    """The movie a writer writes: ``(time, y, x)`` (:func:`xnormcorre.validate.as_movie`),
    or a DataArray with one more dim -- the planes of a volume or multi-plane movie,
    e.g. ``(time, z, y, x)`` -- put in the order ``(time, plane, y, x)``."""
    if isinstance(da, xr.DataArray) and da.ndim == 4 and set(MOVIE_DIMS) <= set(da.dims):
        plane = next(d for d in da.dims if d not in MOVIE_DIMS)
        da = da.transpose(DIM_TIME, plane, DIM_Y, DIM_X)
        if da.dtype.kind not in "iuf":
            raise TypeError(f"{name} must have an integer or floating dtype, got {da.dtype}")
        if da.sizes[DIM_TIME] == 0:
            raise ValueError(f"{name} has zero frames: nothing to write")
        return da
    return as_movie(da, name=name)


def _bounds(movie: xr.DataArray, start: int = 0) -> list[tuple[int, int]]:
    """Time blocks: dask chunks merged up to the default block size, or plain batches;
    from frame ``start`` on (the block holding it cut there)."""
    return [(max(a, start), b) for a, b in _all_bounds(movie) if b > start]


def _all_bounds(movie: xr.DataArray) -> list[tuple[int, int]]:
    n, *rest = movie.shape
    target = default_time_chunk((n, int(np.prod(rest[:-1])), rest[-1]))
    if movie.chunks is None:
        return [(a, min(n, a + target)) for a in range(0, n, target)]
    out: list[tuple[int, int]] = []
    start = stop = 0
    for size in movie.chunks[0]:
        stop += size
        if stop - start >= target:
            out.append((start, stop))
            start = stop
    if stop > start:
        out.append((start, stop))
    return out


def _blocks(
    movie: xr.DataArray,
    dtype: np.dtype,
    prefetch: int,
    along: xr.Dataset | None = None,
    sink: list | None = None,
    clipped: list | None = None,
    start: int = 0,
) -> Iterator[np.ndarray]:
    """Computed, cast blocks in time order; ``prefetch`` blocks are computed ahead in threads.

    ``along`` (time-aligned variables sharing the movie's dask graph, e.g. the shifts of a
    lazy registration result) is computed with each block in one ``dask.compute`` --
    the shared tasks run once -- and its blocks are appended to ``sink``.  With ``clipped``
    (a list) the number of pixels outside the range of an integer ``dtype`` is appended per block,
    as the block is given.  ``start``: the first frame (a resumed write); ``along`` of the
    frames before it goes to ``sink`` first, still lazy if it is.
    """
    bounds = _bounds(movie, start)
    if start and sink is not None and along is not None:
        sink.append(along.isel({MOVIE_DIMS[0]: slice(0, start)}))

    def load(a: int, b: int):
        sl = {MOVIE_DIMS[0]: slice(a, b)}
        if along is None:
            values, extra = movie.isel(sl).values, None
        else:
            import dask

            block, extra = dask.compute(movie.isel(sl), along.isel(sl))
            values = block.values
        return cast_block(values, dtype), extra, count_clipped(values, dtype) if clipped is not None else 0

    pool = ThreadPoolExecutor(max_workers=prefetch)
    pending: list[Future] = []
    try:
        for a, b in bounds:
            pending.append(pool.submit(load, a, b))
            if len(pending) > prefetch:
                yield _take(pending.pop(0), sink, clipped)
        while pending:
            yield _take(pending.pop(0), sink, clipped)
    except Terminated:
        # SIGTERM: the process ends once the temporary is removed; do not wait for the block
        # being computed
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        for f in pending:
            f.cancel()
    pool.shutdown(wait=True)


def _take(future: Future, sink: list | None, clipped: list | None) -> np.ndarray:
    block, extra, n_clipped = future.result()
    if sink is not None:
        sink.append(extra)
    if clipped is not None:
        clipped.append(n_clipped)
    return block


def _prefetch() -> int:
    """Blocks computed ahead of the one being written.

    One: the registration of a block already uses several cores (dask threads within
    the block, XLA's intra-op threads), so more blocks in flight only add memory
    (about 2 blocks + the JAX work buffers are resident: ~350 MB for 256×256 frames).
    """
    return 1


def cast_movie(da: xr.DataArray, dtype: Any) -> xr.DataArray:
    """Lazily cast a (dask-backed) movie as the writers do: integers rounded and clipped, NaN -> 0."""
    if dtype is None or da.dtype == dtype:
        return da
    dtype = np.dtype(dtype)
    if da.chunks is None:
        return da.copy(data=cast_block(da.values, dtype))
    return da.copy(data=da.data.map_blocks(cast_block, dtype, dtype=dtype))


def lazy_clipped(da: xr.DataArray, dtype: Any) -> Any:
    """The number of pixels of ``da`` that :func:`cast_movie` clips to ``dtype``: an int for a
    NumPy-backed movie, a lazy dask scalar sharing ``da``'s graph for a dask-backed one
    (compute it with the cast movie: the shared tasks then run once); 0 for a float dtype."""
    if dtype is None or np.dtype(dtype).kind == "f":
        return 0
    dtype = np.dtype(dtype)
    if da.chunks is None:
        return count_clipped(da.values, dtype)

    def count(block: np.ndarray) -> np.ndarray:
        return np.full((1,) * block.ndim, count_clipped(block, dtype), np.int64)

    ones = tuple((1,) * len(c) for c in da.data.chunks)
    return da.data.map_blocks(count, dtype=np.int64, chunks=ones).sum()


def stream_movie(
    da: xr.DataArray,
    path: Any,
    dtype: Any,
    overwrite: bool,
    write: Callable[[xr.DataArray, Path, np.dtype, Iterator[np.ndarray]], Any],
    along: xr.Dataset | None = None,
    *,
    resume: bool = False,
    layout: Any = None,
    progress: bool = True,
) -> tuple[Path, xr.Dataset | None]:
    """Check the movie, the dtype and the target, then ``write(movie, target, dtype, blocks)``
    with the computed, cast blocks of frames; warn if the cast clipped many pixels.

    With ``resume`` the movie is written resumably in the file format ``layout``
    (:func:`xnormcorre.io.resumable.write_resumably`, ``write`` unused): an interrupted
    write of the same movie is continued from its first missing frame.

    Returns the target and, with ``along`` (time-aligned variables sharing the movie's dask
    graph), those variables computed in the same pass, loaded.
    """
    movie = as_written_movie(da, name="da")
    if resume and movie.ndim == 4:
        raise ValueError(
            f"resume=True is not available for a volume or multi-plane movie {movie.dims} yet; "
            "write it without resume"
        )
    dtype = out_dtype(dtype)
    target = check_target(path, overwrite, store=bool(resume and layout.store))
    sink: list = []
    kept = sink if along is not None else None
    if resume:
        from .resumable import write_resumably

        def blocks_from(start: int, clipped: list[int]) -> Iterator[np.ndarray]:
            return _blocks(movie, dtype, _prefetch(), along, kept, clipped, start=start)

        n_clipped = write_resumably(
            movie, target, dtype, blocks_from, layout, overwrite=overwrite, progress=progress
        )
    else:
        clipped: list[int] = []
        write(movie, target, dtype, _blocks(movie, dtype, _prefetch(), along, kept, clipped))
        n_clipped = sum(clipped)
    warn_clipped(n_clipped, movie.size, dtype, target)
    if along is None:
        return target, None
    dim = MOVIE_DIMS[0]
    return target, xr.concat(sink, dim=dim, data_vars="minimal", coords="minimal", compat="override").load()
