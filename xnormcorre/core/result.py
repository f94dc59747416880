"""Building the result Dataset of a registration (names and attributes from :mod:`xnormcorre.schema`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from ..qc.flags import quality_flags
from .movie import estimated_on, source_of

__all__ = ["base_dataset", "finish", "template_da"]


def template_da(movie: xr.DataArray, tmpl: np.ndarray, how: str) -> xr.DataArray:
    """A ``(y, x)`` template with the movie's ``y``/``x`` coordinates; ``how``: estimated or user."""
    coords = {d: movie.coords[d] for d in (sc.DIM_Y, sc.DIM_X) if d in movie.coords}
    return xr.DataArray(
        tmpl.astype(np.float32),
        dims=(sc.DIM_Y, sc.DIM_X),
        coords=coords,
        name=sc.TEMPLATE,
        attrs=sc.template_attrs(movie.attrs.get("units", "a.u."), how),
    )


def base_dataset(movie: xr.DataArray, corrected, corr, tmpl_da: xr.DataArray, comment: str) -> xr.Dataset:
    """Result Dataset skeleton: input coords, ``axis``, corrected, template, correlation."""
    ds = xr.Dataset(coords=dict(movie.coords))
    ds = ds.assign_coords({sc.DIM_AXIS: (sc.DIM_AXIS, list(sc.AXIS_LABELS), dict(sc.AXIS_ATTRS))})
    ds[sc.CORRECTED] = xr.DataArray(
        corrected, attrs=sc.corrected_attrs(movie.attrs.get("units", "a.u."), comment)
    )
    ds[sc.TEMPLATE] = tmpl_da.variable
    ds[sc.CORRELATION] = xr.DataArray(corr, attrs=dict(sc.CORRELATION_ATTRS))
    return ds


def finish(
    ds: xr.Dataset,
    method: str,
    run_params: dict[str, Any],
    movie: xr.DataArray,
    ref: xr.DataArray | None,
    tmpl_da: xr.DataArray,
    max_shifts: tuple[int, int],
) -> xr.Dataset:
    """Add the quality flags and the provenance attributes."""
    ds = ds.assign(
        quality_flags(ds, max_shifts=max_shifts, max_deviation_rigid=run_params.get("max_deviation_rigid"))
    )
    ds.attrs = sc.provenance_attrs(method, run_params, source_of(movie))
    ds.attrs["shifts_estimated_on"] = estimated_on(ref, movie)
    ds.attrs["template_source"] = tmpl_da.attrs["template_source"]
    return ds
