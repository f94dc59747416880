"""Streamed writers: :func:`to_tiff`, :func:`to_hdf5` (movies), :func:`to_netcdf` and
:func:`to_zarr` (movies or result Datasets), and :func:`write_movie` (any of them by format),
all through one atomic writer (:func:`write_atomically`).

The movie writers write a ``(time, y, x)`` movie -- NumPy, lazily indexed or dask-backed,
e.g. the lazy ``corrected`` of :func:`xnormcorre.rigid` -- block by block
(:mod:`xnormcorre.io.blocks`), with a tqdm progress bar; memory stays at a few blocks
whatever the movie length.  The file is written under a temporary name in the target
folder and renamed only when complete (:mod:`xnormcorre.io.atomic`): an error or an
interrupt mid-way leaves no file at ``path`` and no temporary file.

The writers live in :mod:`~xnormcorre.io.writers_tiff`, :mod:`~xnormcorre.io.writers_hdf5`
and :mod:`~xnormcorre.io.writers_store` (NetCDF, zarr); this module gathers them.
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from .atomic import is_store, write_atomically
from .blocks import cast_block, cast_movie, count_clipped, stream_movie
from .writers_hdf5 import Hdf5Layout, check_dataset_name, to_hdf5
from .writers_store import ZarrLayout, dask_compute, to_netcdf, to_zarr
from .writers_tiff import TiffLayout, to_tiff

__all__ = [
    "MOVIE_FORMATS",
    "RESUMABLE_FORMATS",
    "cast_block",
    "cast_movie",
    "count_clipped",
    "is_store",
    "to_hdf5",
    "to_netcdf",
    "to_tiff",
    "to_zarr",
    "write_atomically",
    "write_movie",
]

#: Formats of :func:`write_movie`.
MOVIE_FORMATS = ("tiff", "hdf5", "zarr", "netcdf")
#: Formats :func:`write_movie` can write resumably (``resume=True``).
RESUMABLE_FORMATS = ("tiff", "hdf5", "zarr")


def write_movie(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    fmt: str,
    overwrite: bool = False,
    dtype: Any = None,
    dataset: str = "mov",
    attrs: dict | None = None,
    progress: bool = True,
    along: xr.Dataset | None = None,
    resume: bool = False,
) -> xr.Dataset | None:
    """Write a movie in ``fmt`` (one of :data:`MOVIE_FORMATS`), atomically, block by block.

    ``along`` holds time-aligned variables that share the movie's dask graph (e.g.
    ``shifts`` and ``correlation`` of a lazy :func:`xnormcorre.rigid` result): they are
    computed in the same pass as the frames -- every shared task (reading, registering,
    warping a chunk) runs once -- and returned, loaded; None without ``along``.
    ``attrs`` are the Dataset attributes of a zarr/NetCDF output.  An integer ``dtype``
    that saturates more than 0.1 % of the pixels gives a ``UserWarning``.  ``resume``
    (``tiff``, ``hdf5`` and ``zarr``): write resumably and continue an interrupted write of the same
    movie (see :func:`xnormcorre.to_tiff`).
    """
    if fmt not in MOVIE_FORMATS:
        raise ValueError(f"fmt must be one of {MOVIE_FORMATS}, got {fmt!r}")
    if resume and fmt not in RESUMABLE_FORMATS:
        raise ValueError(f"resume=True applies to the formats {RESUMABLE_FORMATS}, not {fmt!r}")
    if resume and fmt == "zarr":
        layout = ZarrLayout(attrs)
        return stream_movie(
            da, path, dtype, overwrite, None, along, resume=True, layout=layout, progress=progress
        )[1]
    if fmt in ("zarr", "netcdf"):
        writer = to_zarr if fmt == "zarr" else to_netcdf
        if along is None:
            writer(da, path, overwrite=overwrite, dtype=dtype, attrs=attrs, progress=progress)
            return None
        extra: list = []

        def compute(delayed, *more: Any) -> tuple:
            computed = dask_compute(delayed, along, *more)
            extra.append(computed[0])
            return tuple(computed[1:])

        writer(da, path, overwrite=overwrite, dtype=dtype, attrs=attrs, progress=progress, _compute=compute)
        return extra[0].load()
    if fmt == "hdf5":
        check_dataset_name(dataset)

    layout = TiffLayout(None) if fmt == "tiff" else Hdf5Layout(dataset)
    write = layout.writer(progress=progress, overwrite=overwrite)
    return stream_movie(
        da, path, dtype, overwrite, write, along, resume=resume, layout=layout, progress=progress
    )[1]
