"""Every input check of xnormcorre, once: each raises one clear ``ValueError``/``TypeError``
naming the parameter and its allowed range.

Used by the labeled API (:mod:`xnormcorre.core`), the quality-control functions, the I/O
backends and the command line alike.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np
import xarray as xr

from .schema import BORDERS, DIM_TIME, MOVIE_DIMS

__all__ = [
    "as_movie",
    "as_template",
    "check_border",
    "check_finite",
    "check_finite_block",
    "check_fps",
    "check_grid",
    "check_max_shifts",
    "check_store",
    "crop_pair",
    "finite_number",
    "integer",
    "nonnegative_number",
    "pair",
    "positive_number",
]


# --------------------------------------------------------------------------- scalars
def pair(value: Any, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """Validate an int or a pair of ints ``>= minimum``.

    Examples
    --------
    >>> pair(3, "max_shifts"), pair((2, 5.0), "strides")
    ((3, 3), (2, 5))
    """
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    try:
        vals = (value, value) if np.isscalar(value) else tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
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


def positive_number(value: Any, name: str) -> float:
    """Validate a positive, finite real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def finite_number(value: Any, name: str) -> float:
    """Validate a finite real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def nonnegative_number(value: Any, name: str) -> float:
    """Validate a finite real number ``>= 0``.

    Examples
    --------
    >>> nonnegative_number(1.5, "smooth_sigma")
    1.5
    >>> nonnegative_number(float("nan"), "taper")
    Traceback (most recent call last):
    ...
    ValueError: taper must be a finite number >= 0, got nan
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number >= 0, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_fps(fps: Any) -> float | None:
    """Validate the frame rate: None or a positive, finite number (Hz)."""
    if fps is None:
        return None
    if isinstance(fps, (bool, np.bool_)) or not isinstance(fps, numbers.Real):
        raise TypeError(f"fps must be a positive number (frames per second) or None, got {fps!r}")
    if not math.isfinite(float(fps)) or fps <= 0:
        raise ValueError(f"fps must be a positive, finite number (frames per second), got {fps!r}")
    return float(fps)


def check_border(border: str) -> str:
    """Validate the ``border`` option."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    return border


def crop_pair(crop: Any) -> tuple[int, int]:
    """Validate ``crop``: pixels removed on each side, an int or ``(crop_y, crop_x)`` >= 0."""
    return pair(crop, "crop", minimum=0)


def check_store(store: Any, resume: Any) -> str | None:
    """``store=`` (a path for a zarr store, or None) and ``resume=`` (True/False, needs a store).

    Examples
    --------
    >>> check_store("run.zarr", True), check_store(None, False)
    ('run.zarr', None)
    """
    resume = check_bool(resume, "resume")
    if store is None:
        if resume:
            raise ValueError("resume=True needs store=<path of the zarr store of the interrupted run>")
        return None
    if not isinstance(store, (str, os.PathLike)) or not os.fspath(store):
        raise TypeError(f"store must be the path of a zarr store (a folder) or None, got {store!r}")
    return os.fspath(store)


# --------------------------------------------------------------------------- geometry
def check_bool(value: Any, name: str) -> bool:
    """A True/False parameter (NumPy booleans and the 0/1 integers of NetCDF attributes accepted)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_defects(defects: Any, shape: tuple[int, int]) -> bool | np.ndarray:
    """``defects=``: True (find sensor defects), False (none) or a boolean ``(y, x)`` mask."""
    if isinstance(defects, (bool, np.bool_)):
        return bool(defects)
    mask = np.asarray(getattr(defects, "values", defects))
    if mask.shape != tuple(shape) or mask.dtype.kind not in "biu":
        raise ValueError(
            f"defects must be True, False or a boolean mask of the frame shape {tuple(shape)}, "
            f"got {type(defects).__name__} of shape {mask.shape}"
        )
    return mask.astype(bool)


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


def check_grid(
    shape: tuple[int, int],
    strides: Any,
    overlaps: Any,
    max_shifts: tuple[int, int] | None = None,
    max_deviation_rigid: Any = None,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int] | None]:
    """Validate the piecewise-rigid patch grid: ``(strides, overlaps, max_deviation_rigid)``."""
    st = pair(strides, "strides", minimum=1)
    ov = pair(overlaps, "overlaps", minimum=0)
    for s, o, n, ax in zip(st, ov, shape, "yx", strict=True):
        if s + o > n:
            raise ValueError(
                f"patch size strides + overlaps = {s + o} along {ax} is larger than the frame ({n} px); "
                "use smaller strides/overlaps"
            )
    md = None
    if max_deviation_rigid is not None:
        md = pair(max_deviation_rigid, "max_deviation_rigid", minimum=0)
        # patches are cut at the rigidly displaced position, so only the residual
        # (within max_deviation_rigid + 1 px) is searched inside a patch: max_shifts
        # bounds the rigid step alone, as in NoRMCorre/CaImAn
        for d, s, o, ax in zip(md, st, ov, "yx", strict=True):
            if 2 * (d + 1) >= s + o:
                raise ValueError(
                    f"max_deviation_rigid + 1 must be smaller than half the patch size along {ax} "
                    f"({(s + o) / 2:g} px for strides + overlaps = {s + o}); got max_deviation_rigid={d}"
                )
    return st, ov, md


# --------------------------------------------------------------------------- arrays
def as_movie(movie: Any, name: str = "movie") -> xr.DataArray:
    """Validate and return ``movie`` as a ``(time, y, x)`` DataArray (NumPy or dask)."""
    if isinstance(movie, xr.Dataset):
        raise TypeError(
            f"{name} must be a DataArray or array, got a Dataset; select a variable, e.g. ds['movie']"
        )
    if not isinstance(movie, xr.DataArray | np.ndarray) and all(
        hasattr(movie, a) for a in ("shape", "dtype", "__getitem__")
    ):  # frame readers, zarr/h5py/dask arrays: lazy, read chunk by chunk
        from .core.loader import as_movie as reader_movie

        if len(movie.shape) == 3:
            return as_movie(reader_movie(movie, name=name), name)
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
    check_finite_block(movie.values, name, whole=True)


def check_finite_block(block: np.ndarray, name: str = "movie", *, whole: bool = False) -> None:
    """Raise ``ValueError`` if frames ``(T, H, W)`` hold NaN or Inf (a chunk, or the whole movie)."""
    if block.dtype.kind == "f" and not _all_finite(block):
        bad = np.flatnonzero(~np.isfinite(block).all(axis=(1, 2)))
        where = f"(first: {bad[:5].tolist()})" if whole else f"of a chunk of {block.shape[0]} frames"
        raise ValueError(
            f"{name} has NaN or Inf values in {bad.size} frame(s) {where}; "
            "replace them first, e.g. movie.fillna(movie.median())"
        )


def _all_finite(block: np.ndarray) -> bool:
    """Whether every value of ``block`` (frames along its first axis) is finite, checked about
    a million values at a time into one reused buffer: no boolean temporary the size of the
    movie (a quarter of a float32 movie's memory), and faster than one (it stays in cache)."""
    if block.ndim < 2 or block.shape[0] == 0:
        return bool(np.isfinite(block).all())
    per = max(1, (1 << 20) // max(1, math.prod(block.shape[1:])))
    buf = np.empty((min(per, block.shape[0]), *block.shape[1:]), bool)
    for i in range(0, block.shape[0], per):
        part = block[i : i + per]
        out = buf[: len(part)]
        np.isfinite(part, out=out)
        if not out.all():
            return False
    return True


def as_template(template: Any, shape: tuple[int, int], name: str = "template") -> np.ndarray:
    """Validate a user template: frame-shaped, numeric, finite; a DataArray with dims
    ``x``/``y`` in any order is put in ``(y, x)`` order by name."""
    if isinstance(template, xr.DataArray) and set(template.dims) == set(MOVIE_DIMS[1:]):
        template = template.transpose(*MOVIE_DIMS[1:])
    arr = template.values if isinstance(template, xr.DataArray) else np.asarray(template)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have the frame shape {tuple(shape)}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return arr.astype(np.float32)
