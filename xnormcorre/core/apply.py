"""Labeled application of known shifts: ``xnormcorre.apply_shifts`` (xarray in, xarray out).

Re-applies shifts that were estimated before (e.g. saved with
``res.drop_vars("corrected").to_netcdf("shifts.nc")``) to the same movie, or to
another channel recorded with it.  The numbers come from the engine's single
implementation (:func:`xnormcorre.engine.rigid.apply_shifts`), which is also what
:func:`xnormcorre.rigid` runs, so the result equals ``rigid(...).corrected`` bit for
bit for the same shifts, ``border`` and ``min_mov``.

Kinds of shifts are dispatched on their dims: ``(time, axis)`` is rigid;
``(time, patch_y, patch_x, axis)`` is piecewise rigid (the patch-centre coordinates
``patch_y``/``patch_x`` define the dense field, as in :func:`xnormcorre.pwrigid`).  A
new kind is added by writing ``_apply_<kind>`` and registering it in ``_APPLIERS``.
A Dataset movie has the shifts applied to each of its ``(time, y, x)`` variables
(also with extra dims such as ``channel``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as cv
from .. import validate as vd
from ..engine.patches import interp_matrix
from ..engine.pwrigid import apply_pw_shifts
from ..engine.rigid import apply_shifts as apply_rigid_shifts
from ..engine.runner import default_batch_size
from .convention import shifts_from
from .movie import resolve_min_mov

__all__ = ["apply_shifts"]

_PATCH_DIMS = cv.PATCH_DIMS
_RIGID_DIMS = cv.RIGID_SHIFT_DIMS


# --------------------------------------------------------------------------- shifts input
def _shift_kind(da: xr.DataArray) -> str:
    dims = set(da.dims)
    if set(_PATCH_DIMS) <= dims:
        return "pwrigid"
    if dims == set(_RIGID_DIMS):
        return "rigid"
    raise ValueError(
        f"shifts must have dims {_RIGID_DIMS} (rigid) or (time, patch_y, patch_x, axis) "
        f"(piecewise rigid), got {da.dims}"
    )


def _as_shifts(shifts: Any) -> tuple[str, xr.DataArray, dict]:
    """``(kind, shifts DataArray, attrs of the run that made them)``."""
    if isinstance(shifts, xr.Dataset):
        attrs = dict(shifts.attrs)
        pw = [k for k, v in shifts.data_vars.items() if set(_PATCH_DIMS) <= set(v.dims)]
        if pw:
            return "pwrigid", shifts[pw[0]], attrs
        if "shifts" not in shifts.data_vars:
            raise ValueError(
                "shifts is a Dataset without a 'shifts' variable (variables: "
                f"{sorted(map(str, shifts.data_vars))}); pass a result of xnormcorre.rigid or its shifts"
            )
        shifts = shifts["shifts"]
    else:
        attrs = {}
    if isinstance(shifts, xr.DataArray):
        return _shift_kind(shifts), shifts, attrs
    if not hasattr(shifts, "shape"):
        shifts = np.asarray(shifts)
    if len(shifts.shape) == 2 and shifts.shape[1] == 2:
        da = xr.DataArray(shifts, dims=_RIGID_DIMS, coords={cv.DIM_AXIS: ["y", "x"]})
        return "rigid", da, attrs
    raise ValueError(
        "shifts must be a (time, axis) DataArray, an xnormcorre result Dataset, or an array "
        f"of shape (n_frames, 2) [(y, x) per frame], got shape {tuple(shifts.shape)}"
    )


def _match_time(shifts: xr.DataArray, movie: xr.DataArray) -> xr.DataArray:
    """Shifts in the movie's frame order: same length, or selected by ``time`` label."""
    n = movie.sizes[cv.DIM_TIME]
    both_labeled = cv.DIM_TIME in shifts.coords and cv.DIM_TIME in movie.coords
    if both_labeled and not np.array_equal(shifts[cv.DIM_TIME].values, movie[cv.DIM_TIME].values):
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


def _check_values(shifts: np.ndarray, frame: tuple[int, int]) -> None:
    if not np.isfinite(shifts).all():
        raise ValueError("shifts contain NaN or Inf values")
    half = np.array(frame, dtype=np.float64) / 2
    big = np.abs(shifts) >= half
    if big.any():
        t = int(np.flatnonzero(big.any(axis=1))[0])
        raise ValueError(
            f"shifts must be smaller than half the frame {frame} along each axis; frame {t} has {shifts[t].tolist()}"
        )


# --------------------------------------------------------------------------- appliers
def _corrected_attrs(movie: xr.DataArray, comment: str) -> dict:
    return cv.corrected_attrs(movie.attrs.get("units", "a.u."), comment)


def _loop_leading(block: np.ndarray, shifts: np.ndarray, core: int, fn) -> np.ndarray:
    """Apply ``fn(frames (T, H, W), shifts (T, ...))`` over any leading (broadcast) dims."""
    lead = block.shape[:-3]
    out = np.empty(block.shape, np.float32)
    if 0 in block.shape:  # dask meta probing
        return out
    sh = np.broadcast_to(shifts, lead + shifts.shape[-core:])
    for idx in np.ndindex(*lead):
        out[idx] = fn(block[idx], sh[idx])
    return out


def _rigid_block(block: np.ndarray, shifts: np.ndarray, *, border: str, fill_min: float, batch_size: int):
    """apply_ufunc kernel: frames ``(..., T, H, W)`` and shifts ``(..., T, 2)`` -> corrected."""

    def fn(frames, sh):
        return apply_rigid_shifts(frames, sh, border=border, fill_min=fill_min, batch_size=batch_size)

    return _loop_leading(block, shifts, 2, fn)


def _pw_block(block, shifts, *, wy, wx, border: str, fill_min: float, batch_size: int):
    """apply_ufunc kernel: frames ``(..., T, H, W)`` and patch shifts ``(..., T, Ny, Nx, 2)``."""

    def fn(frames, sh):
        return apply_pw_shifts(frames, sh, wy, wx, border=border, fill_min=fill_min, batch_size=batch_size)

    return _loop_leading(block, shifts, 4, fn)


def _fill_and_batch(movie, attrs, border, min_mov, batch_size):
    fill = 0.0
    if border == "min":
        if min_mov is None and "min_mov" in attrs:  # the run's floor (recorded for border="min")
            min_mov = attrs["min_mov"]
        fill = resolve_min_mov(movie, min_mov)
    if batch_size is None and isinstance(attrs.get("batch_size"), (int, np.integer)):
        batch_size = int(attrs["batch_size"])  # the run's batching
    n, h, w = (movie.sizes[d] for d in cv.MOVIE_DIMS)
    return float(fill), int(batch_size or default_batch_size((h, w), n))


def _aligned(movie: xr.DataArray, shifts: xr.DataArray, core: list[str]) -> tuple[xr.Variable, xr.Variable]:
    """Movie and float32 shifts as Variables with matching time chunks (if either is lazy)."""
    data = movie.variable
    sh = shifts.variable.astype(np.float32)
    if movie.chunks is not None:
        data = data.chunk({cv.DIM_Y: -1, cv.DIM_X: -1})
        sh = sh.chunk({cv.DIM_TIME: movie.chunksizes[cv.DIM_TIME], **dict.fromkeys(core, -1)})
    elif sh.chunks is not None:
        data = data.chunk({cv.DIM_TIME: sh.chunks[0]})
        sh = sh.chunk(dict.fromkeys(core, -1))
    return data, sh


def _apply_rigid(
    movie: xr.DataArray,
    shifts: xr.DataArray,
    *,
    border: str,
    min_mov: float | None,
    batch_size: int | None,
    attrs: dict,
) -> xr.DataArray:
    if cv.DIM_AXIS in shifts.coords:
        try:
            shifts = shifts.sel({cv.DIM_AXIS: ["y", "x"]})
        except KeyError:
            raise ValueError(
                f"the axis coordinate of shifts must hold 'y' and 'x', got {shifts[cv.DIM_AXIS].values.tolist()}"
            ) from None
    elif shifts.sizes[cv.DIM_AXIS] != 2:
        raise ValueError(f"shifts must have 2 components (y, x) along axis, got {shifts.sizes[cv.DIM_AXIS]}")
    shifts = _match_time(shifts.transpose(*_RIGID_DIMS), movie)
    h, w = movie.sizes[cv.DIM_Y], movie.sizes[cv.DIM_X]
    if shifts.chunks is None:
        shifts = shifts.astype(np.float32).load()
        _check_values(shifts.values, (h, w))
    fill, bs = _fill_and_batch(movie, attrs, border, min_mov, batch_size)
    data, sh = _aligned(movie, shifts, [cv.DIM_AXIS])
    out = xr.apply_ufunc(
        _rigid_block,
        data,
        sh,
        input_core_dims=[[cv.DIM_Y, cv.DIM_X], [cv.DIM_AXIS]],
        output_core_dims=[[cv.DIM_Y, cv.DIM_X]],
        kwargs={"border": border, "fill_min": float(fill), "batch_size": int(bs)},
        dask="parallelized",
        output_dtypes=[np.float32],
    )
    return xr.DataArray(
        out, coords=movie.coords, name=cv.CORRECTED, attrs=_corrected_attrs(movie, cv.RIGID_COMMENT + border)
    )


def _apply_pwrigid(
    movie: xr.DataArray,
    shifts: xr.DataArray,
    *,
    border: str,
    min_mov: float | None,
    batch_size: int | None,
    attrs: dict,
) -> xr.DataArray:
    dims = cv.PW_SHIFT_DIMS
    if set(shifts.dims) != set(dims):
        raise ValueError(f"piecewise-rigid shifts must have dims {dims}, got {shifts.dims}")
    for d in _PATCH_DIMS:
        if d not in shifts.coords:
            raise ValueError(f"piecewise-rigid shifts need the patch-centre coordinate {d!r} (pixels)")
    if cv.DIM_AXIS in shifts.coords:
        shifts = shifts.sel({cv.DIM_AXIS: ["y", "x"]})
    shifts = _match_time(shifts.transpose(*dims), movie)
    h, w = movie.sizes[cv.DIM_Y], movie.sizes[cv.DIM_X]
    cy = np.asarray(shifts["patch_y"].values, np.float64)
    cx = np.asarray(shifts["patch_x"].values, np.float64)
    if cy.min() < 0 or cy.max() > h - 1 or cx.min() < 0 or cx.max() > w - 1:
        raise ValueError(f"patch centres lie outside the {h}x{w} frame: the shifts belong to another movie")
    if shifts.chunks is None:
        shifts = shifts.astype(np.float32).load()
        flat = shifts.values.reshape(shifts.shape[0], -1, 2)
        _check_values(np.abs(flat).max(axis=1), (h, w))
    fill, bs = _fill_and_batch(movie, attrs, border, min_mov, batch_size)
    core = [*_PATCH_DIMS, cv.DIM_AXIS]
    data, sh = _aligned(movie, shifts, core)
    out = xr.apply_ufunc(
        _pw_block,
        data,
        sh,
        input_core_dims=[[cv.DIM_Y, cv.DIM_X], core],
        output_core_dims=[[cv.DIM_Y, cv.DIM_X]],
        kwargs={
            "wy": interp_matrix(h, cy),
            "wx": interp_matrix(w, cx),
            "border": border,
            "fill_min": fill,
            "batch_size": bs,
        },
        dask="parallelized",
        output_dtypes=[np.float32],
    )
    attrs_out = _corrected_attrs(movie, cv.PW_COMMENT + border)
    return xr.DataArray(out, coords=movie.coords, name=cv.CORRECTED, attrs=attrs_out)


#: Appliers by kind of shifts (see ``_shift_kind``); each takes
#: ``(movie, shifts, *, border, min_mov, batch_size, attrs)`` and returns the corrected DataArray.
_APPLIERS: dict[str, Callable[..., xr.DataArray]] = {"rigid": _apply_rigid, "pwrigid": _apply_pwrigid}


def apply_shifts(
    movie: xr.DataArray | np.ndarray,
    shifts: xr.DataArray | xr.Dataset | np.ndarray,
    *,
    border: str = "copy",
    min_mov: float | None = None,
    batch_size: int | None = None,
    convention: str = "xnormcorre",
) -> xr.DataArray:
    """Move every frame of ``movie`` by ``-shifts`` (re-apply known motion), lazily on dask input.

    **Sign convention:** ``shifts`` is the displacement of each frame's content
    relative to the template (what :func:`xnormcorre.rigid` returns); the corrected
    frame is the frame moved by ``-shift``, with a Fourier phase ramp, and pixels that
    came from outside the field of view filled per ``border`` (never wrapped).

    Parameters
    ----------
    movie : xarray.DataArray, xarray.Dataset or array-like, (time, y, x)
        Movie of any integer or float dtype; a dask-backed one gives a dask-backed
        result computed chunk by chunk (``.isel(time=...)`` computes only those
        chunks).  A Dataset has the shifts applied to every variable that has the
        dims ``time, y, x`` (extra dims such as ``channel`` are looped over) and is
        returned as a Dataset.
    shifts : xarray.DataArray, xarray.Dataset or array
        Rigid shifts ``(time, axis)`` with ``axis = ["y", "x"]`` in pixels, a result
        Dataset of :func:`xnormcorre.rigid` (its ``shifts`` are used, e.g. read back
        with ``xr.open_dataset("shifts.nc")``), or an ``(n_frames, 2)`` array.
        When both carry ``time`` coordinates and they differ, the shifts of the
        movie's times are selected.  Piecewise-rigid shifts
        ``(time, patch_y, patch_x, axis)`` (with their patch-centre coordinates, e.g.
        a result of :func:`xnormcorre.pwrigid`) are applied as a dense field.
    border : {"copy", "nan", "zero", "min"}
        Fill of pixels that moved in from outside the frame (as in :func:`rigid`).
    min_mov : float, optional
        Fill value of ``border="min"``; default: the result's ``min_mov`` attribute
        when ``shifts`` is a result Dataset, else the minimum of the first 400 frames.
    batch_size : int, optional
        Frames read at once; default: the result's ``batch_size`` attribute when
        ``shifts`` is a result Dataset, else as in :func:`rigid`.
    convention : {"xnormcorre", "caiman", "normcorre", "jnormcorre"}
        Who computed ``shifts``.  CaImAn, NoRMCorre and jnormcorre report the applied
        correction (the opposite sign): their shifts are converted by
        :func:`xnormcorre.shifts_from` first.

    Returns
    -------
    xarray.DataArray
        ``corrected (time, y, x)`` float32 with the movie's coordinates; equal bit
        for bit to ``rigid(movie, ...).corrected`` for the same shifts, ``border``
        and ``min_mov``.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(64, 64), max_shift=2, seed=0)
    >>> res = xnormcorre.rigid(movie, max_shifts=4)
    >>> again = xnormcorre.apply_shifts(movie, res)
    >>> bool((again == res.corrected).all())
    True
    >>> caiman_shifts = -res.shifts.values  # CaImAn reports the applied correction
    >>> bool((xnormcorre.apply_shifts(movie, caiman_shifts, convention="caiman") == res.corrected).all())
    True
    >>> lazy = xnormcorre.apply_shifts(movie.chunk({"time": 8}), res.shifts)
    >>> lazy.chunks[0], bool((lazy.values == res.corrected.values).all())
    ((8, 8, 4), True)
    """
    border = vd.check_border(border)
    batch_size = vd.integer(batch_size, "batch_size", allow_none=True)
    if min_mov is not None and not np.isfinite(min_mov):
        raise ValueError(f"min_mov must be finite, got {min_mov!r}")
    if convention != "xnormcorre":
        shifts = shifts_from(shifts, convention)
    kind, sh, attrs = _as_shifts(shifts)

    def one(da: xr.DataArray) -> xr.DataArray:
        return _APPLIERS[kind](
            vd.as_movie(da), sh, border=border, min_mov=min_mov, batch_size=batch_size, attrs=attrs
        )

    if not isinstance(movie, xr.Dataset):
        return one(movie)
    out = movie.copy()
    applied = [k for k, v in movie.data_vars.items() if set(cv.MOVIE_DIMS) <= set(v.dims)]
    if not applied:
        raise ValueError(
            f"movie is a Dataset without a (time, y, x) variable (variables: {sorted(map(str, movie.data_vars))})"
        )
    for name in applied:
        res = _apply_over_extra_dims(movie[name], one)
        out[name] = res.rename(name)
    return out


def _apply_over_extra_dims(da: xr.DataArray, fn: Callable[[xr.DataArray], xr.DataArray]) -> xr.DataArray:
    """``fn`` on each (time, y, x) slice of ``da`` (extra dims such as ``channel`` looped)."""
    extra = [d for d in da.dims if d not in cv.MOVIE_DIMS]
    if not extra:
        return fn(da)
    d = extra[0]
    parts = [_apply_over_extra_dims(da.isel({d: i}), fn) for i in range(da.sizes[d])]
    return xr.concat(parts, dim=d).transpose(*da.dims)
