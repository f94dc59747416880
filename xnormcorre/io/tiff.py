"""Lazy TIFF backend: ``xr.open_dataset(path, engine="xnormcorre_tiff")``.

Opens a multi-page TIFF -- plain, BigTIFF, ImageJ (also ImageJ hyperstacks > 4 GB,
whose frames follow the first page without IFDs), OME or ScanImage stacks, compressed
or not -- or a list/glob of TIFF files as one ``(time, y, x)`` movie, or
``(time, channel, y, x)`` when the file holds several channels, without reading
pixels.  Indexing reads only the selected frames and channels:
``ds.movie.isel(time=[3, 900]).values`` decodes exactly two pages of a one-channel
file.  Acquisition metadata (frame rate, zoom, pixel size, bidirectional scanning,
channel names) are read with tifffile's ScanImage, ImageJ and OME parsers.

The backend array holds no open file: each file is reached through xarray's
``CachingFileManager`` (a per-process LRU of open ``tifffile.TiffFile`` objects,
re-opened after unpickling) and read under a per-file ``SerializableLock``, so
opened datasets pickle and work with threads, processes and dask.distributed.

The files are opened and described in :mod:`xnormcorre.io.tiff_files`, their metadata read in
:mod:`xnormcorre.io.tiff_meta`; the tifffile calls that read live in these three modules
(coded against tifffile 2026.3.3).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from . import _common as cm
from ._lazy import BackendArray, BackendEntrypoint, outer_1vector_getitem
from ._meta import channel_coords
from .tiff_files import TiffPart, inspect_tiff

__all__ = ["TiffBackendArray", "TiffBackendEntrypoint", "expand_tiff_paths"]

#: tifffile, imported on first use (listing xarray's engines stays light).
tifffile = cm.LazyModule("tifffile")

_GLOB_CHARS = ("*", "?", "[")


def expand_tiff_paths(path_or_paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The TIFF files of a movie: one path, a glob pattern, or a list of paths, in order.

    A glob pattern is expanded and sorted naturally (``img2.tif`` before ``img10.tif``);
    a list keeps the user's order.

    Raises
    ------
    FileNotFoundError
        If a file is missing or a glob matches nothing.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a10.tif", "a2.tif"):
    ...     _ = (d / name).write_bytes(b"II*\\x00")
    >>> [pathlib.Path(p).name for p in expand_tiff_paths(d / "a*.tif")]
    ['a2.tif', 'a10.tif']
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        text = os.path.expanduser(os.fspath(path_or_paths))
        if not os.path.exists(text) and any(c in text for c in _GLOB_CHARS):
            found = tifffile.natural_sorted(glob.glob(text))
            if not found:
                raise FileNotFoundError(f"no TIFF file matches the pattern {text!r}")
            return [os.path.abspath(p) for p in found]
        return [os.path.abspath(text)]
    if isinstance(path_or_paths, Iterable):
        paths = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in path_or_paths]
        if not paths:
            raise ValueError("the list of TIFF files is empty")
        return paths
    raise TypeError(
        f"a TIFF movie is a path, a glob pattern or a list of paths, got {type(path_or_paths).__name__}"
    )


class TiffBackendArray(BackendArray):
    """Lazy ``(time, y, x)`` or ``(time, channel, y, x)`` view of TIFF files (no open handle inside).

    ``__getitem__`` accepts xarray's explicit indexers (``OUTER_1VECTOR``): only the
    frames selected along ``time`` -- and, for several channels, only the pages of the
    selected channels -- are read and decoded; ``y``/``x`` are cut from the decoded
    frames.  Thread-safe and picklable.
    """

    def __init__(self, *, parts: Sequence[TiffPart]) -> None:
        self.parts = tuple(parts)
        h, w = self.parts[0].frame_shape
        self.n_channels = self.parts[0].n_channels
        self._starts = np.cumsum([0] + [p.n_frames for p in self.parts])
        n = int(self._starts[-1])
        self.shape = (n, self.n_channels, h, w) if self.n_channels > 1 else (n, h, w)
        self.dtype = self.parts[0].dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        return outer_1vector_getitem(key, self.shape, self._raw)

    def _raw(self, key: tuple) -> np.ndarray:
        if len(key) == 3:
            kt, ky, kx = key
            idx, squeeze = cm.frame_indices(kt, self.shape[0])
            return cm.index_frames(self.read_frames(idx), ky, kx, squeeze)
        kt, kc, ky, kx = key
        idx, squeeze_t = cm.frame_indices(kt, self.shape[0])
        channels, squeeze_c = cm.frame_indices(kc, self.n_channels)
        out = self.read_frames(idx, channels)[:, :, ky][..., kx]
        if squeeze_c:
            out = out[:, 0]
        return out[0] if squeeze_t else out

    def read_frames(self, idx: np.ndarray, channels: np.ndarray | None = None) -> np.ndarray:
        """Frames ``idx`` (global frame numbers): ``(len(idx), H, W)``, or with ``channels`` ``(len(idx), len(channels), H, W)``."""
        idx = np.asarray(idx, dtype=np.int64)
        n, h, w = self.shape[0], *self.shape[-2:]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"frame index out of range for a movie of {n} frames")
        if channels is not None:
            channels = np.asarray(channels, dtype=np.int64)
            if channels.size and (channels.min() < 0 or channels.max() >= self.n_channels):
                raise IndexError(f"channel index out of range for a movie of {self.n_channels} channels")
        lead = (idx.size,) if channels is None else (idx.size, channels.size)
        out = np.empty((*lead, h, w), self.dtype)
        file_of = np.searchsorted(self._starts, idx, side="right") - 1
        for f in np.unique(file_of):
            sel = file_of == f
            local = idx[sel] - self._starts[f]
            out[sel] = self.parts[f].read(local) if channels is None else self.parts[f].read(local, channels)
        return out

    def close(self) -> None:
        """Close every file of the movie (they re-open on the next read)."""
        for part in self.parts:
            part.manager.close()


class TiffBackendEntrypoint(BackendEntrypoint):
    """xarray backend ``xnormcorre_tiff``: a (multi-page) TIFF or a set of TIFFs as a lazy movie.

    Parameters of ``xr.open_dataset(filename_or_obj, engine="xnormcorre_tiff", ...)``:

    filename_or_obj : str, path, glob pattern or list of paths
        One TIFF file, or several opened as one movie along ``time`` (a glob is
        sorted naturally, a list keeps its order).  All files must have the same
        frame shape and dtype.
    series : int, optional
        tifffile series to open.  Default: the first one, except that a plain TIFF
        whose pages have different shapes raises ``ValueError`` (pick one with
        ``series=``) and a file written one page per series is read as one stack.
    fps : float, optional
        Frame rate (Hz).  If given, ``time`` is in seconds (``frame / fps``) and a
        ``frame`` coordinate holds the index; otherwise the frame rate of the file's
        metadata is used (ScanImage ``SI.hRoiManager.scanFrameRate``, ImageJ
        ``finterval``, OME ``TimeIncrement``), and without one ``time`` is the frame
        index.
    lock : lock, optional
        Lock held while reading (default: one ``SerializableLock`` per file).
    drop_variables : str or list of str, optional
        Variables or coordinates to leave out.

    The Dataset holds one variable ``movie (time, y, x)`` of the file's dtype, or
    ``movie (time, channel, y, x)`` when the file holds several channels: ImageJ
    hyperstacks (``TCYX``; ``TZCYX`` with one z plane), OME-TIFF series with a ``C``
    axis, and ScanImage files whose pages interleave the saved channels
    (``SI.hChannels.channelSave``).  ``channel`` is the channel index; a
    ``channel_name`` coordinate (also an index: ``sel(channel_name="red")``) holds the
    names when the metadata has them.  Volumes (z > 1) raise ``ValueError``.
    Acquisition metadata become attrs of ``movie`` (``fps``, ``fps_source``,
    ``scan_zoom``, ``bidirectional`` as 0/1, ``acquisition_software``, and everything
    else as a JSON string ``acquisition_metadata``); the pixel size in micrometres is
    ``y.attrs["pixel_size_um"]`` / ``x.attrs["pixel_size_um"]``.
    ``encoding["preferred_chunks"] == {"time": 1}`` (and ``"channel": 1``): use
    ``chunks={"time": N}`` (a few hundred frames) rather than ``chunks={}``, which
    makes one dask task per frame.  Selecting channels reads only their pages.

    Examples
    --------
    >>> import tempfile, pathlib, tifffile, xarray as xr
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.tif"
    >>> tifffile.imwrite(p, np.arange(5 * 4 * 6, dtype=np.uint16).reshape(5, 4, 6))
    >>> ds = xr.open_dataset(p, engine=TiffBackendEntrypoint, fps=10.0)
    >>> ds.movie.dims, ds.movie.shape, float(ds.time[2])
    (('time', 'y', 'x'), (5, 4, 6), 0.2)
    >>> int(ds.movie.isel(time=4, y=0, x=0))
    96
    >>> ds.close()
    """

    description: ClassVar[str] = (
        "Lazy (time, [channel,] y, x) movies from multi-page TIFF files (xnormcorre, via tifffile)"
    )
    url: ClassVar[str] = cm.URL
    open_dataset_parameters: ClassVar[tuple[str, ...]] = (
        "filename_or_obj",
        "drop_variables",
        "series",
        "fps",
        "lock",
    )

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        series: int | None = None,
        fps: float | None = None,
        lock: Any = None,
    ) -> xr.Dataset:
        """Open a TIFF movie lazily; see the class docstring for the parameters."""
        fps = cm.check_fps(fps)
        paths = expand_tiff_paths(filename_or_obj)
        parts: list[TiffPart] = []
        try:
            for p in paths:
                part, acq = inspect_tiff(p, series, lock)
                parts.append(part)
                if len(parts) == 1:
                    first_acq = acq
            first = parts[0]
            for part in parts[1:]:
                if part.frame_shape != first.frame_shape or part.dtype != first.dtype:
                    raise ValueError(
                        "TIFF files of one movie must have frames of the same shape and dtype: "
                        f"{first.path!r} has {first.frame_shape} {first.dtype}, "
                        f"{part.path!r} has {part.frame_shape} {part.dtype}"
                    )
                if part.n_channels != first.n_channels or part.second != first.second:
                    raise ValueError(
                        "TIFF files of one movie must have the same channels: "
                        f"{first.path!r} has {first.n_channels}, {part.path!r} has {part.n_channels}"
                    )
        except BaseException:
            for part in parts:
                part.manager.close()
            raise
        array = TiffBackendArray(parts=parts)
        attrs: dict[str, Any] = {"n_files": len(paths)}
        if first.series >= 0:
            attrs["tiff_series"] = first.series
        volume = first.second == "z"
        multi = array.n_channels > 1 and not volume
        if not multi and first_acq.channel_names:
            attrs["channel_name"] = first_acq.channel_names[0]
        return cm.backend_dataset(
            array,
            source=paths[0] if len(paths) == 1 else f"{paths[0]} ... {paths[-1]} ({len(paths)} files)",
            source_format="TIFF",
            attrs=attrs,
            preferred_chunks={"time": 1, "channel": 1}
            if multi
            else ({"time": 1, "z": array.n_channels} if volume else {"time": 1}),
            file=paths[0],
            fps=fps,
            acquisition=first_acq,
            drop_variables=drop_variables,
            channels=channel_coords(array.n_channels, first_acq.channel_names) if multi else None,
            planes=array.n_channels if volume else None,
        )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """True for an existing file with a TIFF/BigTIFF header, or a TIFF-named path or list."""
        if isinstance(filename_or_obj, (list, tuple)) and filename_or_obj:
            return all(self.guess_can_open(p) for p in filename_or_obj)
        path = cm.as_path_or_none(filename_or_obj)
        if path is None:
            return False
        if os.path.isfile(path):
            return cm.is_tiff_magic(cm.read_magic(path, 4))
        return path.lower().endswith(cm.TIFF_EXTENSIONS)
