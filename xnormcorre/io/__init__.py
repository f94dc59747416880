"""Lazy movie I/O: TIFF, HDF5 and Scanbox xarray backends, :func:`open_movie`, streamed writers.

``xr.open_dataset(path, engine="xnormcorre_tiff" | "xnormcorre_hdf5" | "xnormcorre_sbx",
chunks={"time": N})`` opens a movie without reading pixels; :func:`open_movie` picks the
engine from the file's magic bytes (``.sbx`` by name) and returns the ``movie``
DataArray, dask-backed in time chunks;
:func:`to_tiff` and :func:`to_hdf5` write a (lazy) movie chunk by chunk.

Opened datasets pickle (no open file inside; each process re-opens the file), so they
work with dask.distributed worker processes, e.g.
``LocalCluster(processes=True, n_workers=4, threads_per_worker=1)``.  JAX is
multithreaded and must never be ``fork``-ed once initialized: keep distributed's default
``spawn`` start method (``distributed.worker.multiprocessing-method``), or use
``forkserver``, and create your own process pools with
``multiprocessing.get_context("spawn")``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from . import _common as cm
from ._common import default_time_chunk
from .hdf5 import H5BackendEntrypoint
from .sbx import SBX_EXTENSIONS, SbxBackendEntrypoint
from .tiff import TiffBackendEntrypoint, expand_tiff_paths

if TYPE_CHECKING:  # pragma: no cover
    from .writers import to_hdf5, to_tiff

__all__ = [
    "H5BackendEntrypoint",
    "SbxBackendEntrypoint",
    "TiffBackendEntrypoint",
    "default_time_chunk",
    "open_movie",
    "to_hdf5",
    "to_tiff",
]


def __getattr__(name: str) -> Any:
    # the writers (h5py, tifffile, tqdm) are imported on first use
    if name in ("to_hdf5", "to_tiff"):
        return getattr(importlib.import_module("xnormcorre.io.writers"), name)
    raise AttributeError(f"module 'xnormcorre.io' has no attribute {name!r}")


def _engine_for(path_or_paths: Any) -> tuple[type, Any]:
    """(backend class, what to pass it) chosen from the file's magic bytes."""
    if isinstance(path_or_paths, (str, os.PathLike)):
        text = os.path.expanduser(os.fspath(path_or_paths))
        if not os.path.exists(text) and any(c in text for c in "*?["):
            return TiffBackendEntrypoint, expand_tiff_paths(text)
        path = cm.check_file(text, "movie")
        if str(path).lower().endswith(SBX_EXTENSIONS):  # raw samples: no magic bytes
            return SbxBackendEntrypoint, str(path)
        head = cm.read_magic(path, 8)
        if cm.is_tiff_magic(head):
            return TiffBackendEntrypoint, str(path)
        if cm.hdf5_magic_at(path):
            return H5BackendEntrypoint, str(path)
        raise ValueError(
            f"{str(path)!r} is neither a TIFF nor an HDF5 file (it starts with {head!r}); "
            "xnormcorre opens TIFF stacks, 3-D HDF5 datasets and Scanbox .sbx files"
        )
    if isinstance(path_or_paths, Sequence) and not isinstance(path_or_paths, (bytes, bytearray)):
        paths = expand_tiff_paths(path_or_paths)
        for p in paths:
            head = cm.read_magic(cm.check_file(p, "TIFF"), 4)
            if not cm.is_tiff_magic(head):
                raise ValueError(
                    f"{p!r} is not a TIFF file (it starts with {head!r}); only TIFF files can be opened "
                    "as one movie from a list (open HDF5 files one by one and use xr.concat)"
                )
        return TiffBackendEntrypoint, paths
    raise TypeError(
        "path_or_paths must be a path, a glob pattern or a list of TIFF paths, "
        f"got {type(path_or_paths).__name__}"
    )


def _select_channel(movie: xr.DataArray, channel: int | str, source: Any) -> xr.DataArray:
    """``movie`` at one channel (by index or by name), lazily; an error lists the channels."""
    if "channel" not in movie.dims:
        names = [movie.attrs["channel_name"]] if "channel_name" in movie.attrs else []
        if channel in (0, -1) or channel in names:
            return movie
        raise ValueError(
            f"channel={channel!r}: {source!r} holds a single channel"
            + (f" ({names[0]!r})" if names else "")
            + "; use channel=0 or leave channel unset"
        )
    n = movie.sizes["channel"]
    names = [str(v) for v in movie["channel_name"].values] if "channel_name" in movie.coords else []
    listing = ", ".join(f"{i}" + (f" ({names[i]!r})" if names else "") for i in range(n))
    if isinstance(channel, str):
        if channel not in names:
            raise ValueError(
                f"channel={channel!r} is not a channel name of {source!r}; its channels: {listing}"
            )
        return movie.isel(channel=names.index(channel))
    if isinstance(channel, (bool, np.bool_)) or not isinstance(channel, (int, np.integer)):
        raise TypeError(f"channel must be a channel index (int) or name (str), got {channel!r}")
    if not -n <= channel < n:
        raise ValueError(f"channel={channel} is out of range for {source!r}; its channels: {listing}")
    return movie.isel(channel=int(channel))


#: Dimensions a movie may have (the keys of a ``chunks`` dict).
_MOVIE_DIMS = ("time", "channel", "y", "x")


def _chunk_size(value: Any, where: str) -> Any:
    """One dimension's chunks: a size >= 1, -1 or None (whole), "auto", or a tuple of sizes."""
    if value is None or value == -1 or (isinstance(value, str) and value == "auto"):
        return value
    if isinstance(value, tuple) and value and all(_is_size(v) for v in value):
        return value
    if _is_size(value):
        return int(value)
    raise ValueError(
        f"chunks={where}: a chunk size must be an integer >= 1 (frames), -1 or None (the whole "
        'dimension) or "auto"'
    )


def _is_size(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1


def _check_chunks(chunks: Any) -> Any:
    """``chunks`` of :func:`open_movie`, checked before the file is opened."""
    if chunks is None:
        return None
    if isinstance(chunks, Mapping):
        unknown = [k for k in chunks if k not in _MOVIE_DIMS]
        if unknown:
            raise ValueError(
                f"chunks names {', '.join(map(repr, unknown))}, not a dimension of a movie; "
                f"use {', '.join(map(repr, _MOVIE_DIMS))}"
            )
        return {k: _chunk_size(v, f"{{{k!r}: {v!r}}}") for k, v in chunks.items()}
    if isinstance(chunks, (bool, np.bool_)) or not isinstance(chunks, (int, np.integer, str)):
        raise TypeError(f'chunks must be an int, "auto" or a dict of dimension sizes, got {chunks!r}')
    return _chunk_size(chunks, repr(chunks))


def open_movie(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    chunks: int | str | Mapping[str, Any] | None = None,
    fps: float | None = None,
    dataset: str | None = None,
    series: int | None = None,
    channel: int | str | None = None,
    dims: tuple[str, ...] | None = None,
) -> xr.DataArray:
    """Open a TIFF, HDF5 or Scanbox movie lazily as a dask-backed ``(time, [channel,] y, x)`` DataArray.

    The engine (``xnormcorre_tiff``, ``xnormcorre_hdf5`` or ``xnormcorre_sbx``) is
    picked from the file's magic bytes (a Scanbox ``.sbx`` file, raw samples, by its
    name).  No pixel is read: correction, slicing and writing then read only the
    chunks they need, so movies larger than memory work.

    Parameters
    ----------
    path_or_paths : str, path, glob pattern or list of paths
        A multi-page TIFF, an HDF5 file, a Scanbox ``.sbx`` file (with its ``.mat``),
        or several TIFF files (list, or a glob such as ``"session1/*.tif"``, sorted
        naturally) opened as one movie along time.
    chunks : int, "auto" or dict, optional
        Dask chunks along ``time`` (an int or ``"auto"``), or a dict as in
        :func:`xarray.open_dataset`.  Default: whole frames, in time
        chunks of about 2**24 pixels (64 MiB as float32; 256 frames of 256×256), a
        multiple of the HDF5 chunk length.  ``y`` and ``x`` not named in a dict
        stay whole (registration needs whole frames), and each channel is its own
        chunk.  For a NumPy-backed lazy array use
        ``xr.open_dataarray(path, engine="xnormcorre_tiff")`` instead.
    fps : float, optional
        Frame rate (Hz): ``time`` is then in seconds and a ``frame`` coordinate
        keeps the index.  Default: the frame rate in the file's metadata (ScanImage,
        ImageJ, OME, Scanbox), if any; otherwise ``time`` is the frame index.
    dataset : str, optional
        HDF5 only: the dataset holding the movie (default: the only 3-D one, or the
        only 4-D one, a volumetric movie ``(time, z, y, x)``).
    dims : tuple of str, optional
        HDF5 only: the dataset's axes in file order, e.g. ``("y", "x", "time")`` for a
        movie stored time-last (MATLAB) or ``("time", "channel", "y", "x")``.  Default:
        read from the file when unambiguous (dimension labels, a MATLAB v7.3 variable
        -- ``Y(y, x, t)`` -- , chunk layout, shape); otherwise ``ValueError`` asks for it.
    series : int, optional
        TIFF only: the tifffile series (default: the first; a plain TIFF whose pages
        have different shapes raises ``ValueError``).
    channel : int or str, optional
        For a file with several channels (ImageJ hyperstack, OME-TIFF, ScanImage,
        Scanbox): the channel to open, by index or by name (``channel_name``), giving
        a ``(time, y, x)`` movie that reads only that channel's pages.  Default: all
        channels, ``(time, channel, y, x)``.

    Returns
    -------
    xarray.DataArray
        ``movie (time, y, x)`` -- or ``(time, channel, y, x)``, or a volumetric
        ``(time, z, y, x)`` (ImageJ ``TZYX`` hyperstack, 4-D HDF5 dataset) -- in the file's dtype,
        with ``time``, ``y``, ``x`` coordinates (``long_name``/``units``), the
        acquisition metadata in attrs and ``encoding["source"]``.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        Missing file (or a glob matching nothing, or a Scanbox ``.mat``); a directory.
    ValueError
        Empty, corrupt, truncated or unsupported file (multi-channel volumes), inconsistent
        metadata, pages or files of different frame shapes, a missing or non-3-D HDF5
        dataset, a parameter for another format, an unknown channel.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np, tifffile, xnormcorre
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.tif"
    >>> tifffile.imwrite(p, np.zeros((50, 32, 32), np.uint16))
    >>> movie = xnormcorre.open_movie(p, chunks={"time": 20})
    >>> movie.name, movie.dims, movie.chunks[0]
    ('movie', ('time', 'y', 'x'), (20, 20, 10))
    >>> movie.close()
    >>> q = pathlib.Path(tempfile.mkdtemp()) / "tcyx.tif"
    >>> tifffile.imwrite(q, np.zeros((50, 2, 32, 32), np.uint16), imagej=True, metadata={"axes": "TCYX"})
    >>> xnormcorre.open_movie(q).dims, xnormcorre.open_movie(q, channel=1).dims
    (('time', 'channel', 'y', 'x'), ('time', 'y', 'x'))
    """
    chunks = _check_chunks(chunks)
    engine, target = _engine_for(path_or_paths)
    kwargs: dict[str, Any] = {"fps": fps}
    if engine is TiffBackendEntrypoint:
        if dataset is not None or dims is not None:
            what = f"dataset={dataset!r}" if dataset is not None else f"dims={dims!r}"
            raise ValueError(f"{what} applies to HDF5 files only; this is a TIFF movie")
        kwargs["series"] = series
    elif engine is H5BackendEntrypoint:
        if series is not None:
            raise ValueError(f"series={series!r} applies to TIFF files only; this is an HDF5 file")
        kwargs["dataset"] = dataset
        kwargs["dims"] = dims
    else:
        for name, value in (("dataset", dataset), ("series", series), ("dims", dims)):
            if value is not None:
                raise ValueError(f"{name}={value!r} does not apply to a Scanbox .sbx file")
    if chunks is None:
        opened = xr.open_dataarray(target, engine=engine, cache=False, **kwargs)
        movie = opened if channel is None else _select_channel(opened, channel, target)
        preferred = opened.encoding.get("preferred_chunks", {}).get("time", 1)
        planes = movie.sizes.get("z", 1)  # a volume's chunks hold whole volumes
        tc = default_time_chunk((movie.shape[0], planes * movie.shape[-2], movie.shape[-1]), preferred)
        spec = {"time": tc, "y": -1, "x": -1}
        if "z" in movie.dims:
            spec["z"] = -1
        if "channel" in movie.dims:
            spec["channel"] = 1
        movie = movie.chunk(spec)
        movie.set_close(opened.close)
        return movie
    if isinstance(chunks, Mapping):
        chunks = {"y": -1, "x": -1, "channel": 1, "z": -1, **chunks}
    elif isinstance(chunks, (int, str)) and not isinstance(chunks, bool):
        chunks = {"time": chunks, "y": -1, "x": -1, "channel": 1, "z": -1}  # a number or "auto": time only
    movie = xr.open_dataarray(target, engine=engine, chunks=chunks, **kwargs)
    if channel is None:
        return movie
    selected = _select_channel(movie, channel, target)
    selected.set_close(movie.close)
    return selected
