"""Building the result Dataset of a registration (names and attributes from :mod:`xnormcorre.schema`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from ..qc.diagnose import conclude
from ..qc.flags import quality_flags
from .movie import estimated_on, source_of
from .scanphase import record_scan_phase, scan_phase_parameter

__all__ = ["base_dataset", "complete", "finish", "template_da"]


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


def complete(
    ds: xr.Dataset,
    method: str,
    opts: Any,
    params: Any,
    *,
    movie: xr.DataArray,
    ref: xr.DataArray | None,
    tmpl_da: xr.DataArray,
    min_mov: float | None,
    scan_phase: Any,
    phase: Any,
    cal: Any,
    sample_shifts: np.ndarray | None,
) -> xr.Dataset:
    """The last steps of a 2-D run: parameters and flags (:func:`finish`), the scan phase
    used, and the verdict on the run (:func:`xnormcorre.qc.diagnose.conclude`, which warns).

    ``opts`` are the run's validated options, ``params`` its engine parameters of the rigid
    step (batch size, clip), ``phase`` the scan phase applied (None without).
    """
    run_params = opts.run_parameters(
        min_mov=min_mov,
        batch_size=params.batch_size,
        clip=params.clip,
        scan_phase=scan_phase_parameter(scan_phase),
    )
    ds = finish(ds, method, run_params, movie, ref, tmpl_da, opts.max_shifts)
    ds = record_scan_phase(ds, phase)
    return conclude(ds, cal, sample_shifts, opts.max_shifts)
