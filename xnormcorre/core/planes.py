"""Multi-plane movies ``(time, z, y, x)``: each plane registered in 2-D to its own template.

``planes="independent"`` of :func:`xnormcorre.rigid` and :func:`xnormcorre.pwrigid` runs
the 2-D registration on every plane (``movie.isel(z=i)``) and stacks the results along
the plane dim, so a run equals a per-plane loop bit for bit and stays lazy on dask
input.  Per-plane run attributes that differ between planes (noise model, quality
verdict, ...) are kept as one value per plane: a list of numbers, or for text one
``"z=i: ..."`` entry per plane joined with ``"; "``; their names are listed
(comma-separated) in the ``plane_attrs`` attribute, so :func:`plane_result` gives back each plane's own run.
:func:`apply_shifts_by_plane` applies such shifts (``(time, z, axis)``,
``(time, z, patch_y, patch_x, axis)`` or a result Dataset) plane by plane.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc

__all__ = [
    "PLANES",
    "apply_shifts_by_plane",
    "by_plane",
    "plane_dim_of",
    "plane_result",
    "wants_planes",
]

#: Values of the ``planes`` parameter.
PLANES = ("independent", "volume")

#: Parameters sliced per plane when they carry the plane dim (positional axis of a NumPy array).
_PER_PLANE_AXIS = {"template": 0, "reference": 1, "defects": 0}


def _check_planes(planes: Any, plane_dim: Any) -> None:
    if planes is not None and planes not in PLANES:
        raise ValueError(f"planes must be None, 'independent' or 'volume', got {planes!r}")
    if not isinstance(plane_dim, str) or plane_dim in (sc.DIM_TIME, sc.DIM_Y, sc.DIM_X, sc.DIM_AXIS):
        raise ValueError(f"plane_dim must be the name of the movie's plane dim (e.g. 'z'), got {plane_dim!r}")


def wants_planes(movie: Any, planes: Any, plane_dim: Any) -> bool:
    """Whether a run must go through :func:`by_plane` (or fail with a clear message):
    ``planes`` given, or a movie with the plane dim (a DataArray) or 4 dims (an array)."""
    _check_planes(planes, plane_dim)
    if planes is not None:
        return True
    if isinstance(movie, xr.DataArray):
        return plane_dim in movie.dims
    shape = getattr(movie, "shape", None)
    return shape is not None and len(shape) == 4


def _as_planes_movie(movie: Any, plane_dim: str) -> xr.DataArray:
    """The movie as a ``(time, plane, y, x)`` DataArray, or one clear error."""
    if not isinstance(movie, xr.DataArray):
        if not hasattr(movie, "shape"):
            movie = np.asarray(movie)
        if len(movie.shape) != 4:
            raise ValueError(
                f"planes='independent' needs a 4-D movie (time, {plane_dim}, y, x), got shape {tuple(movie.shape)}"
            )
        movie = xr.DataArray(movie, dims=(sc.DIM_TIME, plane_dim, sc.DIM_Y, sc.DIM_X), name="movie")
    dims = (sc.DIM_TIME, plane_dim, sc.DIM_Y, sc.DIM_X)
    if plane_dim not in movie.dims:
        raise ValueError(
            f"planes='independent' needs a plane dim {plane_dim!r} in the movie, got dims {movie.dims}; "
            "name the movie's plane dim with plane_dim=..."
        )
    if set(movie.dims) != set(dims):
        raise ValueError(f"a multi-plane movie must have dims {dims}, got {movie.dims}")
    if movie.sizes[plane_dim] == 0:
        raise ValueError(f"movie has zero planes along {plane_dim!r}")
    return movie.transpose(*dims)


def _plane_arg(name: str, value: Any, i: int, plane_dim: str, n: int) -> Any:
    """The value of parameter ``name`` for plane ``i`` (sliced if it has the plane dim)."""
    if isinstance(value, xr.DataArray):
        if plane_dim in value.dims:
            if value.sizes[plane_dim] != n:
                raise ValueError(f"{name} has {value.sizes[plane_dim]} planes but the movie has {n}")
            return value.isel({plane_dim: i})
        return value
    axis = _PER_PLANE_AXIS.get(name)
    if axis is not None and hasattr(value, "shape") and not isinstance(value, (bool, np.bool_)):
        full = {"template": 3, "reference": 4, "defects": 3}[name]
        if len(value.shape) == full:
            if value.shape[axis] != n:
                raise ValueError(f"{name} has {value.shape[axis]} planes but the movie has {n}")
            return value[(slice(None),) * axis + (i,)]
    return value


def _merge_attrs(parts: list[xr.Dataset], plane_dim: str) -> dict:
    """Run attributes of the planes: shared ones once, differing ones one value per plane."""
    out: dict = {}
    varying: list[str] = []
    for key in parts[0].attrs:
        values = [p.attrs.get(key) for p in parts]
        if all(_same(values[0], v) for v in values[1:]):
            out[key] = values[0]
            continue
        varying.append(key)
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            out[key] = [v.item() if hasattr(v, "item") else v for v in values]
        else:
            out[key] = "; ".join(f"{plane_dim}={i}: {v}" for i, v in enumerate(values))
    out["planes"] = "independent"
    out["plane_dim"] = plane_dim
    out["plane_attrs"] = ",".join(varying)
    return out


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:  # noqa: BLE001 - unlike values
        return False


def by_plane(
    fn: Callable[..., xr.Dataset], movie: Any, planes: Any, plane_dim: str, kwargs: dict
) -> xr.Dataset:
    """Run ``fn`` (``rigid`` or ``pwrigid``) on every plane of ``movie`` with ``kwargs``
    (the caller's ``locals()``: its parameters, ``**aliases`` expanded; per-plane ``template``/``reference``/``defects``/DataArray values sliced) and stack
    the results along ``plane_dim``.  ``planes`` None or "volume": 3-D registration of the
    volume (:func:`xnormcorre.core.volume.rigid_volume` or
    :func:`xnormcorre.core.volume_pw.pwrigid_volume`).  ``store=`` is refused for both."""
    if kwargs.get("store") is not None:
        raise ValueError(
            "store= is not available yet for multi-plane or volume movies; register without a store "
            "(or save each plane's result with to_netcdf)"
        )
    if planes != "independent":
        from .volume import rigid_volume
        from .volume_pw import pwrigid_volume

        if fn.__name__ == "pwrigid":
            return pwrigid_volume(movie, plane_dim, kwargs)
        return rigid_volume(movie, plane_dim, kwargs)
    movie = _as_planes_movie(movie, plane_dim)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("movie", "planes", "plane_dim", "aliases")} | dict(
        kwargs.get("aliases", {})
    )
    n = movie.sizes[plane_dim]
    parts = []
    for i in range(n):
        args = {k: _plane_arg(k, v, i, plane_dim, n) for k, v in kwargs.items()}
        parts.append(fn(movie.isel({plane_dim: i}), **args))
    ds = xr.concat(
        parts, dim=plane_dim, data_vars="all", coords="minimal", compat="override", combine_attrs="drop"
    )
    order = [d for d in (sc.DIM_TIME, plane_dim) if d in ds.dims]
    ds = ds.transpose(*order, ...)
    ds.attrs = _merge_attrs(parts, plane_dim)
    return ds


def plane_dim_of(shifts: Any) -> str | None:
    """The plane dim of multi-plane shifts or results (None for 2-D ones)."""
    if isinstance(shifts, xr.Dataset | xr.DataArray):
        dim = shifts.attrs.get("plane_dim")
        if isinstance(dim, str) and dim in shifts.dims:
            return dim
        if isinstance(shifts, xr.DataArray):
            extra = [d for d in shifts.dims if d not in (sc.DIM_TIME, sc.DIM_AXIS, *sc.PATCH_DIMS)]
            if len(extra) == 1 and sc.DIM_TIME in shifts.dims and sc.DIM_AXIS in shifts.dims:
                return str(extra[0])
    return None


def plane_result(ds: xr.Dataset, i: int) -> xr.Dataset:
    """Plane ``i`` of a multi-plane result, with that plane's own run attributes.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"shifts": (("time", "z", "axis"), np.zeros((2, 3, 2)))},
    ...                 attrs={"plane_dim": "z", "plane_attrs": "noise_gain", "noise_gain": [1.0, 2.0, 3.0]})
    >>> plane_result(ds, 1).attrs["noise_gain"]
    2.0
    """
    dim = ds.attrs["plane_dim"]
    out = ds.isel({dim: i})
    attrs = dict(ds.attrs)
    varying = [k for k in str(attrs.pop("plane_attrs", "")).split(",") if k]
    for key in varying:
        value = attrs.get(key)
        if isinstance(value, list | tuple | np.ndarray):
            attrs[key] = np.asarray(value)[i].item()
        elif isinstance(value, str):
            prefix = f"{dim}={i}: "
            entry = [s for s in value.split("; ") if s.startswith(prefix)]
            attrs[key] = entry[0][len(prefix) :] if entry else value
    for key in ("planes", "plane_dim"):
        attrs.pop(key, None)
    out.attrs = attrs
    return out


def apply_shifts_by_plane(
    apply: Callable[..., xr.DataArray], movie: Any, shifts: Any, plane_dim: str, kwargs: dict
) -> xr.DataArray:
    """``apply`` (:func:`xnormcorre.apply_shifts`) on every plane of ``movie`` with that
    plane's shifts; the corrected planes stacked as ``(time, plane, y, x)``."""
    movie = _as_planes_movie(movie, plane_dim)
    n = movie.sizes[plane_dim]
    if shifts.sizes[plane_dim] != n:
        raise ValueError(f"shifts have {shifts.sizes[plane_dim]} planes but the movie has {n}")
    parts = []
    for i in range(n):
        sh = plane_result(shifts, i) if isinstance(shifts, xr.Dataset) else shifts.isel({plane_dim: i})
        args = {k: _plane_arg(k, v, i, plane_dim, n) for k, v in kwargs.items()}
        parts.append(apply(movie.isel({plane_dim: i}), sh, **args))
    out = xr.concat(parts, dim=plane_dim, coords="minimal", compat="override", combine_attrs="override")
    return out.transpose(sc.DIM_TIME, plane_dim, ...)
