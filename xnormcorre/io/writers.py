"""Streamed movie writers: :func:`to_tiff` and :func:`to_hdf5`.

Both write a ``(time, y, x)`` movie -- NumPy, lazily indexed or dask-backed, e.g. the
lazy ``corrected`` of :func:`xnormcorre.rigid` -- block by block: dask chunks (small
ones merged up to about 2**24 pixels) or batches of frames, the next block computed
in a background thread while the current one is written, with a tqdm progress bar.
Memory stays at a few blocks whatever the movie length.

The file is written under a temporary name in the target folder and renamed with
:func:`os.replace` only when complete: an error or an interrupt mid-way leaves no file
at ``path`` and no temporary file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tifffile
import xarray as xr
from tqdm.std import tqdm

from .. import conventions as cv
from ._common import default_time_chunk

__all__ = ["to_hdf5", "to_tiff"]

#: TIFF files larger than this are written as BigTIFF when ``bigtiff=None`` (tifffile's own margin).
_BIGTIFF_BYTES = 2**32 - 2**25


def _out_dtype(dtype: Any) -> np.dtype:
    if dtype is None:
        return np.dtype(np.float32)
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be a NumPy integer or float dtype, got {dtype!r}") from exc
    if out.kind not in "iuf":
        raise TypeError(f"dtype must be a NumPy integer or float dtype, got {out}")
    return out


def _target(path: str | os.PathLike, overwrite: bool) -> Path:
    p = Path(os.fspath(path)).expanduser().absolute()
    if p.is_dir():
        raise IsADirectoryError(f"path {str(p)!r} is a directory; give a file name")
    if p.exists() and not overwrite:
        raise FileExistsError(f"{str(p)!r} exists; pass overwrite=True to replace it")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"folder {str(p.parent)!r} of the output file does not exist")
    return p


def _temp_name(p: Path) -> Path:
    return p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.part")


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


def _bounds(movie: xr.DataArray) -> list[tuple[int, int]]:
    """Time blocks: dask chunks merged up to the default block size, or plain batches."""
    n, h, w = movie.shape
    target = default_time_chunk((n, h, w))
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


def _blocks(movie: xr.DataArray, dtype: np.dtype, prefetch: int) -> Iterator[np.ndarray]:
    """Computed, cast blocks in time order; ``prefetch`` blocks are computed ahead in threads."""
    bounds = _bounds(movie)

    def load(a: int, b: int) -> np.ndarray:
        return cast_block(movie.isel(time=slice(a, b)).values, dtype)

    with ThreadPoolExecutor(max_workers=prefetch) as pool:
        pending: list[Future] = []
        try:
            for a, b in bounds:
                pending.append(pool.submit(load, a, b))
                if len(pending) > prefetch:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for f in pending:
                f.cancel()


def _prefetch() -> int:
    """Blocks computed ahead of the one being written.

    One: the registration of a block already uses several cores (dask threads within
    the block, XLA's intra-op threads), so more blocks in flight only add memory
    (about 2 blocks + the JAX work buffers are resident: ~350 MB for 256×256 frames).
    """
    return 1


def _write_atomically(path: Path, write) -> Path:
    tmp = _temp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def to_tiff(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    bigtiff: bool | None = None,
    overwrite: bool = False,
    dtype: Any = None,
    progress: bool = True,
) -> Path:
    """Write a ``(time, y, x)`` movie to a multi-page TIFF, streamed block by block.

    Parameters
    ----------
    da : xarray.DataArray, (time, y, x)
        Movie to write; NumPy or dask-backed (e.g. a lazy ``rigid(...).corrected``).
        Only a few blocks of frames are in memory at any time.
    path : str or path
        Output file.  Written as ``.<name>.<random>.part`` in the same folder and
        renamed when complete; on error nothing is left behind.
    bigtiff : bool, optional
        Write BigTIFF (needed above 4 GB).  Default: only if the data exceed ~4 GB.
    overwrite : bool
        Replace an existing file (default: raise ``FileExistsError``).
    dtype : dtype, optional
        Output dtype: float32 by default; an integer dtype (e.g. ``np.uint16``) rounds
        and clips to its range (NaN -> 0).
    progress : bool
        Show a tqdm progress bar (frames).

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import tifffile, xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=6, shape=(32, 32), max_shift=1)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.tif"
    >>> _ = xnormcorre.to_tiff(movie.chunk({"time": 4}), p, progress=False)
    >>> back = tifffile.imread(p)
    >>> back.shape, back.dtype, bool((back == movie.values.astype(np.float32)).all())
    ((6, 32, 32), dtype('float32'), True)
    """
    movie = cv.as_movie(da, name="da")
    out_dtype = _out_dtype(dtype)
    target = _target(path, overwrite)
    n, h, w = movie.shape
    if bigtiff is None:
        bigtiff = n * h * w * out_dtype.itemsize > _BIGTIFF_BYTES

    def write(tmp: Path) -> None:
        with tqdm(total=n, unit="frame", desc=f"to_tiff {target.name}", disable=not progress) as bar:

            def pages() -> Iterator[np.ndarray]:
                for block in _blocks(movie, out_dtype, _prefetch()):
                    yield from block
                    bar.update(block.shape[0])

            with tifffile.TiffWriter(tmp, bigtiff=bool(bigtiff), ome=False) as tw:
                tw.write(
                    pages(),
                    shape=(n, h, w),
                    dtype=out_dtype,
                    photometric="minisblack",
                    metadata={"axes": "TYX"},
                )

    return _write_atomically(target, write)


def to_hdf5(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    dataset: str = "mov",
    overwrite: bool = False,
    dtype: Any = None,
    progress: bool = True,
) -> Path:
    """Write a ``(time, y, x)`` movie to an HDF5 dataset, streamed block by block.

    The dataset is chunked one frame per HDF5 chunk and labels its dimensions
    ``time``, ``y``, ``x`` (HDF5 dimension labels); the file holds only this dataset.

    Parameters
    ----------
    da : xarray.DataArray, (time, y, x)
        Movie to write; NumPy or dask-backed (e.g. a lazy ``rigid(...).corrected``).
    path : str or path
        Output file, written under a temporary name and renamed when complete.
    dataset : str
        Name of the dataset (CaImAn's default ``"mov"``).
    overwrite : bool
        Replace an existing file (default: raise ``FileExistsError``).
    dtype : dtype, optional
        Output dtype: float32 by default; an integer dtype rounds and clips (NaN -> 0).
    progress : bool
        Show a tqdm progress bar (frames).

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=6, shape=(32, 32), max_shift=1)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.h5"
    >>> _ = xnormcorre.to_hdf5(movie, p, dtype=np.uint16, progress=False)
    >>> back = xnormcorre.open_movie(p)
    >>> back.dtype, bool((back == np.clip(np.rint(movie), 0, 65535)).all())
    (dtype('uint16'), True)
    >>> back.close()
    """
    movie = cv.as_movie(da, name="da")
    out_dtype = _out_dtype(dtype)
    if not isinstance(dataset, str) or not dataset.strip("/"):
        raise ValueError(f"dataset must be a non-empty HDF5 dataset name, got {dataset!r}")
    target = _target(path, overwrite)
    n, h, w = movie.shape

    def write(tmp: Path) -> None:
        with (
            tqdm(total=n, unit="frame", desc=f"to_hdf5 {target.name}", disable=not progress) as bar,
            h5py.File(tmp, "w") as f,
        ):
            dset = f.create_dataset(dataset, shape=(n, h, w), dtype=out_dtype, chunks=(1, h, w))
            for dim, label in zip(dset.dims, cv.MOVIE_DIMS, strict=True):
                dim.label = label
            start = 0
            for block in _blocks(movie, out_dtype, _prefetch()):
                dset[start : start + block.shape[0]] = block
                start += block.shape[0]
                bar.update(block.shape[0])

    return _write_atomically(target, write)
