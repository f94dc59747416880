"""Lazy TIFF backend: ``xr.open_dataset(path, engine="xnormcorre_tiff")``.

Opens a multi-page TIFF -- plain, BigTIFF, ImageJ (also ImageJ hyperstacks > 4 GB,
whose frames follow the first page without IFDs), OME or ScanImage single-channel
stacks, compressed or not -- or a list/glob of TIFF files as one ``(time, y, x)``
movie, without reading pixels.  Indexing reads only the selected frames:
``ds.movie.isel(time=[3, 900]).values`` decodes exactly two pages.

The backend array holds no open file: each file is reached through xarray's
``CachingFileManager`` (a per-process LRU of open ``tifffile.TiffFile`` objects,
re-opened after unpickling) and read under a per-file ``SerializableLock``, so
opened datasets pickle and work with threads, processes and dask.distributed.

All tifffile calls of xnormcorre live in this module (coded against tifffile 2026.3.3).
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from . import _common as cm
from ._lazy import (
    BackendArray,
    BackendEntrypoint,
    CachingFileManager,
    SerializableLock,
    lazily_indexed,
    outer_1vector_getitem,
)

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


def _open_tiff(path: str, mode: str = "r") -> tifffile.TiffFile:
    # ``mode`` is accepted (and ignored: TIFFs are opened read-only) because an unpickled
    # CachingFileManager always passes it
    try:
        return tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise ValueError(f"{path!r} is not a readable TIFF file (corrupt or truncated?): {exc}") from exc


def _describe_series(tif: tifffile.TiffFile) -> str:
    return "; ".join(
        f"series {i}: shape {tuple(s.shape)} {s.dtype} axes {s.axes!r} ({s.kind})"
        for i, s in enumerate(tif.series)
    )


@dataclass(frozen=True)
class _TiffPart:
    """One TIFF file of a movie: how to reach it and how its frames are laid out.

    ``series`` is the tifffile series index, or -1 to address all pages of the file
    (a file written one page per ``TiffWriter.write`` call, where tifffile reports a
    series per page).  ``dataoffset`` is set when the frames are stored
    uncompressed and back to back: they are then read with one seek per run of
    consecutive frames (this also covers ImageJ hyperstacks > 4 GB, which have a
    single IFD).
    """

    path: str
    manager: CachingFileManager
    lock: Any
    series: int
    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    dataoffset: int | None

    def read(self, idx: np.ndarray) -> np.ndarray:
        """Frames ``idx`` (local frame numbers) as ``(len(idx), H, W)``."""
        h, w = self.frame_shape
        out = np.empty((idx.size, h, w), self.dtype)
        if idx.size == 0:
            return out
        with self.manager.acquire_context() as tif, self.lock:
            if self.dataoffset is not None:
                fh = tif.filehandle
                typecode = tif.byteorder + self.dtype.char
                frame_items = h * w
                pos = 0
                # runs() needs sorted input; reads are issued in the order given
                order = np.argsort(idx, kind="stable")
                sorted_idx = idx[order]
                tmp = np.empty_like(out)
                for a, b in cm.runs(sorted_idx):
                    n = b - a
                    offset = self.dataoffset + a * frame_items * self.dtype.itemsize
                    tmp[pos : pos + n] = fh.read_array(typecode, n * frame_items, offset).reshape(n, h, w)
                    pos += n
                out[order] = tmp
            elif self.series < 0:
                # pages may differ in compression: decode each on its own
                for k, i in enumerate(idx):
                    out[k] = tif.pages[int(i)].asarray().reshape(h, w)
            else:
                data = tif.asarray(key=[int(i) for i in idx], series=self.series)
                out[...] = np.asarray(data).reshape(idx.size, h, w)
        return out


#: tifffile log messages that mean a truncated or corrupt file (tifffile then falls back to
#: fewer pages or a generic series instead of raising).
_CORRUPT_LOGS = ("invalid page offset", "failed to reshape", "metadata invalid or corrupted")


class _LoggedErrors(logging.Handler):
    """Collects tifffile's warnings and errors logged by this thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def _truncated(path: str, why: str) -> ValueError:
    size = os.path.getsize(path)
    return ValueError(
        f"TIFF file {path!r} is truncated or corrupt ({why}; the file has {size} bytes): "
        "copy or export it again"
    )


def _check_complete(path: str, logged: list[str], part: _TiffPart | None) -> None:
    """Raise if tifffile reported a truncated file or the frames' data end past the end of the file."""
    for msg in logged:
        if any(key in msg for key in _CORRUPT_LOGS):
            raise _truncated(path, f"tifffile: {msg.split('> ', 1)[-1]}")
    if part is None:
        return
    size = os.path.getsize(path)
    h, w = part.frame_shape
    if part.dataoffset is not None:
        end = part.dataoffset + part.n_frames * h * w * part.dtype.itemsize
    else:
        with part.manager.acquire_context() as tif:
            pages = tif.pages if part.series < 0 else tif.series[part.series].pages
            last = pages[len(pages) - 1] if len(pages) else None
            ends = [o + c for o, c in zip(last.dataoffsets, last.databytecounts, strict=True)] if last else []
            end = max(ends, default=0)
    if end > size:
        raise _truncated(path, f"the last frame's data end at byte {end}")


def _inspect(path: str, series: int | None, lock: Any) -> _TiffPart:
    """Open ``path`` once (kept in the file cache), describe its frames and check that the
    file holds all of them (a truncated file is refused here, not when a frame is read)."""
    handler = _LoggedErrors()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        try:
            part = _inspect_layout(path, series, lock)
        except ValueError as exc:
            _check_complete(path, handler.messages, None)
            raise exc from None
        try:
            _check_complete(path, handler.messages, part)
        except BaseException:
            part.manager.close()
            raise
    finally:
        logger.removeHandler(handler)
    return part


def _inspect_layout(path: str, series: int | None, lock: Any) -> _TiffPart:
    """Open ``path`` once (kept in the file cache) and describe its frames."""
    cm.check_file(path, "TIFF")
    manager = CachingFileManager(_open_tiff, path, mode="r")
    try:
        with manager.acquire_context() as tif:
            if not tif.series:
                raise ValueError(
                    f"{path!r} is not a readable TIFF file: it holds no image (corrupt or truncated?)"
                )
            if series is None:
                shapes = {(tuple(s.shape), s.dtype.str) for s in tif.series}
                if len(tif.series) > 1 and len(shapes) > 1 and tif.series[0].kind in ("generic", "shaped"):
                    raise ValueError(
                        f"TIFF file {path!r} holds pages of different shapes ({_describe_series(tif)}); "
                        "pass series=<index> to open one of them"
                    )
                if len(tif.series) > 1 and len(shapes) == 1 and tif.series[0].ndim == 2:
                    # one frame per series, e.g. written by repeated TiffWriter.write(frame)
                    return _all_pages_part(path, manager, tif, lock)
                series = 0
            if isinstance(series, (bool, np.bool_)) or not isinstance(series, (int, np.integer)):
                raise TypeError(f"series must be an integer index or None, got {series!r}")
            if not 0 <= series < len(tif.series):
                raise ValueError(
                    f"series={series} is out of range for TIFF file {path!r}, which has "
                    f"{len(tif.series)} series ({_describe_series(tif)})"
                )
            s = tif.series[int(series)]
            shape, axes = tuple(s.shape), s.axes
            if len(shape) == 2 and axes[-2:] == "YX":
                shape, axes = (1, *shape), "I" + axes
            # any one stack axis is read as time: T, Z, I, Q, and C (tifffile's ImageJ writer
            # labels a plain 3-D stack "CYX"); S (RGB samples) and more dims are refused
            if len(shape) != 3 or axes[-2:] != "YX" or axes[0] == "S":
                raise ValueError(
                    f"TIFF series {series} of {path!r} has shape {shape} and axes {axes!r}; only "
                    "single-channel (time, y, x) stacks can be opened as a movie "
                    "(extract one channel / plane first; S = RGB samples)"
                )
            n, h, w = shape
            dataoffset = s.dataoffset
            if dataoffset is None and len(s) != n:
                raise ValueError(
                    f"TIFF series {series} of {path!r} stores {n} frames in {len(s)} pages; "
                    "this layout cannot be read frame by frame"
                )
            return _TiffPart(
                path=path,
                manager=manager,
                lock=lock if lock is not None else SerializableLock(),
                series=int(series),
                n_frames=n,
                frame_shape=(h, w),
                dtype=np.dtype(s.dtype),
                dataoffset=None if dataoffset is None else int(dataoffset),
            )
    except BaseException:
        manager.close()
        raise


def _all_pages_part(path: str, manager: CachingFileManager, tif: tifffile.TiffFile, lock: Any) -> _TiffPart:
    page = tif.series[0]
    h, w = page.shape
    return _TiffPart(
        path=path,
        manager=manager,
        lock=lock if lock is not None else SerializableLock(),
        series=-1,
        n_frames=len(tif.pages),
        frame_shape=(int(h), int(w)),
        dtype=np.dtype(page.dtype),
        dataoffset=None,
    )


class TiffBackendArray(BackendArray):
    """Lazy ``(time, y, x)`` view of one or more TIFF files (no open handle inside).

    ``__getitem__`` accepts xarray's explicit indexers (``OUTER_1VECTOR``): only the
    frames selected along ``time`` are read and decoded; ``y``/``x`` are cut from the
    decoded frames.  Thread-safe and picklable.
    """

    def __init__(self, *, parts: Sequence[_TiffPart]) -> None:
        self.parts = tuple(parts)
        h, w = self.parts[0].frame_shape
        self._starts = np.cumsum([0] + [p.n_frames for p in self.parts])
        self.shape = (int(self._starts[-1]), h, w)
        self.dtype = self.parts[0].dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        return outer_1vector_getitem(key, self.shape, self._raw)

    def _raw(self, key: tuple) -> np.ndarray:
        kt, ky, kx = key
        idx, squeeze = cm.frame_indices(kt, self.shape[0])
        return cm.index_frames(self.read_frames(idx), ky, kx, squeeze)

    def read_frames(self, idx: np.ndarray) -> np.ndarray:
        """Frames ``idx`` (global frame numbers) as a ``(len(idx), H, W)`` array."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"frame index out of range for a movie of {self.shape[0]} frames")
        out = np.empty((idx.size, *self.shape[1:]), self.dtype)
        file_of = np.searchsorted(self._starts, idx, side="right") - 1
        for f in np.unique(file_of):
            sel = file_of == f
            out[sel] = self.parts[f].read(idx[sel] - self._starts[f])
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
        ``frame`` coordinate holds the index; otherwise ``time`` is the frame index.
    lock : lock, optional
        Lock held while reading (default: one ``SerializableLock`` per file).
    drop_variables : str or list of str, optional
        Variables or coordinates to leave out.

    The Dataset holds one variable ``movie (time, y, x)`` of the file's dtype, with
    ``encoding["preferred_chunks"] == {"time": 1}``: use ``chunks={"time": N}``
    (a few hundred frames) rather than ``chunks={}``, which makes one dask task per
    frame.

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
        "Lazy (time, y, x) movies from multi-page TIFF files (xnormcorre, via tifffile)"
    )
    url: ClassVar[str] = "https://github.com/xnormcorre/xnormcorre"
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
        parts: list[_TiffPart] = []
        try:
            for p in paths:
                parts.append(_inspect(p, series, lock))
            first = parts[0]
            for part in parts[1:]:
                if part.frame_shape != first.frame_shape or part.dtype != first.dtype:
                    raise ValueError(
                        "TIFF files of one movie must have frames of the same shape and dtype: "
                        f"{first.path!r} has {first.frame_shape} {first.dtype}, "
                        f"{part.path!r} has {part.frame_shape} {part.dtype}"
                    )
        except BaseException:
            for part in parts:
                part.manager.close()
            raise
        array = TiffBackendArray(parts=parts)
        source = paths[0] if len(paths) == 1 else f"{paths[0]} ... {paths[-1]} ({len(paths)} files)"
        attrs = {
            "long_name": "fluorescence",
            "units": "a.u.",
            "source": source,
            "source_format": "TIFF",
            "n_files": len(paths),
        }
        if first.series >= 0:
            attrs["tiff_series"] = first.series
        encoding = {
            "preferred_chunks": {"time": 1},
            "source": paths[0],
            "dtype": array.dtype,
        }
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
        """True for an existing file with a TIFF/BigTIFF header, or a TIFF-named path or list."""
        if isinstance(filename_or_obj, (list, tuple)) and filename_or_obj:
            return all(self.guess_can_open(p) for p in filename_or_obj)
        path = cm.as_path_or_none(filename_or_obj)
        if path is None:
            return False
        if os.path.isfile(path):
            return cm.is_tiff_magic(cm.read_magic(path, 4))
        return path.lower().endswith(cm.TIFF_EXTENSIONS)
