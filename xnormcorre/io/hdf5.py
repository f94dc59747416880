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
    outer_1vector_getitem,
)
from ._meta import channel_coords

__all__ = [
    "H5BackendArray",
    "H5BackendEntrypoint",
    "canonical_order",
    "check_dims",
    "guess_dims",
    "list_datasets",
]

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


def _pick_dataset(f: h5py.File, path: str, dataset: str | None, ndim: int = 3) -> str:
    """Name of the movie dataset: the one asked for, or the only ``ndim``-D one (3-D by
    default; 4-D for a volumetric movie, when ``dims`` names 4 axes)."""
    if dataset is not None:
        if not isinstance(dataset, str):
            raise TypeError(f"dataset must be the name of an HDF5 dataset (str), got {dataset!r}")
        name = dataset.strip("/")
        obj = f.get(name) if name else None
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(f"HDF5 file {path!r} has no dataset {dataset!r}; {_describe(list_datasets(f))}")
        return name
    found = list_datasets(f)
    movies = [k for k, (shape, _) in found.items() if len(shape) == ndim]
    if not movies and ndim == 3:  # a file holding one 4-D (volumetric) movie
        movies = [k for k, (shape, _) in found.items() if len(shape) == 4]
        ndim = 4
    if len(movies) == 1:
        return movies[0]
    what = f"no {ndim}-D dataset" if not movies else f"{len(movies)} {ndim}-D datasets"
    raise ValueError(f"HDF5 file {path!r} has {what}; pass dataset=<name> ({_describe(found)})")


#: Names a dataset axis may take in ``dims=``.
AXIS_NAMES = ("time", "z", "channel", "y", "x")
_TIME_LABELS = ("t", "time", "frame", "frames", "timepoint")


def _labels(dset: h5py.Dataset) -> tuple[str, ...] | None:
    """The dataset's HDF5 dimension labels mapped to ``AXIS_NAMES`` (None unless every axis
    has a recognised label)."""
    try:
        raw = [str(dset.dims[i].label).strip().lower() for i in range(dset.ndim)]
    except Exception:  # noqa: BLE001 - no dimension scales
        return None
    out = []
    for lab in raw:
        name = "time" if lab in _TIME_LABELS else lab
        if name not in AXIS_NAMES:
            return None
        out.append(name)
    return tuple(out) if len(set(out)) == len(out) else None


def check_dims(dims: Any, ndim: int, where: str) -> tuple[str, ...]:
    """Validate ``dims=``: one distinct name per axis of the dataset, ``time``, ``y``, ``x``
    among them, the fourth (if any) ``z`` or ``channel``."""
    if isinstance(dims, str) or not isinstance(dims, tuple | list):
        raise TypeError(f"dims must be a tuple of axis names such as ('y', 'x', 'time'), got {dims!r}")
    dims = tuple(str(d) for d in dims)
    ok = (
        len(dims) == ndim
        and len(set(dims)) == ndim
        and set(dims) <= set(AXIS_NAMES)
        and {"time", "y", "x"} <= set(dims)
        and not {"z", "channel"} <= set(dims)
    )
    if not ok:
        raise ValueError(
            f"dims must name the {ndim} axes of {where} in file order, each once, with 'time', 'y' "
            f"and 'x' (and 'z' or 'channel' for a 4-D dataset), e.g. ('y', 'x', 'time'); got {dims!r}"
        )
    return dims


def guess_dims(dset: h5py.Dataset, where: str) -> tuple[str, ...]:
    """The axes of a movie dataset in file order, when the file tells them unambiguously.

    In order: HDF5 dimension labels (``t``/``time``/``frame``, ``z``, ``channel``, ``y``,
    ``x``); a MATLAB v7.3 variable (``MATLAB_class`` attribute), stored transposed, so
    NoRMCorre's ``Y(y, x, t)`` reads as ``(time, x, y)``; a 4-D dataset is ``(time, z, y,
    x)``; a 3-D dataset is ``(time, y, x)`` unless its chunks or its shape say time may
    be last: chunks holding whole ``(y, x)`` planes of the first two axes, or a last axis
    shorter than the other two while the first is not the longest (e.g. ``(128, 256, 20)``,
    a ``(y, x, time)`` movie of 20 frames) -- then ``ValueError`` asks for ``dims=``.
    """
    labels = _labels(dset)
    if labels is not None and {"time", "y", "x"} <= set(labels):
        return labels
    shape = tuple(dset.shape)
    if "MATLAB_class" in dset.attrs and dset.ndim == 3:
        return ("time", "x", "y")
    if dset.ndim == 4:
        return ("time", "z", "y", "x")
    chunks = dset.chunks
    time_last = False
    if chunks is not None and chunks[1:] != shape[1:] and chunks[:2] == shape[:2]:
        time_last = True
    elif chunks is None or chunks[1:] != shape[1:]:
        time_last = shape[2] < min(shape[0], shape[1]) and shape[0] < max(shape[1], shape[2])
    if time_last:
        raise ValueError(
            f"cannot tell which axis of {where} (shape {shape}) is time: it may be stored "
            "(y, x, time), e.g. by MATLAB; pass dims= with the axes in file order, e.g. "
            f"open_movie(path, dims=('y', 'x', 'time')) or dims=('time', 'y', 'x')"
        )
    return ("time", "y", "x")


def canonical_order(dims: tuple[str, ...]) -> tuple[int, ...]:
    """File axes in the movie's order ``(time, [z | channel,] y, x)``.

    Examples
    --------
    >>> canonical_order(("y", "x", "time")), canonical_order(("time", "z", "y", "x"))
    ((2, 0, 1), (0, 1, 2, 3))
    """
    want = [d for d in ("time", "z", "channel", "y", "x") if d in dims]
    return tuple(dims.index(d) for d in want)


class H5BackendArray(BackendArray):
    """Lazy ``(time, y, x)`` view of an HDF5 dataset (no open handle inside).

    ``__getitem__`` accepts xarray's explicit indexers (``OUTER_1VECTOR``, h5py's own
    limit of one sorted index array per selection): only the selected hyperslab is
    read.  Thread-safe and picklable.
    """

    def __init__(
        self,
        *,
        manager: CachingFileManager,
        lock: Any,
        dataset: str,
        shape: tuple,
        dtype: Any,
        order: tuple[int, ...] | None = None,
    ) -> None:
        self.manager = manager
        self.lock = lock
        self.dataset = dataset
        #: the file axis of each of the array's axes (identity: stored in the movie's order)
        self.order = tuple(range(len(shape))) if order is None else tuple(int(a) for a in order)
        self.shape = tuple(int(shape[a]) for a in self.order)
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
        if self.order == tuple(range(len(self.order))):
            with self.manager.acquire_context() as f, self.lock:
                return np.asarray(f[self.dataset][key])
        # a transposed layout: read the hyperslab in file order, then reorder its axes
        dropped = [i for i, k in enumerate(key) if not isinstance(k, slice | np.ndarray)]
        full = tuple(slice(int(k), int(k) + 1) if i in dropped else k for i, k in enumerate(key))
        file_key = [slice(None)] * len(full)
        for i, a in enumerate(self.order):
            file_key[a] = full[i]
        with self.manager.acquire_context() as f, self.lock:
            raw = np.asarray(f[self.dataset][tuple(file_key)])
        out = np.transpose(raw, self.order)
        return out[tuple(0 if i in dropped else slice(None) for i in range(len(full)))]

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
        shaped ``(time, y, x)`` or, volumetric, ``(time, z, y, x)``.  Default: the
        file's only 3-D dataset (or its only 4-D one).
    dims : tuple of str, optional
        The dataset's axes in file order, from ``time``, ``y``, ``x`` and for a 4-D
        dataset ``z`` or ``channel``, e.g. ``("y", "x", "time")`` for a movie stored
        time-last; the movie is then read in ``(time, [z | channel,] y, x)`` order.
        Default: from the file when it is unambiguous (see :func:`guess_dims`),
        otherwise ``ValueError`` asks for it.
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
    url: ClassVar[str] = cm.URL
    open_dataset_parameters: ClassVar[tuple[str, ...]] = (
        "filename_or_obj",
        "drop_variables",
        "dataset",
        "fps",
        "lock",
        "dims",
    )

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        dataset: str | None = None,
        fps: float | None = None,
        lock: Any = None,
        dims: tuple[str, ...] | None = None,
    ) -> xr.Dataset:
        """Open an HDF5 movie lazily; see the class docstring for the parameters."""
        fps = cm.check_fps(fps)
        if dims is not None:
            n = len(dims) if isinstance(dims, tuple | list) and len(dims) in (3, 4) else 3
            dims = check_dims(dims, n, "an HDF5 movie")
        path = cm.engine_path(filename_or_obj, "xnormcorre_hdf5", "an HDF5 file")
        cm.check_file(path, "HDF5")
        manager = CachingFileManager(_open_h5, path, mode="r")
        try:
            with manager.acquire_context() as f:
                name = _pick_dataset(f, path, dataset, 3 if dims is None else len(dims))
                dset = f[name]
                where = f"HDF5 dataset {name!r} of {path!r}"
                if dset.ndim not in (3, 4):
                    raise ValueError(
                        f"{where} has shape {dset.shape}; a movie needs 3 dims (time, y, x) or 4 "
                        f"(time, z, y, x) ({_describe(list_datasets(f))})"
                    )
                if dset.dtype.kind not in "iuf":
                    raise TypeError(f"{where} has non-numeric dtype {dset.dtype}")
                dims = guess_dims(dset, where) if dims is None else check_dims(dims, dset.ndim, where)
                shape, dtype, chunks = tuple(dset.shape), dset.dtype, dset.chunks
        except BaseException:
            manager.close()
            raise
        order = canonical_order(dims)
        array = H5BackendArray(
            manager=manager,
            lock=HDF5_LOCK if lock is None else lock,
            dataset=name,
            shape=shape,
            dtype=dtype,
            order=order,
        )
        names = tuple(dims[a] for a in order)
        preferred = {n: chunks[a] for n, a in zip(names, order, strict=True)} if chunks else {"time": 1}
        return cm.backend_dataset(
            array,
            source=path,
            source_format="HDF5",
            attrs={"hdf5_dataset": "/" + name, "hdf5_dims": list(dims)},
            preferred_chunks=preferred,
            fps=fps,
            drop_variables=drop_variables,
            planes=array.shape[1] if "z" in names else None,
            channels=channel_coords(array.shape[1], None) if "channel" in names else None,
        )

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
