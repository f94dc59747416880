"""Known shifts as input of :func:`xnormcorre.apply_shifts`: their kind (rigid or piecewise
rigid), the frame size they belong to, their frames matched to the movie's, their values
checked, and the parameters the run that made them recorded."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as cv
from .. import validate as vd
from ..engine.runner import default_batch_size
from .movie import resolve_min_mov

__all__ = [
    "as_shifts",
    "check_frame",
    "check_values",
    "clip_and_scale",
    "fill_and_batch",
    "largest",
    "match_time",
    "pw_frame",
    "scalar",
    "shift_kind",
]

_PATCH_DIMS = cv.PATCH_DIMS
_RIGID_DIMS = cv.RIGID_SHIFT_DIMS


def shift_kind(da: xr.DataArray) -> str:
    dims = set(da.dims)
    if set(_PATCH_DIMS) <= dims:
        return "pwrigid"
    if dims == set(_RIGID_DIMS):
        return "rigid"
    raise ValueError(
        f"shifts must have dims {_RIGID_DIMS} (rigid) or (time, patch_y, patch_x, axis) "
        f"(piecewise rigid), got {da.dims}"
    )


def as_shifts(shifts: Any) -> tuple[str, xr.DataArray, dict, tuple[int, int] | None]:
    """``(kind, shifts DataArray, attrs of the run that made them, frame size or None)``.

    The frame size ``(H, W)`` the shifts were estimated on is known from a result
    Dataset's ``y``/``x`` dims and from piecewise-rigid shifts' patch bounds
    (``patch_y_stop``/``patch_x_stop``: the last patch ends at the frame's edge).
    """
    frame = None
    if isinstance(shifts, xr.Dataset):
        attrs = dict(shifts.attrs)
        if cv.DIM_Y in shifts.dims and cv.DIM_X in shifts.dims:
            frame = (int(shifts.sizes[cv.DIM_Y]), int(shifts.sizes[cv.DIM_X]))
        pw = [k for k, v in shifts.data_vars.items() if set(_PATCH_DIMS) <= set(v.dims)]
        if pw:
            da = shifts[pw[0]]
            return "pwrigid", da, attrs, frame or pw_frame(da)
        if "shifts" not in shifts.data_vars:
            raise ValueError(
                "shifts is a Dataset without a 'shifts' variable (variables: "
                f"{sorted(map(str, shifts.data_vars))}); pass a result of xnormcorre.rigid or its shifts"
            )
        shifts = shifts["shifts"]
    else:
        attrs = {}
    if isinstance(shifts, xr.DataArray):
        kind = shift_kind(shifts)
        return kind, shifts, attrs, frame or (pw_frame(shifts) if kind == "pwrigid" else attr_frame(shifts))
    if not hasattr(shifts, "shape"):
        shifts = np.asarray(shifts)
    if len(shifts.shape) == 2 and shifts.shape[1] == 2:
        da = xr.DataArray(shifts, dims=_RIGID_DIMS, coords={cv.DIM_AXIS: ["y", "x"]})
        return "rigid", da, attrs, None
    raise ValueError(
        "shifts must be a (time, axis) DataArray, an xnormcorre result Dataset, or an array "
        f"of shape (n_frames, 2) [(y, x) per frame], got shape {tuple(shifts.shape)}"
    )


def attr_frame(shifts: xr.DataArray) -> tuple[int, int] | None:
    """Frame size recorded in the attributes of rigid shifts (None if not recorded)."""
    size = shifts.attrs.get(cv.FRAME_SIZE)
    try:
        h, w = (int(v) for v in np.asarray(size).reshape(-1))
    except (TypeError, ValueError):
        return None
    return h, w


def pw_frame(shifts: xr.DataArray) -> tuple[int, int] | None:
    """Frame size of piecewise-rigid shifts from their patch bounds (None if not recorded)."""
    stops = [f"{d}_stop" for d in _PATCH_DIMS]
    if not all(c in shifts.coords for c in stops):
        return None
    return int(np.max(shifts[stops[0]].values)), int(np.max(shifts[stops[1]].values))


def check_frame(frame: tuple[int, int] | None, movie: xr.DataArray) -> None:
    """Refuse shifts estimated on frames of another size."""
    h, w = movie.sizes[cv.DIM_Y], movie.sizes[cv.DIM_X]
    if frame is not None and tuple(frame) != (h, w):
        raise ValueError(
            f"the shifts were estimated on frames of {frame[0]}x{frame[1]} px but the movie's frames "
            f"are {h}x{w} px: they belong to another movie"
        )


def match_time(shifts: xr.DataArray, movie: xr.DataArray) -> xr.DataArray:
    """Shifts in the movie's frame order: same length, or selected by ``time`` label."""
    n = movie.sizes[cv.DIM_TIME]
    both_labeled = cv.DIM_TIME in shifts.coords and cv.DIM_TIME in movie.coords
    if both_labeled and not shifts.indexes[cv.DIM_TIME].is_unique:
        raise ValueError("the time coordinate of shifts has duplicated labels; each frame needs one shift")
    if both_labeled and not np.array_equal(shifts[cv.DIM_TIME].values, movie[cv.DIM_TIME].values):
        if not movie.indexes[cv.DIM_TIME].is_unique:
            raise ValueError(
                "the movie's time coordinate has duplicated labels and differs from the shifts': "
                "the shifts cannot be matched to its frames by label; give the movie unique times "
                "(e.g. movie.assign_coords(time=shifts.time) if they belong to the same frames)"
            )
        try:
            return shifts.sel({cv.DIM_TIME: movie[cv.DIM_TIME].values})
        except KeyError:
            raise ValueError(
                "the time coordinates of shifts and movie differ and the movie's times are not all "
                f"in the shifts' (movie: {n} frames, shifts: {shifts.sizes[cv.DIM_TIME]}); "
                "use shifts.assign_coords(time=movie.time) if they belong to the same frames"
            ) from None
    if shifts.sizes[cv.DIM_TIME] != n:
        raise ValueError(
            f"shifts has {shifts.sizes[cv.DIM_TIME]} frames but the movie has {n}; select the same frames"
        )
    if both_labeled:
        return shifts
    return shifts.drop_vars(cv.DIM_TIME, errors="ignore")


def check_values(shifts: np.ndarray, frame: tuple[int, int], index: np.ndarray | None = None) -> None:
    """Refuse NaN/Inf shifts and shifts of half the frame or more (they would wrap around).

    ``shifts`` is ``(T, 2)`` (the largest patch shift per frame for piecewise-rigid
    shifts); ``index`` the movie's frame numbers of its rows (default ``0..T-1``).
    """
    index = np.arange(len(shifts)) if index is None else index
    bad = ~np.isfinite(shifts).all(axis=1)
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise ValueError(f"shifts contain NaN or Inf values (first at frame {int(index[t])})")
    half = np.array(frame, dtype=np.float64) / 2
    big = (np.abs(shifts) >= half).any(axis=1)
    if big.any():
        t = int(np.flatnonzero(big)[0])
        raise ValueError(
            f"shifts must be smaller than half the frame {frame} along each axis; "
            f"frame {int(index[t])} has {shifts[t].tolist()}"
        )


def largest(shifts: np.ndarray) -> np.ndarray:
    """``(T, 2)``: the largest absolute shift of each frame (over patches; NaN propagates)."""
    flat = np.abs(np.asarray(shifts, np.float64)).reshape(shifts.shape[0], -1, 2)
    return flat.max(axis=1) if flat.shape[1] else np.zeros((shifts.shape[0], 2))


def scalar(value: Any) -> Any:
    """A one-element attribute (NetCDF may store a scalar as a 1-element array) as a scalar."""
    arr = np.asarray(value)
    return arr.reshape(-1)[0].item() if arr.dtype.kind in "iuf" and arr.size == 1 else value


def clip_and_scale(attrs: dict, clip: bool | None) -> tuple[bool, float]:
    """``clip`` (default: the run's ``clip`` attribute, else True) and the run's intensity scale."""
    if clip is None:
        clip = bool(scalar(attrs.get("clip", 1)))
    scale = float(scalar(attrs.get("intensity_scale", 1.0)))
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"the intensity_scale attribute of the shifts must be > 0, got {scale!r}")
    return bool(clip), scale


def fill_and_batch(movie, attrs, border, min_mov, batch_size):
    fill = 0.0
    if border == "min":
        if min_mov is None and "min_mov" in attrs:  # the run's floor (recorded for border="min")
            min_mov = vd.finite_number(attrs["min_mov"], "min_mov (attribute of the shifts)")
        fill = resolve_min_mov(movie, min_mov)
    if batch_size is None and "batch_size" in attrs:  # the run's batching, validated like the parameter
        batch_size = vd.integer(scalar(attrs["batch_size"]), "batch_size (attribute of the shifts)")
    n, h, w = (movie.sizes[d] for d in cv.MOVIE_DIMS)
    return float(fill), int(batch_size or default_batch_size((h, w), n))
