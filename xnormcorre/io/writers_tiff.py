"""The TIFF writer :func:`to_tiff`: a movie streamed block by block to a multi-page TIFF."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import xarray as xr
from tqdm.std import tqdm

from . import atomic
from .blocks import stream_movie

__all__ = ["to_tiff", "write_tiff_blocks"]

#: TIFF files larger than this are written as BigTIFF when ``bigtiff=None`` (tifffile's own margin).
BIGTIFF_BYTES = 2**32 - 2**25


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
    da : xarray.DataArray, (time, y, x) or (time, z, y, x)
        Movie to write; NumPy or dask-backed (e.g. a lazy ``rigid(...).corrected``).
        Only a few blocks of frames are in memory at any time.  A volume or multi-plane
        movie is written as an ImageJ hyperstack (axes ``TZYX``), which
        :func:`xnormcorre.open_movie` reads back as ``(time, z, y, x)``.
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

    def write(movie: xr.DataArray, target: Path, out_dtype: np.dtype, blocks: Iterator[np.ndarray]) -> Path:
        return write_tiff_blocks(
            movie, target, out_dtype, blocks, bigtiff=bigtiff, progress=progress, overwrite=overwrite
        )

    return stream_movie(da, path, dtype, overwrite, write)[0]


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
    n, *frame = movie.shape
    h, w = frame[-2:]
    nbytes = n * int(np.prod(frame)) * out_dtype.itemsize
    if bigtiff is None:
        bigtiff = nbytes > BIGTIFF_BYTES
    atomic.check_space(target, nbytes)
    imagej = len(frame) == 3 and not bigtiff and out_dtype in (np.uint8, np.uint16, np.float32)
    axes = "TYX" if len(frame) == 2 else "TZYX"

    def write(tmp: Path) -> None:
        with tqdm(total=n, unit="frame", desc=f"to_tiff {target.name}", disable=not progress) as bar:

            def pages() -> Iterator[np.ndarray]:
                for block in blocks:
                    yield from block.reshape(-1, h, w)
                    bar.update(block.shape[0])

            with tifffile.TiffWriter(tmp, bigtiff=bool(bigtiff), ome=False, imagej=imagej) as tw:
                tw.write(
                    pages(),
                    shape=(n, *frame),
                    dtype=out_dtype,
                    photometric="minisblack",
                    metadata={"axes": axes},
                )

    return atomic.write_atomically(target, write, overwrite=overwrite)
