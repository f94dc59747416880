"""Helpers shared by the TIFF, HDF5 and Scanbox backends: paths, magic bytes, keys, the Dataset."""

from __future__ import annotations

import errno
import importlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..schema import MOVIE_DIMS, MOVIE_NAME
from ..validate import check_fps  # noqa: F401  (re-exported for the backends: cm.check_fps)
from ._lazy import BackendArray, lazily_indexed
from ._meta import Acquisition, apply_acquisition


class LazyModule:
    """A module imported on first attribute access, so that listing xarray's backends
    (which imports every backend's entry point) does not import tifffile or h5py.

    Examples
    --------
    >>> json = LazyModule("json")
    >>> json.dumps([1])
    '[1]'
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TIFF_EXTENSIONS = (".tif", ".tiff", ".btf", ".tf8", ".tf2", ".lsm", ".stk")
HDF5_EXTENSIONS = (".h5", ".hdf5", ".hdf", ".he5", ".mat")
NETCDF_EXTENSIONS = (".nc", ".nc4", ".cdf", ".netcdf")
#: The project page every backend names (``BackendEntrypoint.url``).
URL = "https://github.com/xnormcorre/xnormcorre"

#: Target number of pixels per default time chunk (64 MiB as float32).
_CHUNK_PIXELS = 2**24


def default_time_chunk(shape: tuple[int, int, int], preferred: int = 1) -> int:
    """Frames per default dask chunk: a power of two near 2**24 pixels, a multiple of ``preferred``.

    Examples
    --------
    >>> default_time_chunk((10_000, 512, 512))
    64
    >>> default_time_chunk((10_000, 512, 512), preferred=100)
    100
    >>> default_time_chunk((20, 128, 128))
    20
    """
    n, h, w = shape
    frames = max(1, _CHUNK_PIXELS // max(1, h * w))
    frames = 1 << (frames.bit_length() - 1)
    preferred = max(1, int(preferred))
    if preferred > 1:
        frames = max(preferred, frames // preferred * preferred)
    return max(1, min(frames, n))


def read_magic(path: str | os.PathLike, n: int = 8) -> bytes:
    """First ``n`` bytes of a file (b"" when it cannot be read, ``PermissionError`` if it may not be)."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except PermissionError:
        raise
    except OSError:
        return b""


def hdf5_magic_at(path: str | os.PathLike) -> bool:
    """True if the HDF5 signature is at offset 0, 512, 1024, ... (user block) of the file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = 0
            while offset + 8 <= size:
                f.seek(offset)
                if f.read(8) == HDF5_MAGIC:
                    return True
                offset = 512 if offset == 0 else 2 * offset
    except OSError:
        return False
    return False


def is_tiff_magic(head: bytes) -> bool:
    """True if ``head`` starts with a TIFF or BigTIFF header."""
    return head[:4] in TIFF_MAGIC


def as_path_or_none(obj: Any) -> str | None:
    """``obj`` as a path string if it is one, else None (file objects, lists, stores)."""
    if isinstance(obj, (str, os.PathLike)):
        return os.fspath(obj)
    return None


def engine_path(obj: Any, engine: str, what: str) -> str:
    """The absolute path ``obj`` names, or ``TypeError`` saying that the ``engine`` opens
    a path to ``what``.

    Examples
    --------
    >>> engine_path(b"m.h5", "xnormcorre_hdf5", "an HDF5 file")
    Traceback (most recent call last):
    ...
    TypeError: the xnormcorre_hdf5 engine opens a path to an HDF5 file, got bytes
    """
    path = as_path_or_none(obj)
    if path is None:
        raise TypeError(f"the {engine} engine opens a path to {what}, got {type(obj).__name__}")
    return os.path.abspath(os.path.expanduser(path))


def check_file(path: str | os.PathLike, what: str) -> Path:
    """Raise a clear error unless ``path`` is an existing, non-empty regular file."""
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} file not found: {str(p)!r}")
    if p.is_dir():
        raise IsADirectoryError(
            f"{str(p)!r} is a directory, not a {what} file; to open its TIFF files as one movie, "
            f"pass a glob such as {os.path.join(str(p), '*.tif')!r} or a list of files"
        )
    if not os.access(p, os.R_OK):
        raise PermissionError(errno.EACCES, f"Permission denied: cannot read the {what} file", str(p))
    if p.stat().st_size == 0:
        raise ValueError(f"{what} file {str(p)!r} is empty (0 bytes)")
    return p


def drop_names(drop_variables: str | Iterable[str] | None) -> set[str]:
    """``drop_variables`` as a set of names."""
    if drop_variables is None:
        return set()
    if isinstance(drop_variables, str):
        return {drop_variables}
    return set(drop_variables)


# --------------------------------------------------------------------------- raw keys
def frame_indices(key: int | slice | np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """Frame numbers selected along time by one raw key, and whether time is dropped.

    Examples
    --------
    >>> frame_indices(slice(2, 8, 3), 10)
    (array([2, 5]), False)
    >>> frame_indices(4, 10)
    (array([4]), True)
    """
    if isinstance(key, (int, np.integer)):
        i = int(key)
        return np.array([i + n if i < 0 else i], dtype=np.int64), True
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64), False
    arr = np.asarray(key, dtype=np.int64).ravel()
    return np.where(arr < 0, arr + n, arr), False


def index_frames(frames: np.ndarray, ky: Any, kx: Any, squeeze_time: bool) -> np.ndarray:
    """Apply the ``y``/``x`` parts of a raw key to frames ``(n, H, W)`` read whole."""
    out = frames[:, ky]
    out = out[:, kx] if isinstance(ky, (int, np.integer)) else out[:, :, kx]
    return out[0] if squeeze_time else out


def runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted frame numbers into ``(start, stop)`` runs of consecutive frames.

    Examples
    --------
    >>> runs(np.array([0, 1, 2, 7, 9, 10]))
    [(0, 3), (7, 8), (9, 11)]
    """
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [indices.size]])
    return [(int(indices[a]), int(indices[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


# --------------------------------------------------------------------------- dataset
def movie_dataset(
    data: Any,
    shape: tuple[int, ...],
    *,
    fps: float | None,
    attrs: Mapping[str, Any],
    encoding: Mapping[str, Any],
    drop_variables: set[str],
    channels: Mapping[str, Any] | None = None,
    planes: int | None = None,
) -> xr.Dataset:
    """Dataset with one ``(time, y, x)`` variable ``"movie"`` and labeled coordinates.

    ``time`` is the frame index (int64, units "1"), or seconds (float64, units "s")
    when ``fps`` is given, in which case a ``frame`` coordinate keeps the index.
    With ``channels`` (the ``channel`` coordinates), ``shape`` is ``(time, channel,
    y, x)`` and so are the movie's dims; with ``planes`` (their number), ``(time, z, y, x)``
    with a plane-index coordinate ``z``.
    """
    if channels is not None or planes is not None:
        n, _, h, w = shape
    else:
        n, h, w = shape
    frame = np.arange(n, dtype=np.int64)
    coords: dict[str, Any] = {}
    if fps is None:
        coords["time"] = ("time", frame, {"long_name": "frame index", "units": "1", "axis": "T"})
    else:
        coords["time"] = (
            "time",
            frame / fps,
            {"standard_name": "time", "long_name": "time", "units": "s", "axis": "T"},
        )
        coords["frame"] = ("time", frame, {"long_name": "frame index", "units": "1"})
    coords["y"] = (
        "y",
        np.arange(h, dtype=np.int64),
        {"long_name": "pixel row", "units": "pixel", "axis": "Y"},
    )
    coords["x"] = (
        "x",
        np.arange(w, dtype=np.int64),
        {"long_name": "pixel column", "units": "pixel", "axis": "X"},
    )
    dims = MOVIE_DIMS
    if channels is not None:
        coords.update(channels)
        dims = (MOVIE_DIMS[0], "channel", *MOVIE_DIMS[1:])
    elif planes is not None:
        coords["z"] = (
            "z",
            np.arange(planes, dtype=np.int64),
            {"long_name": "plane index", "units": "1", "axis": "Z"},
        )
        dims = (MOVIE_DIMS[0], "z", *MOVIE_DIMS[1:])
    coords = {k: v for k, v in coords.items() if k not in drop_variables}
    data_vars = {}
    if MOVIE_NAME not in drop_variables:
        var = xr.Variable(dims, data, attrs=dict(attrs))
        var.encoding = dict(encoding)
        data_vars[MOVIE_NAME] = var
    ds = xr.Dataset(data_vars, coords=coords)
    if fps is not None:
        ds.attrs["fps"] = fps
    return ds


def backend_dataset(
    array: BackendArray,
    *,
    source: str,
    source_format: str,
    attrs: Mapping[str, Any],
    preferred_chunks: Mapping[str, int],
    fps: float | None,
    drop_variables: str | Iterable[str] | None,
    file: str | None = None,
    acquisition: Acquisition | None = None,
    channels: Mapping[str, Any] | None = None,
    planes: int | None = None,
) -> xr.Dataset:
    """The Dataset a backend returns: ``array`` lazily indexed as the variable ``movie``.

    The movie's attrs are ``long_name``, ``units``, ``source``, ``source_format``, then
    ``attrs``; its encoding holds ``preferred_chunks``, the ``source`` file (``file``,
    default ``source``) and the dtype.  ``fps`` is the user's frame rate; with an
    ``acquisition`` (the file's metadata) its frame rate is used when ``fps`` is None and
    the rest is attached by :func:`~xnormcorre.io._meta.apply_acquisition`.  Closing the
    Dataset closes ``array``.  ``channels`` and ``planes`` as in :func:`movie_dataset`.
    """
    movie_attrs = {
        "long_name": "fluorescence",
        "units": "a.u.",
        "source": source,
        "source_format": source_format,
        **attrs,
    }
    encoding = {"preferred_chunks": dict(preferred_chunks), "source": file or source, "dtype": array.dtype}
    ds = movie_dataset(
        lazily_indexed(array),
        array.shape,
        fps=fps if fps is not None or acquisition is None else acquisition.fps,
        attrs=movie_attrs,
        encoding=encoding,
        drop_variables=drop_names(drop_variables),
        channels=channels,
        planes=planes,
    )
    if acquisition is not None:
        ds = apply_acquisition(ds, acquisition, user_fps=fps, var=MOVIE_NAME)
    ds.set_close(array.close)
    return ds
