"""Lazy HDF5 backend: ``xr.open_dataset(path, engine="xnormcorre_hdf5", dataset="mov")``.

Opens one 3-D dataset ``(time, y, x)`` of an HDF5 file (chunked or contiguous, any
compression h5py can read) as a ``(time, y, x)`` movie without reading pixels.
Indexing reads only the selected hyperslab: ``ds.movie.isel(time=[3, 900]).values``
reads two frames.  The array holds no open file (xarray's ``CachingFileManager``
re-opens it after unpickling) and reads under xarray's ``HDF5_LOCK``, so opened
datasets pickle and work with threads, processes and dask.distributed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from . import _common as cm
from ._lazy import (
    HDF5_LOCK,
    BackendArray,
    BackendEntrypoint,
    CachingFileManager,
    lazily_indexed,
    outer_1vector_getitem,
)

__all__ = ["H5BackendArray", "H5BackendEntrypoint", "list_datasets"]

#: h5py, imported on first use (listing xarray's engines stays light).
h5py = cm.LazyModule("h5py")


def _open_h5(path: str, mode: str = "r") -> h5py.File:
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise ValueError(f"{path!r} is not a readable HDF5 file (corrupt or truncated?): {exc}") from exc


def list_datasets(h5: h5py.File | h5py.Group) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every dataset of an open HDF5 file: ``{name: (shape, dtype)}``, names without the leading "/".

    Examples
    --------
    >>> import tempfile, pathlib, h5py
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.h5"
    >>> with h5py.File(p, "w") as f:
    ...     _ = f.create_dataset("g/mov", data=np.zeros((3, 4, 5), np.uint16))
    >>> with h5py.File(p, "r") as f:
    ...     list_datasets(f)
    {'g/mov': ((3, 4, 5), 'uint16')}
    """
    out: dict[str, tuple[tuple[int, ...], str]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = (tuple(obj.shape), str(obj.dtype))

    h5.visititems(visit)
    return out


def _describe(datasets: dict[str, tuple[tuple[int, ...], str]]) -> str:
    if not datasets:
        return "it holds no dataset"
    return "available: " + ", ".join(f"{k!r} {shape} {dt}" for k, (shape, dt) in datasets.items())


def _pick_dataset(f: h5py.File, path: str, dataset: str | None) -> str:
    """Name of the movie dataset: the one asked for, or the only 3-D one."""
    if dataset is not None:
        if not isinstance(dataset, str):
            raise TypeError(f"dataset must be the name of an HDF5 dataset (str), got {dataset!r}")
        name = dataset.strip("/")
        obj = f.get(name) if name else None
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(f"HDF5 file {path!r} has no dataset {dataset!r}; {_describe(list_datasets(f))}")
        return name
    found = list_datasets(f)
    movies = [k for k, (shape, _) in found.items() if len(shape) == 3]
    if len(movies) == 1:
        return movies[0]
    what = "no 3-D dataset" if not movies else f"{len(movies)} 3-D datasets"
    raise ValueError(f"HDF5 file {path!r} has {what}; pass dataset=<name> ({_describe(found)})")


class H5BackendArray(BackendArray):
    """Lazy ``(time, y, x)`` view of an HDF5 dataset (no open handle inside).

    ``__getitem__`` accepts xarray's explicit indexers (``OUTER_1VECTOR``, h5py's own
    limit of one sorted index array per selection): only the selected hyperslab is
    read.  Thread-safe and picklable.
    """

    def __init__(
        self, *, manager: CachingFileManager, lock: Any, dataset: str, shape: tuple, dtype: Any
    ) -> None:
        self.manager = manager
        self.lock = lock
        self.dataset = dataset
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        return outer_1vector_getitem(key, self.shape, self._raw)

    def _raw(self, key: tuple) -> np.ndarray:
        sizes = []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, slice):
                sizes.append(len(range(*k.indices(n))))
            elif isinstance(k, np.ndarray):
                sizes.append(k.size)
        if 0 in sizes:  # h5py refuses empty selections
            return np.empty(tuple(sizes), self.dtype)
        with self.manager.acquire_context() as f, self.lock:
            return np.asarray(f[self.dataset][key])

    def close(self) -> None:
        """Close the file (it re-opens on the next read)."""
        self.manager.close()


class H5BackendEntrypoint(BackendEntrypoint):
    """xarray backend ``xnormcorre_hdf5``: one 3-D dataset of an HDF5 file as a lazy movie.

    Parameters of ``xr.open_dataset(filename_or_obj, engine="xnormcorre_hdf5", ...)``:

    filename_or_obj : str or path
        The HDF5 file (``.h5``, ``.hdf5``, MATLAB v7.3 ``.mat``, ...).
    dataset : str, optional
        Path of the movie inside the file (e.g. ``"mov"`` or ``"/data/imaging"``),
        shaped ``(time, y, x)``.  Default: the file's only 3-D dataset.
    fps : float, optional
        Frame rate (Hz).  If given, ``time`` is in seconds (``frame / fps``) and a
        ``frame`` coordinate holds the index; otherwise ``time`` is the frame index.
    lock : lock, optional
        Lock held while reading (default: xarray's ``HDF5_LOCK``).
    drop_variables : str or list of str, optional
        Variables or coordinates to leave out.

    The Dataset holds one variable ``movie (time, y, x)`` of the dataset's dtype,
    with ``encoding["preferred_chunks"]`` set from the HDF5 chunk shape
    (``{"time": 1}`` for a contiguous dataset).

    Examples
    --------
    >>> import tempfile, pathlib, h5py, xarray as xr
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.h5"
    >>> with h5py.File(p, "w") as f:
    ...     _ = f.create_dataset("mov", data=np.arange(60, dtype=np.uint16).reshape(5, 3, 4), chunks=(2, 3, 4))
    >>> ds = xr.open_dataset(p, engine=H5BackendEntrypoint, dataset="mov")
    >>> ds.movie.shape, ds.movie.encoding["preferred_chunks"]
    ((5, 3, 4), {'time': 2, 'y': 3, 'x': 4})
    >>> ds.movie.isel(time=[1, 4], y=0, x=0).values
    array([12, 48], dtype=uint16)
    >>> ds.close()
    """

    description: ClassVar[str] = "Lazy (time, y, x) movies from a 3-D HDF5 dataset (xnormcorre, via h5py)"
    url: ClassVar[str] = "https://github.com/xnormcorre/xnormcorre"
    open_dataset_parameters: ClassVar[tuple[str, ...]] = (
        "filename_or_obj",
        "drop_variables",
        "dataset",
        "fps",
        "lock",
    )

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        dataset: str | None = None,
        fps: float | None = None,
        lock: Any = None,
    ) -> xr.Dataset:
        """Open an HDF5 movie lazily; see the class docstring for the parameters."""
        fps = cm.check_fps(fps)
        path = cm.as_path_or_none(filename_or_obj)
        if path is None:
            raise TypeError(
                f"the xnormcorre_hdf5 engine opens a path to an HDF5 file, got {type(filename_or_obj).__name__}"
            )
        path = os.path.abspath(os.path.expanduser(path))
        cm.check_file(path, "HDF5")
        manager = CachingFileManager(_open_h5, path, mode="r")
        try:
            with manager.acquire_context() as f:
                name = _pick_dataset(f, path, dataset)
                dset = f[name]
                if dset.ndim != 3:
                    raise ValueError(
                        f"HDF5 dataset {name!r} of {path!r} has shape {dset.shape}; a movie needs 3 dims "
                        f"(time, y, x) ({_describe(list_datasets(f))})"
                    )
                if dset.dtype.kind not in "iuf":
                    raise TypeError(f"HDF5 dataset {name!r} of {path!r} has non-numeric dtype {dset.dtype}")
                shape, dtype, chunks = tuple(dset.shape), dset.dtype, dset.chunks
        except BaseException:
            manager.close()
            raise
        array = H5BackendArray(
            manager=manager, lock=HDF5_LOCK if lock is None else lock, dataset=name, shape=shape, dtype=dtype
        )
        preferred = dict(zip(("time", "y", "x"), chunks, strict=True)) if chunks else {"time": 1}
        attrs = {
            "long_name": "fluorescence",
            "units": "a.u.",
            "source": path,
            "source_format": "HDF5",
            "hdf5_dataset": "/" + name,
        }
        encoding = {"preferred_chunks": preferred, "source": path, "dtype": array.dtype}
        ds = cm.movie_dataset(
            lazily_indexed(array),
            array.shape,
            fps=fps,
            attrs=attrs,
            encoding=encoding,
            drop_variables=cm.drop_names(drop_variables),
        )
        ds.set_close(array.close)
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """True for an HDF5 file that is not named like netCDF (``.nc``), or an HDF5-named path."""
        path = cm.as_path_or_none(filename_or_obj)
        if path is None:
            return False
        lower = path.lower()
        if lower.endswith(cm.NETCDF_EXTENSIONS):
            return False  # leave netCDF-4 files to the netCDF engines
        if os.path.isfile(path):
            return cm.hdf5_magic_at(path)
        return lower.endswith(cm.HDF5_EXTENSIONS)
