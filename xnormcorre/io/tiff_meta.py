"""Acquisition metadata of TIFF files, read with tifffile's ScanImage, ImageJ and OME parsers.

:func:`scanimage_framedata` and :func:`scanimage_acquisition` read a ScanImage file's frame
data (frame rate, zoom, channels saved, z stack, field of view); :func:`file_acquisition`
reads an OME-TIFF's ``Pixels`` (time increment or plane times, pixel size, channel names)
or an ImageJ TIFF's ``finterval`` and resolution.  Each returns an
:class:`~xnormcorre.io._meta.Acquisition` for :mod:`xnormcorre.io.tiff`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _common as cm
from ._meta import Acquisition, length_um, positive, seconds

__all__ = ["file_acquisition", "scanimage_acquisition", "scanimage_framedata"]

#: tifffile, imported on first use (listing xarray's engines stays light).
tifffile = cm.LazyModule("tifffile")


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
