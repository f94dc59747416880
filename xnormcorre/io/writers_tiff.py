"""The TIFF writer :func:`to_tiff`: a movie streamed block by block to a multi-page TIFF."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import xarray as xr
from tqdm.std import tqdm

from . import atomic
from ._docs import fill_doc
from .blocks import stream_movie

__all__ = ["TiffLayout", "to_tiff", "write_tiff_blocks"]

#: TIFF files larger than this are written as BigTIFF when ``bigtiff=None`` (tifffile's own margin).
BIGTIFF_BYTES = 2**32 - 2**25


@fill_doc
def to_tiff(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    bigtiff: bool | None = None,
    overwrite: bool = False,
    dtype: Any = None,
    progress: bool = True,
    resume: bool = False,
) -> Path:
    """Write a ``(time, y, x)`` movie to a multi-page TIFF, streamed block by block.

    Parameters
    ----------
    da : xarray.DataArray, (time, y, x) or (time, z, y, x)
        Movie to write; NumPy or dask-backed (e.g. a lazy ``rigid(...).corrected``).
        Only a few blocks of frames are in memory at any time.  A volume or multi-plane
        movie is written as an ImageJ hyperstack (axes ``TZYX``), which
        :func:`xnormcorre.open_movie` reads back as ``(time, z, y, x)`` (not resumably yet).
    path : str or path
        Output file.  Written as ``.<name>.<random>.part`` in the same folder and
        renamed when complete; on error nothing is left behind.
    bigtiff : bool, optional
        Write BigTIFF (needed above 4 GB).  Default: only if the data exceed ~4 GB.
    overwrite : bool
        Replace an existing file (default: raise ``FileExistsError``).
    dtype : dtype, optional
        Output dtype: float32 by default; an integer dtype (e.g. ``np.uint16``) rounds
        and clips to its range (NaN -> 0), with a ``UserWarning`` naming the fraction of
        clipped pixels when it is above 0.1 %.
    %(progress)s
    %(resume)s
        The file is the same, byte for byte, as an uninterrupted write.

    %(returns_path)s

    %(raises_resume)s

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
    >>> again = xnormcorre.to_tiff(movie, p.with_name("again.tif"), progress=False, resume=True)
    >>> again.read_bytes() == p.read_bytes()
    True
    """
    from .resumable import check_resume

    resume = check_resume(resume)

    layout = TiffLayout(bigtiff)
    write = layout.writer(progress=progress, overwrite=overwrite)
    return stream_movie(da, path, dtype, overwrite, write, resume=resume, layout=layout, progress=progress)[0]


def _tiff_options(shape: tuple[int, ...], dtype: np.dtype) -> dict[str, Any]:
    """The arguments of ``TiffWriter.write`` for a movie: one contiguous series of pages
    (axes ``TYX``, or ``TZYX`` for a volume or multi-plane movie)."""
    axes = "TYX" if len(shape) == 3 else "TZYX"
    return {"shape": shape, "dtype": dtype, "photometric": "minisblack", "metadata": {"axes": axes}}


def _bigtiff(bigtiff: bool | None, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    return bool(int(np.prod(shape)) * dtype.itemsize > BIGTIFF_BYTES if bigtiff is None else bigtiff)


class TiffLayout:
    """The TIFF of :func:`to_tiff` for a resumable write: tifffile writes the header and every
    IFD with the image data left empty (uncompressed pages are one contiguous block after
    the first IFD), and the frames are then written in place -- the same bytes as
    :func:`write_tiff_blocks`."""

    fmt = "tiff"
    store = False

    def __init__(self, bigtiff: bool | None) -> None:
        self.bigtiff = bigtiff

    def options(self, movie: xr.DataArray, dtype: np.dtype) -> dict[str, Any]:
        return {"bigtiff": _bigtiff(self.bigtiff, movie.shape, dtype)}

    def versions(self) -> dict[str, str]:
        return {"tifffile": tifffile.__version__}

    def create(self, part: Path, movie: xr.DataArray, dtype: np.dtype) -> dict[str, Any]:
        shape = tuple(int(s) for s in movie.shape)
        atomic.check_space(part, int(np.prod(shape)) * dtype.itemsize)
        with tifffile.TiffWriter(part, bigtiff=_bigtiff(self.bigtiff, shape, dtype), ome=False) as tw:
            offset, _ = tw.write(None, returnoffset=True, **_tiff_options(shape, dtype))
        return {"offset": int(offset)}

    @contextlib.contextmanager
    def filler(
        self, part: Path, shape: tuple[int, int, int], dtype: np.dtype, info: dict[str, Any]
    ) -> Iterator[_TiffFiller]:
        with open(part, "r+b", buffering=0) as f:
            yield _TiffFiller(f.fileno(), int(info["offset"]), shape[1] * shape[2] * dtype.itemsize, dtype)

    def read(
        self, part: Path, shape: tuple[int, int, int], dtype: np.dtype, info: dict[str, Any], index: int
    ) -> np.ndarray:
        size = shape[1] * shape[2] * dtype.itemsize
        with open(part, "rb") as f:
            f.seek(int(info["offset"]) + index * size)
            return np.frombuffer(f.read(size), dtype=dtype).reshape(shape[1:])

    def writer(self, *, progress: bool, overwrite: bool) -> Callable[..., Path]:
        """The plain (not resumable) write of this TIFF, ``write(movie, target, dtype, blocks)``:
        :func:`write_tiff_blocks`."""
        return functools.partial(
            write_tiff_blocks, bigtiff=self.bigtiff, progress=progress, overwrite=overwrite
        )


class _TiffFiller:
    def __init__(self, fd: int, offset: int, frame_bytes: int, dtype: np.dtype) -> None:
        self.fd, self.offset, self.frame_bytes, self.dtype = fd, offset, frame_bytes, dtype

    def put(self, start: int, block: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(block, dtype=self.dtype)).cast("B")
        pos, done = self.offset + start * self.frame_bytes, 0
        while done < len(data):
            done += os.pwrite(self.fd, data[done:], pos + done)

    def sync(self) -> None:
        os.fsync(self.fd)


def write_tiff_blocks(
    movie: xr.DataArray,
    target: Path,
    out_dtype: np.dtype,
    blocks: Iterator[np.ndarray],
    *,
    bigtiff: bool | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the cast ``blocks`` of frames of ``movie`` to the TIFF ``target``, atomically.
    A volume or multi-plane movie ``(time, z, y, x)`` is written as an ImageJ hyperstack
    (axes ``TZYX``) when ImageJ can read its dtype (uint8, uint16, float32), else as a
    shaped TIFF with axes ``TZYX``."""
    shape = tuple(int(s) for s in movie.shape)
    n, (h, w) = shape[0], shape[-2:]
    bigtiff = _bigtiff(bigtiff, shape, out_dtype)
    atomic.check_space(target, int(np.prod(shape)) * out_dtype.itemsize)
    imagej = len(shape) == 4 and not bigtiff and out_dtype in (np.uint8, np.uint16, np.float32)

    def write(tmp: Path) -> None:
        with tqdm(total=n, unit="frame", desc=f"to_tiff {target.name}", disable=not progress) as bar:

            def pages() -> Iterator[np.ndarray]:
                for block in blocks:
                    yield from block.reshape(-1, h, w)
                    bar.update(block.shape[0])

            with tifffile.TiffWriter(tmp, bigtiff=bool(bigtiff), ome=False, imagej=imagej) as tw:
                tw.write(pages(), **_tiff_options(shape, out_dtype))

    return atomic.write_atomically(target, write, overwrite=overwrite)
