"""Names, attributes and input validation shared by the labeled API.

Sign convention (used everywhere in xnormcorre): a *shift* is the displacement of a
frame's content relative to the template, ``frame(r) ≈ template(r - shift)``; the
corrected frame is the frame moved by ``-shift``.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import xarray as xr

DIM_TIME, DIM_Y, DIM_X, DIM_AXIS = "time", "y", "x", "axis"
MOVIE_DIMS = (DIM_TIME, DIM_Y, DIM_X)
BORDERS = ("copy", "nan", "zero", "min")

SIGN_CONVENTION = (
    "displacement of the frame content relative to the template: "
    "frame(r) = template(r - shift); corrected = frame moved by -shift"
)

SHIFT_ATTRS = {
    "long_name": "rigid displacement of frame content relative to the template",
    "units": "pixel",
    "comment": SIGN_CONVENTION,
}


def package_versions() -> dict[str, str]:
    """Versions of xnormcorre and the libraries that determine its numbers."""
    out = {}
    for pkg in ("xnormcorre", "jax", "jaxlib", "numpy", "xarray"):
        try:
            out[f"{pkg}_version"] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            out[f"{pkg}_version"] = "unknown"
    return out


def netcdf_safe(value: Any) -> Any:
    """Convert a parameter value to a NetCDF-safe attribute (str/int/float/list), or None."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return [netcdf_safe(v) for v in value]
    return str(value)


def provenance_attrs(method: str, params: Mapping[str, Any], source: str | None = None) -> dict:
    """Dataset attrs: method, every parameter (flat and as JSON), versions, source."""
    attrs: dict[str, Any] = {"method": method}
    for k, v in params.items():
        safe = netcdf_safe(v)
        if safe is not None:
            attrs[k] = safe
    attrs["parameters"] = json.dumps({k: netcdf_safe(v) for k, v in params.items()}, sort_keys=True)
    attrs["sign_convention"] = SIGN_CONVENTION
    attrs.update(package_versions())
    if source:
        attrs["source"] = str(source)
    return attrs


def parameters_from_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Recover the keyword arguments of the run that produced a result Dataset.

    Examples
    --------
    >>> parameters_from_attrs({"parameters": '{"max_shifts": [3, 3], "seed": 0}'})
    {'max_shifts': (3, 3), 'seed': 0}
    """
    if "parameters" not in attrs:
        raise ValueError("attrs has no 'parameters' entry: not an xnormcorre result")
    params = json.loads(attrs["parameters"])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


# --------------------------------------------------------------------------- validation
def as_movie(movie: Any, name: str = "movie") -> xr.DataArray:
    """Validate and return ``movie`` as a ``(time, y, x)`` DataArray (NumPy or dask)."""
    if isinstance(movie, xr.Dataset):
        raise TypeError(
            f"{name} must be a DataArray or array, got a Dataset; select a variable, e.g. ds['movie']"
        )
    if not isinstance(movie, xr.DataArray):
        if not hasattr(movie, "shape") or not hasattr(movie, "dtype"):
            movie = np.asarray(movie)
        if len(movie.shape) != 3:
            raise ValueError(
                f"{name} must be 3-D (time, y, x), got shape {tuple(movie.shape)}; "
                "for multi-channel or multi-plane data select one first, e.g. movie[:, 0]"
            )
        movie = xr.DataArray(movie, dims=MOVIE_DIMS, name=name)
    if movie.ndim != 3:
        extra = [d for d in movie.dims if d not in MOVIE_DIMS]
        hint = f"; select one {extra[0]!r} first, e.g. {name}.isel({extra[0]}=0)" if extra else ""
        raise ValueError(f"{name} must be 3-D (time, y, x), got dims {movie.dims}{hint}")
    if set(movie.dims) != set(MOVIE_DIMS):
        raise ValueError(
            f"{name} must have dims {MOVIE_DIMS}, got {movie.dims}; rename them first, "
            f"e.g. {name}.rename({dict(zip(movie.dims, MOVIE_DIMS, strict=True))!r})"
        )
    if movie.dims != MOVIE_DIMS:
        movie = movie.transpose(*MOVIE_DIMS)
    kind = movie.dtype.kind
    if kind not in "iuf":
        raise TypeError(
            f"{name} must have an integer or floating dtype, got {movie.dtype} "
            "(bool, complex and object movies are not registrable)"
        )
    if movie.sizes[DIM_TIME] == 0:
        raise ValueError(f"{name} has zero frames: nothing to register")
    return movie


def check_finite(movie: xr.DataArray, name: str = "movie") -> None:
    """Raise ``ValueError`` if an in-memory movie holds NaN or Inf.

    Lazy movies (dask or backend arrays) are not read here; their chunks are checked by
    :func:`check_finite_block` when they are registered.
    """
    if movie.chunks is not None or not movie.variable._in_memory:
        return
    vals = movie.values
    if vals.dtype.kind == "f" and not np.isfinite(vals).all():
        bad = np.flatnonzero(~np.isfinite(vals).all(axis=(1, 2)))
        raise ValueError(
            f"{name} has NaN or Inf values in {bad.size} frame(s) (first: {bad[:5].tolist()}); "
            "replace them first, e.g. movie.fillna(movie.median())"
        )


def check_finite_block(block: np.ndarray, name: str = "movie") -> None:
    """Raise ``ValueError`` if a chunk of frames holds NaN or Inf (lazy movies)."""
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        bad = np.flatnonzero(~np.isfinite(block).all(axis=(1, 2)))
        raise ValueError(
            f"{name} has NaN or Inf values in {bad.size} frame(s) of a chunk of {block.shape[0]} frames; "
            "replace them first, e.g. movie.fillna(movie.median())"
        )


def pair(value: Any, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """Validate an int or a pair of ints ``>= minimum``."""
    vals = (value, value) if np.isscalar(value) else tuple(value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            if isinstance(v, numbers.Real) and float(v).is_integer() and not isinstance(v, bool):
                v = int(v)
            else:
                raise TypeError(f"{name} must hold integers, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def integer(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """Validate an integer parameter ``>= minimum`` (or None if allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_border(border: str) -> str:
    """Validate the ``border`` option."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    return border


def check_max_shifts(max_shifts: Any, shape: tuple[int, int]) -> tuple[int, int]:
    """Validate ``max_shifts`` against the frame shape (must be < half the frame)."""
    ms = pair(max_shifts, "max_shifts", minimum=1)
    for m, n, ax in zip(ms, shape, "yx", strict=True):
        if 2 * m >= n:
            raise ValueError(
                f"max_shifts must be smaller than half the frame size along {ax} "
                f"(< {n / 2:g} for {n} px), got {max_shifts!r}"
            )
    return ms


def as_template(template: Any, shape: tuple[int, int], name: str = "template") -> np.ndarray:
    """Validate a user template: frame-shaped, numeric, finite."""
    arr = template.values if isinstance(template, xr.DataArray) else np.asarray(template)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have the frame shape {tuple(shape)}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return arr.astype(np.float32)
