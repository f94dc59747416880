"""NWB export, the metadata side: checks, timing, device and imaging plane, tables.

Helpers of :func:`xnormcorre.to_nwb` (see :mod:`xnormcorre.io.nwb` for the layout and
conventions of the file): everything that is not streaming the movies.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import conventions as cv
from ..stacklevel import warn

__all__ = [
    "CORRECTION",
    "SECONDS",
    "check_result",
    "correction_xy",
    "device_for",
    "find_original",
    "flat_patches",
    "imaging_plane_for",
    "linked_timing",
    "nwb_dtype",
    "parameters_table",
    "patch_grid_table",
    "require_pynwb",
    "series_timing",
    "target_path",
]

#: Units of a ``time`` coordinate in seconds.
SECONDS = ("s", "second", "seconds", "sec")
CORRECTION = (
    "correction applied to each frame (NWB convention: the x,y delta that aligns the frame to the template), "
    "columns (x, y) = (column, row), pixels; equal to minus xnormcorre's shifts, which are the displacement "
    "of the frame content relative to the template"
)


def require_pynwb():
    try:
        import pynwb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("to_nwb needs pynwb: pip install 'xnormcorre[nwb]' (or pip install pynwb)") from exc
    return pynwb


# --------------------------------------------------------------------------- checks
def check_result(res: Any) -> xr.Dataset:
    if not isinstance(res, xr.Dataset):
        raise TypeError(f"res must be a result Dataset of rigid/pwrigid, got {type(res).__name__}")
    for name in ("corrected", "shifts", "template"):
        if name not in res:
            raise ValueError(
                f"res has no {name!r} variable: to_nwb needs a full result of rigid/pwrigid "
                "(corrected movie, shifts and template)"
            )
    cv.as_movie(res["corrected"], name="res.corrected")
    if res["corrected"].dims != cv.MOVIE_DIMS:
        raise ValueError(f"res.corrected must have dims {cv.MOVIE_DIMS}, got {res['corrected'].dims}")
    return res


def nwb_dtype(dtype: Any) -> np.dtype:
    out = np.dtype(np.float32 if dtype is None else dtype)
    if out.kind not in "iuf":
        raise TypeError(f"dtype must be a NumPy integer or float dtype, got {out}")
    return out


def target_path(path: str | os.PathLike, *, append: bool, overwrite: bool) -> Path:
    p = Path(os.fspath(path)).expanduser().absolute()
    if p.is_dir():
        raise IsADirectoryError(f"path {str(p)!r} is a directory; give a file name")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"folder {str(p.parent)!r} of the output file does not exist")
    if append:
        if not p.exists():
            raise FileNotFoundError(f"append=True needs an existing NWB file, {str(p)!r} does not exist")
        if overwrite:
            raise ValueError("give append=True (add to the file) or overwrite=True (replace it), not both")
    elif p.exists() and not overwrite:
        raise FileExistsError(
            f"{str(p)!r} exists; pass append=True to add to it or overwrite=True to replace it"
        )
    return p


# --------------------------------------------------------------------------- timing
def series_timing(res: xr.Dataset, rate: float | None, original: Any) -> dict[str, Any]:
    """``rate``/``starting_time`` or ``timestamps`` (seconds) of the series."""
    t = res["time"]
    n = t.size
    seconds = str(t.attrs.get("units", "")).lower() in SECONDS
    vals = np.asarray(t.values, dtype=np.float64)
    if rate is not None:
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
            raise TypeError(f"rate must be a positive frame rate in Hz, got {rate!r}")
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"rate must be a positive, finite frame rate in Hz, got {rate!r}")
        start = vals[0] if seconds else vals[0] / float(rate)
        return {"rate": float(rate), "starting_time": float(start)}
    if seconds and n >= 2:
        step = np.diff(vals)
        if step[0] > 0 and np.allclose(step, step[0], rtol=1e-9, atol=0):
            return {"rate": float(1.0 / step[0]), "starting_time": float(vals[0])}
        return {"timestamps": vals}
    if original is not None and getattr(original, "data", None) is not None:
        if original.rate is not None:
            return {"rate": float(original.rate), "starting_time": float(original.starting_time or 0.0)}
        if original.timestamps is not None and len(original.timestamps) == n:
            return {"timestamps": original}  # link to the original's timestamps
    warn(
        "the result's time coordinate is the frame index, so the NWB series get rate = 1.0 Hz; "
        "pass rate=<frames per second> (or open the movie with fps=) to store the real frame rate",
        UserWarning,
    )
    return {"rate": 1.0, "starting_time": float(vals[0])}


def linked_timing(timing: Mapping[str, Any], first: Any) -> dict[str, Any]:
    """Timing of further series: the same rate, or a link to the first series' timestamps."""
    if "timestamps" in timing:
        return {"timestamps": first}
    return dict(timing)


# --------------------------------------------------------------------------- metadata
def device_for(nwbfile, device: str | Mapping[str, Any]):
    from pynwb.device import Device

    if isinstance(device, str):
        if device in nwbfile.devices:
            return nwbfile.devices[device]
        return nwbfile.create_device(name=device, description="imaging device")
    if isinstance(device, Mapping):
        spec = dict(device)
        name = spec.pop("name", "Microscope")
        if name in nwbfile.devices:
            return nwbfile.devices[name]
        dev = Device(name=name, **spec)
        nwbfile.add_device(dev)
        return dev
    raise TypeError(f"device must be a device name or a dict of Device fields, got {type(device).__name__}")


def imaging_plane_for(nwbfile, imaging_plane: str | Mapping[str, Any] | None, device, original):
    from pynwb.ophys import OpticalChannel

    planes = nwbfile.imaging_planes
    if isinstance(imaging_plane, str):
        if imaging_plane not in planes:
            raise ValueError(
                f"imaging_plane={imaging_plane!r} is not in the file (it has {sorted(planes)}); "
                "pass a dict of ImagingPlane fields to create one"
            )
        return planes[imaging_plane]
    if imaging_plane is None:
        if original is not None and getattr(original, "imaging_plane", None) is not None:
            return original.imaging_plane
        if len(planes) == 1:
            return next(iter(planes.values()))
        imaging_plane = {}
    if not isinstance(imaging_plane, Mapping):
        raise TypeError(
            f"imaging_plane must be a plane name, a dict of ImagingPlane fields or None, got {imaging_plane!r}"
        )
    spec = {
        "name": "ImagingPlane",
        "description": "imaging plane",
        "excitation_lambda": float("nan"),
        "indicator": "unknown",
        "location": "unknown",
        **dict(imaging_plane),
    }
    if spec["name"] in planes:
        raise ValueError(
            f"the file already has an imaging plane {spec['name']!r}; pass imaging_plane={spec['name']!r}"
        )
    channel = spec.pop("optical_channel", None)
    if channel is None or isinstance(channel, Mapping):
        channel = OpticalChannel(
            **{
                "name": "OpticalChannel",
                "description": "optical channel",
                "emission_lambda": float("nan"),
                **dict(channel or {}),
            }
        )
    return nwbfile.create_imaging_plane(optical_channel=channel, device=device, **spec)


def find_original(nwbfile, name: str | None, n: int):
    from pynwb.image import ImageSeries

    acq = nwbfile.acquisition
    if name is not None:
        if name not in acq or not isinstance(acq[name], ImageSeries):
            series = sorted(k for k, v in acq.items() if isinstance(v, ImageSeries))
            raise ValueError(
                f"original={name!r} is not an image series in the file's acquisition (it has {series})"
            )
        series = acq[name]
        if series.data is not None and len(series.data) not in (0, n):
            raise ValueError(f"original={name!r} has {len(series.data)} frames, the result {n}")
        return series
    found = [
        v for v in acq.values() if isinstance(v, ImageSeries) and v.data is not None and len(v.data) == n
    ]
    return found[0] if len(found) == 1 else None


def _attr_text(value: Any) -> str:
    """An attribute as text: itself if a string, else JSON (NumPy values, e.g. of a result read
    back from NetCDF, as the Python values they hold)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    return json.dumps(value, default=str)


def parameters_table(name: str, attrs: Mapping[str, Any]):
    from hdmf.common import DynamicTable

    table = DynamicTable(
        name=name,
        description="parameters of the motion correction, then the other attributes of the result "
        "(method, sign convention, source, package versions); values as text, JSON for numbers, lists and null",
    )
    table.add_column(name="parameter", description="parameter or attribute name")
    table.add_column(name="value", description="value as text (JSON for numbers, lists and null)")
    try:
        params = json.loads(attrs.get("parameters", "{}"))
    except (TypeError, json.JSONDecodeError):
        params = {}
    for k, v in params.items():
        table.add_row(parameter=str(k), value=_attr_text(v))
    for k, v in attrs.items():
        if k != "parameters" and k not in params:
            table.add_row(parameter=str(k), value=_attr_text(v))
    return table


def patch_grid_table(name: str, res: xr.Dataset):
    from hdmf.common import DynamicTable

    ny, nx = res.sizes["patch_y"], res.sizes["patch_x"]
    iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    cols = {
        "patch_index_y": ("index of the patch along y (rows)", iy.ravel()),
        "patch_index_x": ("index of the patch along x (columns)", ix.ravel()),
        "centre_y": ("patch centre along y (row), pixels", np.repeat(res["patch_y"].values, nx)),
        "centre_x": ("patch centre along x (column), pixels", np.tile(res["patch_x"].values, ny)),
    }
    for ax, n_other, rep in (("y", nx, np.repeat), ("x", ny, np.tile)):
        for end in ("start", "stop"):
            coord = f"patch_{ax}_{end}"
            if coord in res.coords:
                what = "first pixel" if end == "start" else "one past the last pixel"
                cols[f"{ax}_{end}"] = (f"{what} of the patch along {ax}", rep(res[coord].values, n_other))
    table = DynamicTable(
        name=name,
        description=f"piecewise-rigid patch grid, one row per patch k = patch_index_y * {nx} + patch_index_x "
        "(the order of the patch dimension of the patch shifts); the patch is frame[y_start:y_stop, x_start:x_stop]",
    )
    for col, (desc, _) in cols.items():
        table.add_column(name=col, description=desc)
    for k in range(ny * nx):
        table.add_row(**{col: vals[k].item() for col, (_, vals) in cols.items()})
    return table


def flat_patches(var: xr.DataArray) -> xr.DataArray:
    """(time, patch_y, patch_x[, axis]) -> (time, patch[, axis]) in row-major patch order."""
    order = ["time", "patch_y", "patch_x", *[d for d in var.dims if d not in ("time", "patch_y", "patch_x")]]
    return var.transpose(*order)


def correction_xy(shifts: np.ndarray) -> np.ndarray:
    """xnormcorre shifts (..., axis=(y, x)) -> NWB correction (..., (x, y))."""
    return np.ascontiguousarray(-shifts[..., ::-1], dtype=np.float32)
