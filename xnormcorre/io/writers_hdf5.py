"""The HDF5 writer :func:`to_hdf5`: a movie streamed block by block to one HDF5 dataset.

A full disk is one clean ``OSError``: the file under HDF5 remembers the failed write and
skips the rest so that HDF5 still closes its file (a file whose close failed crashes the
interpreter when h5py frees it).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from tqdm.std import tqdm

from ..schema import MOVIE_DIMS
from . import atomic
from ._docs import fill_doc
from .blocks import stream_movie

__all__ = ["Hdf5Layout", "to_hdf5", "write_hdf5_blocks"]


@fill_doc
def to_hdf5(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    dataset: str = "mov",
    overwrite: bool = False,
    dtype: Any = None,
    progress: bool = True,
    resume: bool = False,
) -> Path:
    """Write a ``(time, y, x)`` movie to an HDF5 dataset, streamed block by block.

    The dataset is chunked one frame per HDF5 chunk and labels its dimensions
    ``time``, ``y``, ``x`` (HDF5 dimension labels); the file holds only this dataset.

    Parameters
    ----------
    da : xarray.DataArray, (time, y, x) or (time, z, y, x)
        Movie to write; NumPy or dask-backed (e.g. a lazy ``rigid(...).corrected``).
    path : str or path
        Output file, written under a temporary name and renamed when complete.
    dataset : str
        Name of the dataset (CaImAn's default ``"mov"``).
    overwrite : bool
        Replace an existing file (default: raise ``FileExistsError``).
    dtype : dtype, optional
        Output dtype: float32 by default; an integer dtype rounds and clips (NaN -> 0),
        with a ``UserWarning`` naming the fraction of clipped pixels when it is above 0.1 %.
    %(progress)s
    %(resume)s
        The partial file's dataset has all its chunks allocated when it is made; the
        dataset's values, dtype, chunks and attributes are those of an uninterrupted write.

    %(returns_path)s

    %(raises_resume)s

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
    from .resumable import check_resume

    check_dataset_name(dataset)
    resume = check_resume(resume)

    layout = Hdf5Layout(dataset)
    write = layout.writer(progress=progress, overwrite=overwrite)
    return stream_movie(da, path, dtype, overwrite, write, resume=resume, layout=layout, progress=progress)[0]


def check_dataset_name(dataset: Any) -> str:
    """``dataset`` if it is a usable HDF5 dataset name, else ``ValueError``.

    Examples
    --------
    >>> check_dataset_name("mov")
    'mov'
    >>> check_dataset_name("")
    Traceback (most recent call last):
    ...
    ValueError: dataset must be a non-empty HDF5 dataset name, got ''
    """
    if not isinstance(dataset, str) or not dataset.strip("/"):
        raise ValueError(f"dataset must be a non-empty HDF5 dataset name, got {dataset!r}")
    return dataset


class _WriteOnce(io.RawIOBase):
    """The file under an HDF5 output (h5py's ``fileobj`` driver): a failed write (a full
    disk) is remembered and every later write skipped, so that HDF5 still closes its file
    cleanly -- a file whose close failed crashes the interpreter when h5py frees it --
    and :meth:`check` then raises the error."""

    def __init__(self, path: Path, mode: str = "w+b") -> None:
        super().__init__()
        self.path = path
        self._f = open(path, mode, buffering=0)  # noqa: SIM115 (closed in close())
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:
        return self._f.readinto(buffer)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += self._f.write(view[done:])
            except OSError as exc:
                self.error = exc
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        if self.error is not None:
            return self._f.tell() if size is None else size
        return self._f.truncate(size)

    def flush(self) -> None:
        return None

    def sync(self) -> None:
        """Sync the file to disk (unless a write failed)."""
        if self.error is None:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()

    def check(self) -> None:
        """Raise the first failed write (ENOSPC: no space left on device)."""
        if self.error is not None:
            exc = self.error
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc


def write_hdf5_blocks(
    movie: xr.DataArray,
    target: Path,
    out_dtype: np.dtype,
    blocks: Iterator[np.ndarray],
    *,
    dataset: str = "mov",
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the cast ``blocks`` of frames of ``movie`` to dataset ``dataset`` of the HDF5 file
    ``target``, atomically (one frame per HDF5 chunk, dimensions labelled ``time, y, x``,
    or ``time, z, y, x`` for a volume)."""
    n = movie.shape[0]
    atomic.check_space(target, int(np.prod(movie.shape)) * out_dtype.itemsize)

    def fill(f: h5py.File, bar) -> None:
        dset = _create_dataset(f, dataset, tuple(movie.shape), out_dtype, labels=movie.dims)
        start = 0
        for block in blocks:
            dset[start : start + block.shape[0]] = block
            start += block.shape[0]
            bar.update(block.shape[0])

    def write(tmp: Path) -> None:
        with (
            tqdm(total=n, unit="frame", desc=f"to_hdf5 {target.name}", disable=not progress) as bar,
            _WriteOnce(tmp) as raw,
        ):
            with h5py.File(raw, "w") as f:
                fill(f, bar)
            raw.check()

    return atomic.write_atomically(target, write, overwrite=overwrite)


def _create_dataset(
    f: h5py.File,
    dataset: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    allocate: bool = False,
    labels: tuple = MOVIE_DIMS,
) -> h5py.Dataset:
    """The movie's dataset: one frame (or volume) per chunk, dimensions labelled ``labels``
    (``time, y, x``); with ``allocate`` every chunk is allocated now (and not filled), so that
    writing frames later changes no HDF5 metadata -- a write killed mid-way leaves the file readable."""
    n, *frame = shape
    dcpl = None
    if allocate:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dset = f.create_dataset(dataset, shape=(n, *frame), dtype=dtype, chunks=(1, *frame), dcpl=dcpl)
    for dim, label in zip(dset.dims, labels, strict=True):
        dim.label = label
    return dset


class Hdf5Layout:
    """The HDF5 file of :func:`to_hdf5` for a resumable write: the dataset is made with every
    chunk allocated, then the frames are written in place (the file flushed and synced
    after each block)."""

    fmt = "hdf5"
    store = False

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def options(self, movie: xr.DataArray, dtype: np.dtype) -> dict[str, Any]:
        return {"dataset": self.dataset}

    def versions(self) -> dict[str, str]:
        return {"h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version}

    def create(self, part: Path, movie: xr.DataArray, dtype: np.dtype) -> dict[str, Any]:
        shape = tuple(int(s) for s in movie.shape)
        atomic.check_space(part, int(np.prod(shape)) * dtype.itemsize)
        with _WriteOnce(part) as raw:
            with h5py.File(raw, "w") as f:
                _create_dataset(f, self.dataset, shape, dtype, allocate=True)
            raw.check()
        return {}

    @contextlib.contextmanager
    def filler(
        self, part: Path, shape: tuple[int, int, int], dtype: np.dtype, info: dict[str, Any]
    ) -> Iterator[_Hdf5Filler]:
        with _WriteOnce(part, "r+b") as raw:
            with h5py.File(raw, "r+") as f:
                yield _Hdf5Filler(f, f[self.dataset], raw)
            raw.check()

    def read(
        self, part: Path, shape: tuple[int, int, int], dtype: np.dtype, info: dict[str, Any], index: int
    ) -> np.ndarray:
        with h5py.File(part, "r") as f:
            return f[self.dataset][index]

    def writer(self, *, progress: bool, overwrite: bool) -> Callable[..., Path]:
        """The plain (not resumable) write of this HDF5 file, ``write(movie, target, dtype, blocks)``:
        :func:`write_hdf5_blocks`."""
        return functools.partial(
            write_hdf5_blocks, dataset=self.dataset, progress=progress, overwrite=overwrite
        )


class _Hdf5Filler:
    def __init__(self, f: h5py.File, dset: h5py.Dataset, raw: _WriteOnce) -> None:
        self.f, self.dset, self.raw = f, dset, raw

    def put(self, start: int, block: np.ndarray) -> None:
        self.dset[start : start + block.shape[0]] = block

    def sync(self) -> None:
        self.f.flush()
        self.raw.check()
        self.raw.sync()
