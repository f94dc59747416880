"""Acquisition metadata shared by the backends: channels, frame rate, pixel size, the rest as JSON.

A backend fills an :class:`Acquisition` from its format's own parser (tifffile for
ScanImage / ImageJ / OME, scipy.io or h5py for Scanbox ``.mat`` files) and calls
:func:`apply_acquisition` on the Dataset: the movie variable then carries NetCDF-safe
attrs (``fps``, ``scan_zoom``, ``bidirectional`` ...), the ``y``/``x`` coordinates the
pixel size in micrometres, and everything else is kept as one JSON string
(``acquisition_metadata``).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

DIM_CHANNEL = "channel"
CHANNEL_NAME = "channel_name"

#: Length units of micrometres and their factors (OME ``UnitsLength``, ImageJ ``unit``).
_TO_UM = {
    "um": 1.0,
    "µm": 1.0,
    "\u03bcm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}
#: Time units and their factors to seconds (OME ``UnitsTime``).
_TO_S = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "µs": 1e-6, "\u03bcs": 1e-6, "us": 1e-6, "min": 60.0, "h": 3600.0}


@dataclass
class Acquisition:
    """What a backend learned from a file's metadata (all optional)."""

    software: str | None = None
    fps: float | None = None
    fps_source: str | None = None
    channel_names: list[str] | None = None
    pixel_size_um: tuple[float, float] | None = None  # (y, x)
    zoom: float | None = None
    bidirectional: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def length_um(value: Any, unit: Any = "µm") -> float | None:
    """A positive length in micrometres, or None if missing or in an unknown unit.

    Examples
    --------
    >>> length_um(600, "nm"), length_um("0.5"), length_um(1, "pixel")
    (0.6, 0.5, None)
    """
    factor = _TO_UM.get(str(unit).strip() if unit is not None else "µm")
    size = positive(value)
    return None if factor is None or size is None else size * factor


def seconds(value: Any, unit: Any = "s") -> float | None:
    """A positive duration in seconds, or None."""
    factor = _TO_S.get(str(unit).strip() if unit is not None else "s")
    size = positive(value)
    return None if factor is None or size is None else size * factor


def positive(value: Any) -> float | None:
    """``value`` as a positive finite float, else None."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def json_safe(obj: Any, depth: int = 0) -> Any:
    """``obj`` with NumPy scalars/arrays, bytes, MATLAB structs and non-finite floats made JSON-safe."""
    if depth > 20:
        return str(obj)
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    if isinstance(obj, numbers.Complex):
        return str(obj)
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "US":
            return json_safe(obj.tolist(), depth + 1)
        if obj.dtype.kind == "O" or obj.dtype.names:
            return (
                [json_safe(v, depth + 1) for v in obj.ravel().tolist()] if obj.ndim else json_safe(obj.item())
            )
        return json_safe(obj.tolist(), depth + 1)
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, depth + 1) for v in obj]
    fields = getattr(obj, "_fieldnames", None)  # scipy.io.matlab mat_struct
    if fields is not None:
        return {f: json_safe(getattr(obj, f, None), depth + 1) for f in fields}
    return str(obj)


def channel_coords(n_channels: int, names: Sequence[str] | None) -> dict[str, Any]:
    """Coordinates of the ``channel`` dim: the index, and ``channel_name`` when names are known."""
    coords: dict[str, Any] = {
        DIM_CHANNEL: (
            DIM_CHANNEL,
            np.arange(n_channels, dtype=np.int64),
            {"long_name": "channel", "units": "1"},
        )
    }
    if names is not None and len(names) == n_channels:
        coords[CHANNEL_NAME] = (
            DIM_CHANNEL,
            np.array([str(n) for n in names]),
            {"long_name": "channel name (from the file's metadata)", "units": "1"},
        )
    return coords


def apply_acquisition(ds: xr.Dataset, acq: Acquisition, *, user_fps: float | None, var: str) -> xr.Dataset:
    """Attach ``acq`` to the Dataset: NetCDF-safe attrs on ``var``, pixel size on ``y``/``x``."""
    if CHANNEL_NAME in ds.coords:
        ds = ds.set_xindex(CHANNEL_NAME)
    attrs: dict[str, Any] = {}
    if acq.software:
        attrs["acquisition_software"] = acq.software
    if acq.fps is not None:
        if user_fps is None:
            attrs["fps"] = float(acq.fps)
            attrs["fps_source"] = acq.fps_source or "file metadata"
        elif not math.isclose(user_fps, acq.fps, rel_tol=1e-6):
            attrs["metadata_fps"] = float(acq.fps)
    if acq.zoom is not None:
        attrs["scan_zoom"] = float(acq.zoom)
    if acq.bidirectional is not None:
        attrs["bidirectional"] = int(bool(acq.bidirectional))
    if acq.extra:
        attrs["acquisition_metadata"] = json.dumps(json_safe(acq.extra), sort_keys=True)
    if var in ds.variables and attrs:
        ds[var].attrs.update(attrs)
    if acq.pixel_size_um is not None:
        for dim, size in zip(("y", "x"), acq.pixel_size_um, strict=True):
            if dim in ds.coords and size is not None:
                ds[dim].attrs["pixel_size_um"] = float(size)
    return ds
