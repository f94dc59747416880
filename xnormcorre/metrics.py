"""Quality metrics of a registration (anchors.md §b), on DataArrays.

``crop`` removes a border of that many pixels on each side before computing, so that
methods can be compared on the same pixels; NaN pixels are ignored.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import conventions as cv

__all__ = ["correlation_with_mean", "crispness"]


def _crop(da: xr.DataArray, crop: int) -> xr.DataArray:
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    if crop == 0:
        return da
    if 2 * crop >= min(da.sizes["y"], da.sizes["x"]):
        raise ValueError(f"crop={crop} removes the whole frame {da.sizes['y']}x{da.sizes['x']}")
    return da.isel(y=slice(crop, -crop), x=slice(crop, -crop))


def crispness(movie: xr.DataArray, *, crop: int = 0) -> float:
    """Crispness of the mean image (NoRMCorre ``motion_metrics.m``; M2).

    ``‖ |∇m| ‖_F`` with ``m`` the NaN-mean over time and ``∇`` the ``numpy.gradient``
    stencil (central differences inside, one-sided at the edges).  Higher is sharper;
    compare only movies of the same data with the same ``crop``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> m = xr.DataArray(np.tile(np.arange(4.0), (2, 4, 1)), dims=("time", "y", "x"))
    >>> crispness(m)
    4.0
    """
    mv = _crop(cv.as_movie(movie), crop)
    mean = np.asarray(mv.mean("time", skipna=True).values, dtype=np.float64)
    gy, gx = np.gradient(mean)
    return float(np.sqrt(np.nansum(gy**2 + gx**2)))


def correlation_with_mean(movie: xr.DataArray, *, crop: int = 0, reference=None) -> xr.DataArray:
    """Pearson correlation of each frame with the mean image (or ``reference``; M1).

    Returns a ``(time,)`` DataArray; NaN pixels are left out pairwise.
    """
    mv = _crop(cv.as_movie(movie), crop).astype(np.float64)
    ref = mv.mean("time", skipna=True) if reference is None else _crop(reference, crop)
    ok = np.isfinite(mv) & np.isfinite(ref)
    a = mv.where(ok)
    b = ref.where(ok)
    da = a - a.mean(("y", "x"))
    db = b - b.mean(("y", "x"))
    c = (da * db).sum(("y", "x")) / np.sqrt((da**2).sum(("y", "x")) * (db**2).sum(("y", "x")))
    c.attrs = {"long_name": "correlation of frame with mean image", "units": "1"}
    return c.rename("correlation_with_mean")
