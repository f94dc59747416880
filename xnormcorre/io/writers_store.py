"""The NetCDF-4 and zarr writers :func:`to_netcdf` and :func:`to_zarr`: a movie (cast to an
output dtype, with a warning when many pixels saturate) or a result Dataset, written
atomically by xarray, dask chunk by dask chunk; a movie to zarr also resumably
(:class:`ZarrLayout`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..schema import CORRECTED
from . import atomic
from ._common import default_time_chunk
from .blocks import cast_movie, lazy_clipped, out_dtype, stream_movie, warn_clipped

__all__ = ["ZarrLayout", "as_dataset", "dask_compute", "to_netcdf", "to_zarr"]


@contextlib.contextmanager
def _dask_progress(desc: str, enabled: bool) -> Iterator[None]:
    """A tqdm bar over the dask tasks computed inside the block."""
    if not enabled:
        yield
        return
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc, unit="task", leave=True):
        yield


def dask_compute(delayed, *extra: Any) -> tuple:
    """Compute a delayed write together with ``extra`` (lazy values sharing its dask graph:
    the shared tasks run once); returns ``extra`` computed."""
    from concurrent.futures import ThreadPoolExecutor

    import dask
    import dask.threaded

    if dask.base.get_scheduler(collections=[delayed]) is not dask.threaded.get:
        return tuple(dask.compute(delayed, *extra)[1:])
    # dask's threaded scheduler raises at the first failed task while the others still
    # run; an own pool is shut down before returning, so that no task writes into the
    # temporary after the caller has removed it (a full disk in a zarr store).
    pool = ThreadPoolExecutor(dask.config.get("num_workers", None) or dask.system.CPU_COUNT)
    try:
        return tuple(dask.compute(delayed, *extra, scheduler="threads", pool=pool)[1:])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def as_dataset(obj: xr.DataArray | xr.Dataset, dtype: Any, attrs: dict | None) -> tuple[xr.Dataset, Any]:
    """The Dataset to write and the (lazy) number of pixels that the cast to ``dtype`` clips.

    A Dataset is written as it is; a movie (DataArray) is cast to ``dtype`` (integers
    rounded and clipped, NaN -> 0) and gets the Dataset attributes ``attrs``.
    """
    if isinstance(obj, xr.Dataset):
        return obj, 0
    dtype = None if dtype is None else out_dtype(dtype)
    ds = cast_movie(obj, dtype).rename(obj.name or CORRECTED).to_dataset()
    ds.attrs = dict(attrs or {})
    for name in ds.variables:
        ds[name].encoding = {}
    return ds, lazy_clipped(obj, dtype)


def _write_dataset(
    obj: xr.DataArray | xr.Dataset,
    path: str | os.PathLike,
    fmt: str,
    *,
    overwrite: bool,
    dtype: Any,
    attrs: dict | None,
    progress: bool,
    compute: Callable | None,
) -> Path:
    store = fmt == "zarr"
    target = atomic.check_target(path, overwrite, store=store)
    ds, clipped = as_dataset(obj, dtype, attrs)
    n_clipped: list[int] = []

    def write(tmp: Path) -> None:
        if store:
            delayed = ds.to_zarr(tmp, mode="w-", compute=False, consolidated=True, zarr_format=2)
        else:
            delayed = ds.to_netcdf(tmp, compute=False, engine="netcdf4")
        with _dask_progress(f"to_{fmt} {target.name}", progress):
            n_clipped.append(int((compute or dask_compute)(delayed, clipped)[0]))

    atomic.write_atomically(target, write, overwrite=overwrite, store=store)
    if not isinstance(obj, xr.Dataset) and dtype is not None:
        warn_clipped(n_clipped[0], obj.size, np.dtype(dtype), target)
    return target


def to_netcdf(
    obj: xr.DataArray | xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: Any = None,
    attrs: dict | None = None,
    progress: bool = False,
    _compute: Callable | None = None,
) -> Path:
    """Write a movie (DataArray, cast to ``dtype``) or a result Dataset to NetCDF-4, atomically.

    An integer ``dtype`` rounds and clips the movie (NaN -> 0), with a ``UserWarning``
    when more than 0.1 % of the pixels saturate.

    Examples
    --------
    >>> import pathlib, tempfile, xarray as xr
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.nc"
    >>> _ = to_netcdf(xr.Dataset({"a": ("t", [1.0, 2.0])}), p)
    >>> xr.open_dataset(p).a.values.tolist()
    [1.0, 2.0]
    """
    return _write_dataset(
        obj,
        path,
        "netcdf",
        overwrite=overwrite,
        dtype=dtype,
        attrs=attrs,
        progress=progress,
        compute=_compute,
    )


def to_zarr(
    obj: xr.DataArray | xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: Any = None,
    attrs: dict | None = None,
    progress: bool = False,
    resume: bool = False,
    _compute: Callable | None = None,
) -> Path:
    """Write a movie (DataArray, cast to ``dtype``) or a Dataset to a zarr (v2) store, atomically.

    An integer ``dtype`` rounds and clips the movie (NaN -> 0), with a ``UserWarning``
    when more than 0.1 % of the pixels saturate.  ``resume=True`` (a ``(time, y, x)``
    movie) writes it resumably, as :func:`xnormcorre.to_tiff` does: an interrupted write
    of the same movie is continued from its first missing frame, and the store holds the
    same values and attributes as an uninterrupted write.

    Examples
    --------
    >>> import pathlib, tempfile, xnormcorre, xarray as xr
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=6, shape=(16, 16), max_shift=1).chunk({"time": 3})
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.zarr"
    >>> _ = to_zarr(movie, p, resume=True)
    >>> bool((xr.open_zarr(p).movie == movie.astype("float32")).all())
    True
    """
    from .resumable import check_resume

    if check_resume(resume):
        if isinstance(obj, xr.Dataset):
            raise ValueError("resume=True writes a movie (a DataArray), not a Dataset")
        layout = ZarrLayout(attrs)
        return stream_movie(obj, path, dtype, overwrite, None, resume=True, layout=layout, progress=progress)[
            0
        ]
    return _write_dataset(
        obj, path, "zarr", overwrite=overwrite, dtype=dtype, attrs=attrs, progress=progress, compute=_compute
    )


class ZarrLayout:
    """The zarr store of :func:`to_zarr` for a resumable write of a movie: xarray writes the
    metadata, coordinates and attributes (the movie's zarr chunks are its dask time chunks,
    or of about 2**24 pixels), then the frames are written into the zarr array in place."""

    fmt = "zarr"
    store = True

    def __init__(self, attrs: dict | None) -> None:
        self.attrs = attrs

    def _chunks(self, movie: xr.DataArray) -> tuple[int, ...]:
        if movie.chunks is not None:
            return tuple(int(c) for c in movie.chunks[0])
        n = movie.shape[0]
        step = default_time_chunk(tuple(movie.shape))
        return tuple(min(step, n - a) for a in range(0, n, step))

    def options(self, movie: xr.DataArray, dtype: np.dtype) -> dict[str, Any]:
        return {"time_chunks": list(self._chunks(movie)), "attrs": json_attrs(self.attrs)}

    def versions(self) -> dict[str, str]:
        import zarr

        return {"zarr": zarr.__version__, "xarray": xr.__version__}

    def create(self, part: Path, movie: xr.DataArray, dtype: np.dtype) -> dict[str, Any]:
        import dask.array as dsa

        chunks = (self._chunks(movie), *((s,) for s in movie.shape[1:]))
        empty = movie.copy(data=dsa.zeros(movie.shape, chunks=chunks, dtype=dtype))
        ds, _ = as_dataset(empty, None, self.attrs)
        ds.to_zarr(part, mode="w-", compute=False, consolidated=True, zarr_format=2)
        return {"variable": str(next(iter(ds.data_vars)))}

    @contextlib.contextmanager
    def filler(
        self, part: Path, shape: tuple[int, int, int], dtype: np.dtype, info: dict[str, Any]
    ) -> Iterator[_ZarrFiller]:
        import zarr

        yield _ZarrFiller(zarr.open_array(str(part / info["variable"]), mode="r+", zarr_format=2))

    def read(
        self, part: Path, shape: tuple[int, int, int], dtype: np.dtype, info: dict[str, Any], index: int
    ) -> np.ndarray:
        import zarr

        return zarr.open_array(str(part / info["variable"]), mode="r", zarr_format=2)[index]


class _ZarrFiller:
    def __init__(self, array: Any) -> None:
        self.array = array

    def put(self, start: int, block: np.ndarray) -> None:
        self.array[start : start + block.shape[0]] = block

    def sync(self) -> None:
        return None  # the chunk files are complete once written (a process killed keeps them)


def json_attrs(attrs: dict | None) -> str:
    """``attrs`` as a canonical string (for comparing the attributes of two writes)."""
    import json

    return json.dumps(attrs or {}, sort_keys=True, default=str)
