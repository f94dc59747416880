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
    outer_1vector_getitem,
)
from ._meta import Acquisition, channel_coords, length_um, positive, seconds

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
    series per page, and ScanImage files).  ``dataoffset`` is set when the frames are
    stored uncompressed and back to back: they are then read with one seek per run of
    consecutive frames (this also covers ImageJ hyperstacks > 4 GB, which have a
    single IFD).  The image plane of frame ``t``, channel ``c`` is the
    ``t * stride_t + c * stride_c``-th plane (page) of the series.
    """

    path: str
    manager: CachingFileManager
    lock: Any
    series: int
    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    dataoffset: int | None
    n_channels: int = 1
    stride_t: int = 1
    stride_c: int = 0
    #: what the second axis (``n_channels`` planes per frame) is: channels, or ``"z"``
    #: planes of a volume (ImageJ ``TZYX``)
    second: str = "channel"

    def read(self, idx: np.ndarray, channels: np.ndarray | None = None) -> np.ndarray:
        """Frames ``idx`` (local frame numbers): ``(len(idx), H, W)``, or ``(len(idx), len(channels), H, W)``."""
        idx = np.asarray(idx, dtype=np.int64)
        if channels is None:
            return self._read_planes(idx * self.stride_t)
        channels = np.asarray(channels, dtype=np.int64)
        planes = (idx[:, None] * self.stride_t + channels[None, :] * self.stride_c).ravel()
        return self._read_planes(planes).reshape(idx.size, channels.size, *self.frame_shape)

    def _read_planes(self, idx: np.ndarray) -> np.ndarray:
        """Image planes ``idx`` (pages of the series, or of the file) as ``(len(idx), H, W)``."""
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
        n_planes = (part.n_frames - 1) * part.stride_t + (part.n_channels - 1) * part.stride_c + 1
        end = part.dataoffset + n_planes * h * w * part.dtype.itemsize
    else:
        with part.manager.acquire_context() as tif:
            pages = tif.pages if part.series < 0 else tif.series[part.series].pages
            last = pages[len(pages) - 1] if len(pages) else None
            ends = [o + c for o, c in zip(last.dataoffsets, last.databytecounts, strict=True)] if last else []
            end = max(ends, default=0)
    if end > size:
        raise _truncated(path, f"the last frame's data end at byte {end}")


def _inspect(path: str, series: int | None, lock: Any) -> tuple[_TiffPart, Acquisition]:
    """Open ``path`` once (kept in the file cache), describe its frames and check that the
    file holds all of them (a truncated file is refused here, not when a frame is read)."""
    handler = _LoggedErrors()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        try:
            part, acq = _inspect_layout(path, series, lock)
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
    return part, acq


def _volume_error(path: str, what: str, n_z: int) -> ValueError:
    return ValueError(
        f"TIFF file {path!r} holds a volume ({what}: {n_z} z planes); xnormcorre registers 2-D movies "
        "(time, [channel,] y, x) -- volumetric (z) registration is planned but not supported yet. "
        "Open one plane at a time, e.g. xr.DataArray(tifffile.imread(path)[:, k]) for plane k"
    )


def _hyperstack_layout(
    path: str, series: int, shape: tuple[int, ...], axes: str
) -> tuple[int, int, int, int, str]:
    """``(n_frames, n_second, stride_t, stride_second, second)`` of a series with a time
    axis and a channel (``second="channel"``) or a z axis (``second="z"``: an ImageJ
    ``TZYX`` hyperstack, a volumetric movie).

    ``shape``/``axes`` are tifffile's (squeezed: size-1 axes are gone); the planes are
    stored in C order of the axes before ``YX``.
    """
    lead, lead_shape = axes[:-2], shape[:-2]
    if "Z" in lead and ("C" in lead or len(lead) != 2):
        raise ValueError(
            f"TIFF file {path!r} holds a multi-channel volume (series {series} has axes {axes!r}, shape "
            f"{shape}: {lead_shape[lead.index('Z')]} z planes); volumes with channels are not supported "
            "yet: save each channel as a (time, z, y, x) file (ImageJ TZYX)"
        )
    if ("C" not in lead and "Z" not in lead) or len(lead) != 2:
        raise ValueError(
            f"TIFF series {series} of {path!r} has shape {shape} and axes {axes!r}; a movie has one time "
            "axis and at most one channel axis (C) or z axis (Z) besides y and x"
        )
    strides = [int(np.prod(lead_shape[i + 1 :], dtype=np.int64)) for i in range(len(lead))]
    second = "Z" if "Z" in lead else "C"
    c_axis = lead.index(second)
    t_axis = 1 - c_axis
    name = "z" if second == "Z" else "channel"
    return int(lead_shape[t_axis]), int(lead_shape[c_axis]), strides[t_axis], strides[c_axis], name


def _inspect_layout(path: str, series: int | None, lock: Any) -> tuple[_TiffPart, Acquisition]:
    """Open ``path`` once (kept in the file cache) and describe its frames and metadata."""
    cm.check_file(path, "TIFF")
    manager = CachingFileManager(_open_tiff, path, mode="r")
    lock = lock if lock is not None else SerializableLock()
    try:
        with manager.acquire_context() as tif:
            if not tif.series:
                raise ValueError(
                    f"{path!r} is not a readable TIFF file: it holds no image (corrupt or truncated?)"
                )
            if series is None and tif.is_scanimage:
                framedata = scanimage_framedata(tif)
                if framedata:
                    return _scanimage_part(path, manager, tif, lock, framedata)
            if series is None:
                shapes = {(tuple(s.shape), s.dtype.str) for s in tif.series}
                if len(tif.series) > 1 and len(shapes) > 1 and tif.series[0].kind in ("generic", "shaped"):
                    raise ValueError(
                        f"TIFF file {path!r} holds pages of different shapes ({_describe_series(tif)}); "
                        "pass series=<index> to open one of them"
                    )
                if len(tif.series) > 1 and len(shapes) == 1 and tif.series[0].ndim == 2:
                    # one frame per series, e.g. written by repeated TiffWriter.write(frame)
                    return _all_pages_part(path, manager, tif, lock), Acquisition()
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
            # labels a plain 3-D stack "CYX"); a time and a channel axis (ImageJ TCYX, OME
            # CTYX, ...) make a multi-channel movie; S (RGB samples) is refused
            if len(shape) < 3 or axes[-2:] != "YX" or "S" in axes:
                raise ValueError(
                    f"TIFF series {series} of {path!r} has shape {shape} and axes {axes!r}; only "
                    "single-channel (time, y, x) stacks and (time, channel, y, x) hyperstacks can be "
                    "opened as a movie (S = RGB samples)"
                )
            second = "channel"
            if len(shape) == 3:
                n, n_channels, stride_t, stride_c = shape[0], 1, 1, 0
            else:
                n, n_channels, stride_t, stride_c, second = _hyperstack_layout(path, int(series), shape, axes)
            h, w = shape[-2:]
            n_planes = int(np.prod(shape[:-2], dtype=np.int64))
            dataoffset = s.dataoffset
            if dataoffset is None and len(s) != n_planes:
                raise ValueError(
                    f"TIFF series {series} of {path!r} stores {n_planes} frames in {len(s)} pages; "
                    "this layout cannot be read frame by frame"
                )
            part = _TiffPart(
                path=path,
                manager=manager,
                lock=lock,
                series=int(series),
                n_frames=n,
                frame_shape=(h, w),
                dtype=np.dtype(s.dtype),
                dataoffset=None if dataoffset is None else int(dataoffset),
                n_channels=n_channels,
                stride_t=stride_t,
                stride_c=stride_c,
                second=second,
            )
            return part, file_acquisition(tif, int(series), 1 if second == "z" else n_channels)
    except BaseException:
        manager.close()
        raise


def _scanimage_part(
    path: str, manager: CachingFileManager, tif: tifffile.TiffFile, lock: Any, framedata: dict
) -> tuple[_TiffPart, Acquisition]:
    """A ScanImage file: its pages interleave the saved channels of each frame."""
    acq, n_channels, n_slices = scanimage_acquisition(framedata, tif)
    if n_slices > 1:
        raise _volume_error(path, "ScanImage stack / fast-z acquisition", n_slices)
    n_pages = len(tif.pages)
    if n_pages % n_channels:
        raise ValueError(
            f"inconsistent ScanImage metadata in {path!r}: {n_channels} channels are saved "
            f"(SI.hChannels.channelSave) but the file has {n_pages} pages, not a multiple of {n_channels}"
        )
    page = tif.pages.first
    if len(page.shape) != 2:
        raise ValueError(f"ScanImage file {path!r} has pages of shape {page.shape}; expected (y, x) pages")
    h, w = page.shape
    part = _TiffPart(
        path=path,
        manager=manager,
        lock=lock,
        series=-1,
        n_frames=n_pages // n_channels,
        frame_shape=(int(h), int(w)),
        dtype=np.dtype(page.dtype),
        dataoffset=None,
        n_channels=n_channels,
        stride_t=n_channels,
        stride_c=1,
    )
    return part, acq


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
    """Lazy ``(time, y, x)`` or ``(time, channel, y, x)`` view of TIFF files (no open handle inside).

    ``__getitem__`` accepts xarray's explicit indexers (``OUTER_1VECTOR``): only the
    frames selected along ``time`` -- and, for several channels, only the pages of the
    selected channels -- are read and decoded; ``y``/``x`` are cut from the decoded
    frames.  Thread-safe and picklable.
    """

    def __init__(self, *, parts: Sequence[_TiffPart]) -> None:
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


# --------------------------------------------------------------------------- acquisition metadata
def scanimage_framedata(tif: tifffile.TiffFile) -> dict[str, Any]:
    """ScanImage's non-varying frame data (``SI.*`` keys; ``state.*`` for ScanImage 3), or ``{}``.

    Read with tifffile's parsers: the ScanImage BigTIFF header
    (``TiffFile.scanimage_metadata``), else the first page's Software tag (ScanImage
    2016 and later write the frame data there) or ImageDescription (ScanImage 3-5).
    ScanImage 5's ``scanimage.SI.`` prefix is dropped so every version uses ``SI.`` keys.
    """
    meta = tif.scanimage_metadata or {}
    data = meta.get("FrameData") or {}
    if not data:
        page = tif.pages.first
        for text in (page.software, page.description):
            if text.startswith(("SI.", "state.")) or "scanimage.SI" in text:
                try:
                    parsed = tifffile.matlabstr2py(text)
                except Exception:  # noqa: BLE001 - a malformed tag is treated as absent
                    continue
                if isinstance(parsed, dict) and parsed:
                    data = parsed
                    break
    return {(k[len("scanimage.") :] if k.startswith("scanimage.SI") else k): v for k, v in data.items()}


def _flat_ints(value: Any) -> list[int]:
    return [int(v) for v in np.ravel(np.asarray(value, dtype=np.float64)) if np.isfinite(v)]


def scanimage_acquisition(framedata: dict[str, Any], tif: tifffile.TiffFile) -> tuple[Acquisition, int, int]:
    """``(Acquisition, n_channels, n_slices)`` from ScanImage frame data."""
    fd = framedata
    names: list[str] | None = None
    if "SI.hChannels.channelSave" in fd:
        ids = _flat_ints(fd["SI.hChannels.channelSave"]) or [1]
        all_names = fd.get("SI.hChannels.channelName")
        if isinstance(all_names, str):
            all_names = [all_names]
        if isinstance(all_names, list) and all(isinstance(n, str) for n in all_names):
            names = [all_names[i - 1] if 0 < i <= len(all_names) else f"Channel {i}" for i in ids]
        else:
            names = [f"Channel {i}" for i in ids]
        n_channels = len(ids)
    else:
        n_channels = max(1, int(positive(fd.get("state.acq.numberOfChannelsSave")) or 1))
    # z: a slow stack or fast-z volume; numSlices is only used when the stack is enabled
    enabled = fd.get("SI.hStackManager.enable", True) or fd.get("SI.hFastZ.enable", False)
    slices = fd.get("SI.hStackManager.actualNumSlices", fd.get("SI.hStackManager.numSlices"))
    if slices is None:
        slices = fd.get("state.acq.numberOfZSlices", 1)
    n_slices = int(positive(slices) or 1) if enabled else 1

    def first(*keys: str) -> Any:
        return next((fd[k] for k in keys if k in fd), None)

    fps = positive(first("SI.hRoiManager.scanFrameRate", "state.acq.frameRate"))
    average = positive(first("SI.hScan2D.logAverageFactor")) or 1.0
    if fps is not None:
        fps /= average
    bidi = first("SI.hScan2D.bidirectional", "state.acq.bidirectionalScan")
    pixel = None
    fov = fd.get("SI.hRoiManager.imagingFovUm")
    h, w = tif.pages.first.shape[:2]
    try:
        corners = np.asarray(fov, dtype=np.float64).reshape(-1, 2)
        extent = corners.max(0) - corners.min(0)  # (x, y) in micrometres
        if corners.shape[0] >= 2 and np.all(extent > 0):
            pixel = (float(extent[1] / h), float(extent[0] / w))
    except (TypeError, ValueError):
        pixel = None
    version = first("SI.VERSION_MAJOR")
    software = "ScanImage" + (f" {version}" if version is not None else "")
    if version is not None and "SI.VERSION_MINOR" in fd:
        software += f".{fd['SI.VERSION_MINOR']}"
    extra: dict[str, Any] = {"ScanImage": fd}
    rois = (tif.scanimage_metadata or {}).get("RoiGroups")
    if rois:
        extra["RoiGroups"] = rois
    acq = Acquisition(
        software=software,
        fps=fps,
        fps_source="ScanImage SI.hRoiManager.scanFrameRate"
        + (" / SI.hScan2D.logAverageFactor" if average != 1 else "")
        if "SI.hRoiManager.scanFrameRate" in fd
        else "ScanImage state.acq.frameRate",
        channel_names=names if n_channels > 1 or names else None,
        pixel_size_um=pixel,
        zoom=positive(first("SI.hRoiManager.scanZoomFactor", "state.acq.zoomFactor")),
        bidirectional=None if bidi is None else bool(bidi),
        extra=extra,
    )
    return acq, n_channels, n_slices


def file_acquisition(tif: tifffile.TiffFile, series: int, n_channels: int) -> Acquisition:
    """Metadata of an OME or ImageJ TIFF (empty for other TIFFs)."""
    if tif.is_ome and tif.ome_metadata:
        return _ome_acquisition(tif, series, n_channels)
    if tif.is_imagej and tif.imagej_metadata:
        return _imagej_acquisition(tif)
    return Acquisition()


def _imagej_acquisition(tif: tifffile.TiffFile) -> Acquisition:
    ij = dict(tif.imagej_metadata or {})
    finterval = positive(ij.get("finterval"))
    pixel = None
    unit = ij.get("unit")
    if unit is not None:
        res = tif.pages.first.resolution  # pixels per unit, (x, y)
        sizes = [length_um(1.0 / r, unit) if positive(r) else None for r in res]
        if all(s is not None for s in sizes):
            pixel = (sizes[1], sizes[0])
    extra = {k: v for k, v in ij.items() if k not in ("LUTs", "Ranges", "ROI", "Overlays", "Properties")}
    return Acquisition(
        software=f"ImageJ {ij['ImageJ']}" if ij.get("ImageJ") else "ImageJ",
        fps=None if finterval is None else 1.0 / finterval,
        fps_source="ImageJ finterval",
        pixel_size_um=pixel,
        extra={"ImageJ": extra},
    )


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _ome_acquisition(tif: tifffile.TiffFile, series: int, n_channels: int) -> Acquisition:
    try:
        ome = tifffile.xml2dict(tif.ome_metadata).get("OME", {})
    except Exception:  # noqa: BLE001 - malformed XML: keep the pixels, drop the metadata
        return Acquisition(software="OME-TIFF")
    images = _as_list(ome.get("Image"))
    if not images:
        return Acquisition(software="OME-TIFF")
    image = images[series] if series < len(images) else images[0]
    px = image.get("Pixels", {}) or {}
    fps, source = None, None
    dt = seconds(px.get("TimeIncrement"), px.get("TimeIncrementUnit", "s"))
    if dt is not None:
        fps, source = 1.0 / dt, "OME Pixels TimeIncrement"
    else:  # e.g. Bruker/Prairie: per-plane DeltaT
        planes = [
            p
            for p in _as_list(px.get("Plane"))
            if isinstance(p, dict) and int(p.get("TheC", 0)) == 0 and int(p.get("TheZ", 0)) == 0
        ]
        times = sorted(
            (int(p.get("TheT", 0)), seconds(p.get("DeltaT"), p.get("DeltaTUnit", "s")) or 0.0) for p in planes
        )
        steps = np.diff([t for _, t in times])
        if steps.size and np.median(steps) > 0:
            fps, source = 1.0 / float(np.median(steps)), "OME Plane DeltaT"
    sy = length_um(px.get("PhysicalSizeY"), px.get("PhysicalSizeYUnit", "µm"))
    sx = length_um(px.get("PhysicalSizeX"), px.get("PhysicalSizeXUnit", "µm"))
    channels = [c for c in _as_list(px.get("Channel")) if isinstance(c, dict)]
    names = [c.get("Name") for c in channels]
    keep = {k: v for k, v in px.items() if k not in ("TiffData", "Plane", "BinData")}
    extra: dict[str, Any] = {
        "OME": {"Image": {**{k: v for k, v in image.items() if k != "Pixels"}, "Pixels": keep}}
    }
    for key in ("Instrument", "Experimenter", "Creator"):
        if ome.get(key):
            extra["OME"][key] = ome[key]
    return Acquisition(
        software=str(ome.get("Creator") or "OME-TIFF"),
        fps=fps,
        fps_source=source,
        channel_names=[str(n) for n in names]
        if len(names) == n_channels and all(isinstance(n, str) and n for n in names)
        else None,
        pixel_size_um=(sy, sx) if sy is not None and sx is not None else None,
        extra=extra,
    )


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
        parts: list[_TiffPart] = []
        try:
            for p in paths:
                part, acq = _inspect(p, series, lock)
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
