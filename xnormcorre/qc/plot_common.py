"""What the quality-control plots share: a figure outside pyplot, the check of a result, its
time axis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["check_result", "figure", "is_piecewise", "time_axis"]


def figure(**kw: Any) -> Figure:
    """A constrained-layout matplotlib Figure not managed by pyplot (``ImportError`` without matplotlib)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError('plotting needs matplotlib: pip install "xnormcorre[plot]"') from err
    return Figure(layout="constrained", **kw)


def check_result(ds: Any, name: str = "ds") -> xr.Dataset:
    """``ds`` if it is a registration result (a Dataset with ``shifts``), else ``TypeError``/``ValueError``."""
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"{name} must be a registration result Dataset, got {type(ds).__name__}")
    if "shifts" not in ds:
        raise ValueError(f"{name} has no 'shifts' variable: not a registration result")
    return ds


def is_piecewise(ds: xr.Dataset) -> bool:
    """True for a piecewise-rigid result (``shifts`` along ``patch_y`` and ``patch_x``)."""
    return "patch_y" in ds["shifts"].dims and "patch_x" in ds["shifts"].dims


def time_axis(ds: xr.Dataset | xr.DataArray) -> tuple[np.ndarray, str]:
    """The values along ``time`` (its coordinate, else the frame index) and their axis label."""
    n = ds.sizes["time"]
    if "time" in ds.coords:
        t = ds["time"]
        name = t.attrs.get("long_name", "time")
        units = t.attrs.get("units")
        return np.asarray(t.values), f"{name} [{units}]" if units and units != "1" else name
    return np.arange(n), "frame index"
