"""The TIFF files of a movie: open one, find how its frames and channels are laid out, and
refuse a truncated file.

:func:`inspect_tiff` describes one file as a :class:`TiffPart` (its series, frame shape,
dtype, channel or z planes and, for frames stored uncompressed back to back, their data
offset) with its acquisition metadata; :class:`TiffPart` reads frames from it through
xarray's file cache.  A file whose data end past the end of the file, or that tifffile
reports corrupt, raises ``ValueError`` when it is opened, not when a frame is read.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _common as cm
from ._lazy import CachingFileManager, SerializableLock
from ._meta import Acquisition, positive
from .tiff_meta import file_acquisition, scanimage_acquisition, scanimage_framedata

__all__ = ["TiffPart", "inspect_tiff"]

#: tifffile, imported on first use (listing xarray's engines stays light).
tifffile = cm.LazyModule("tifffile")


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
class TiffPart:
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


def _check_complete(path: str, logged: list[str], part: TiffPart | None) -> None:
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


def inspect_tiff(path: str, series: int | None, lock: Any) -> tuple[TiffPart, Acquisition]:
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


def _scanimage_volume_error(path: str, why: str, n_z: int) -> ValueError:
    return ValueError(
        f"ScanImage file {path!r} holds a volume ({n_z} z planes) that cannot be read volume by volume: "
        f"{why}. Volumes of one saved channel, one frame per slice, are opened as (time, z, y, x); "
        "otherwise open one plane at a time, e.g. xr.DataArray(tifffile.imread(path)[k::planes]) for plane k"
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


def _inspect_layout(path: str, series: int | None, lock: Any) -> tuple[TiffPart, Acquisition]:
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
            part = TiffPart(
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
) -> tuple[TiffPart, Acquisition]:
    """A ScanImage file: its pages interleave the saved channels of each frame.

    A stack or fast-z acquisition of one saved channel is a volumetric movie: its pages
    hold the slices of each volume in turn (``second="z"``).
    """
    acq, n_channels, n_slices = scanimage_acquisition(framedata, tif)
    if n_slices == 1:
        what = f"{n_channels} channels are saved (SI.hChannels.channelSave)"
        return _interleaved_pages(path, manager, tif, lock, n_channels, "channel", what), acq
    if n_channels > 1:
        raise _scanimage_volume_error(
            path, f"{n_channels} channels are saved (volumes with channels)", n_slices
        )
    fd = framedata
    fast_z = bool(fd.get("SI.hFastZ.enable", False))
    per_slice = fd.get("SI.hStackManager.framesPerSlice", 1)
    if not fast_z and isinstance(per_slice, (int, float)) and np.isfinite(per_slice) and per_slice > 1:
        raise _scanimage_volume_error(path, f"{int(per_slice)} frames per slice (a slow stack)", n_slices)
    flyback = fd.get("SI.hFastZ.numDiscardFlybackFrames", 0) or 0
    if fast_z and flyback and not fd.get("SI.hFastZ.discardFlybackFrames", False):
        raise _scanimage_volume_error(
            path, f"{int(flyback)} flyback frames are saved with each volume", n_slices
        )
    what = f"{n_slices} z slices per volume (SI.hStackManager.numSlices)"
    part = _interleaved_pages(path, manager, tif, lock, n_slices, "z", what)
    volume_rate = positive(fd.get("SI.hRoiManager.scanVolumeRate"))
    if volume_rate is not None:
        acq = replace(acq, fps=volume_rate, fps_source="ScanImage SI.hRoiManager.scanVolumeRate")
    elif acq.fps is not None:
        acq = replace(acq, fps=acq.fps / n_slices, fps_source=f"{acq.fps_source} / {n_slices} slices")
    return part, acq


def _interleaved_pages(
    path: str, manager: CachingFileManager, tif: tifffile.TiffFile, lock: Any, n: int, second: str, what: str
) -> TiffPart:
    """A file of ``(y, x)`` pages, ``n`` per frame (channels or z slices) in turn."""
    n_pages = len(tif.pages)
    if n_pages % n:
        raise ValueError(
            f"inconsistent ScanImage metadata in {path!r}: {what} but the file has {n_pages} pages, "
            f"not a multiple of {n}"
        )
    page = tif.pages.first
    if len(page.shape) != 2:
        raise ValueError(f"ScanImage file {path!r} has pages of shape {page.shape}; expected (y, x) pages")
    h, w = page.shape
    return TiffPart(
        path=path,
        manager=manager,
        lock=lock,
        series=-1,
        n_frames=n_pages // n,
        frame_shape=(int(h), int(w)),
        dtype=np.dtype(page.dtype),
        dataoffset=None,
        n_channels=n,
        stride_t=n,
        stride_c=1,
        second=second,
    )


def _all_pages_part(path: str, manager: CachingFileManager, tif: tifffile.TiffFile, lock: Any) -> TiffPart:
    page = tif.series[0]
    h, w = page.shape
    return TiffPart(
        path=path,
        manager=manager,
        lock=lock if lock is not None else SerializableLock(),
        series=-1,
        n_frames=len(tif.pages),
        frame_shape=(int(h), int(w)),
        dtype=np.dtype(page.dtype),
        dataoffset=None,
    )
