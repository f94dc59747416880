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
from ..engine.rigid import apply_shifts as apply_rigid_shifts
from ..engine.runner import default_batch_size
from ..engine.warp import apply_pw_shifts
from .convention import shifts_from
from .movie import resolve_min_mov
from .scanphase import resolve_scan_phase

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


def _as_shifts(shifts: Any) -> tuple[str, xr.DataArray, dict, tuple[int, int] | None]:
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
            return "pwrigid", da, attrs, frame or _pw_frame(da)
        if "shifts" not in shifts.data_vars:
            raise ValueError(
                "shifts is a Dataset without a 'shifts' variable (variables: "
                f"{sorted(map(str, shifts.data_vars))}); pass a result of xnormcorre.rigid or its shifts"
            )
        shifts = shifts["shifts"]
    else:
        attrs = {}
    if isinstance(shifts, xr.DataArray):
        kind = _shift_kind(shifts)
        return kind, shifts, attrs, frame or (_pw_frame(shifts) if kind == "pwrigid" else None)
    if not hasattr(shifts, "shape"):
        shifts = np.asarray(shifts)
    if len(shifts.shape) == 2 and shifts.shape[1] == 2:
        da = xr.DataArray(shifts, dims=_RIGID_DIMS, coords={cv.DIM_AXIS: ["y", "x"]})
        return "rigid", da, attrs, None
    raise ValueError(
        "shifts must be a (time, axis) DataArray, an xnormcorre result Dataset, or an array "
        f"of shape (n_frames, 2) [(y, x) per frame], got shape {tuple(shifts.shape)}"
    )


def _pw_frame(shifts: xr.DataArray) -> tuple[int, int] | None:
    """Frame size of piecewise-rigid shifts from their patch bounds (None if not recorded)."""
    stops = [f"{d}_stop" for d in _PATCH_DIMS]
    if not all(c in shifts.coords for c in stops):
        return None
    return int(np.max(shifts[stops[0]].values)), int(np.max(shifts[stops[1]].values))


def _check_frame(frame: tuple[int, int] | None, movie: xr.DataArray) -> None:
    """Refuse shifts estimated on frames of another size."""
    h, w = movie.sizes[cv.DIM_Y], movie.sizes[cv.DIM_X]
    if frame is not None and tuple(frame) != (h, w):
        raise ValueError(
            f"the shifts were estimated on frames of {frame[0]}x{frame[1]} px but the movie's frames "
            f"are {h}x{w} px: they belong to another movie"
        )


def _match_time(shifts: xr.DataArray, movie: xr.DataArray) -> xr.DataArray:
    """Shifts in the movie's frame order: same length, or selected by ``time`` label."""
    n = movie.sizes[cv.DIM_TIME]
    both_labeled = cv.DIM_TIME in shifts.coords and cv.DIM_TIME in movie.coords
    if both_labeled and not shifts.indexes[cv.DIM_TIME].is_unique:
        raise ValueError("the time coordinate of shifts has duplicated labels; each frame needs one shift")
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


def _check_values(shifts: np.ndarray, frame: tuple[int, int], index: np.ndarray | None = None) -> None:
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


def _largest(shifts: np.ndarray) -> np.ndarray:
    """``(T, 2)``: the largest absolute shift of each frame (over patches; NaN propagates)."""
    flat = np.abs(np.asarray(shifts, np.float64)).reshape(shifts.shape[0], -1, 2)
    return flat.max(axis=1) if flat.shape[1] else np.zeros((shifts.shape[0], 2))


# --------------------------------------------------------------------------- appliers
def _corrected_attrs(movie: xr.DataArray, comment: str) -> dict:
    return cv.corrected_attrs(movie.attrs.get("units", "a.u."), comment)


def _loop_leading(block: np.ndarray, shifts: np.ndarray, core: int, fn, index, frame) -> np.ndarray:
    """Apply ``fn(frames (T, H, W), shifts (T, ...))`` over any leading (broadcast) dims,
    after checking the chunk's shifts (lazy shifts are only seen here)."""
    lead = block.shape[:-3]
    out = np.empty(block.shape, np.float32)
    if 0 in block.shape:  # dask meta probing
        return out
    t = block.shape[-3]
    index = np.asarray(index).reshape(-1)[:t]
    sh = np.broadcast_to(shifts, lead + shifts.shape[-core:])
    for idx in np.ndindex(*lead):
        _check_values(_largest(sh[idx]), frame, index)
        out[idx] = fn(block[idx], sh[idx])
    return out


def _origin(index: np.ndarray) -> int | None:
    index = np.asarray(index).reshape(-1)
    return int(index[0]) if index.size else None


def _rigid_block(
    block: np.ndarray,
    shifts: np.ndarray,
    index: np.ndarray,
    *,
    border: str,
    fill_min: float,
    batch_size: int,
    clip: bool,
    scale: float,
):
    """apply_ufunc kernel: frames ``(..., T, H, W)``, shifts ``(..., T, 2)`` and the frames'
    numbers ``(T,)`` -> corrected."""

    def fn(frames, sh):
        return apply_rigid_shifts(
            frames,
            sh,
            border=border,
            fill_min=fill_min,
            batch_size=batch_size,
            clip=clip,
            scale=scale,
            origin=_origin(index),
        )

    return _loop_leading(block, shifts, 2, fn, index, block.shape[-2:])


def _pw_block(
    block, shifts, index, *, wy, wx, border: str, fill_min: float, batch_size: int, clip: bool, scale: float
):
    """apply_ufunc kernel: frames ``(..., T, H, W)``, patch shifts ``(..., T, Ny, Nx, 2)`` and
    the frames' numbers ``(T,)``."""

    def fn(frames, sh):
        return apply_pw_shifts(
            frames,
            sh,
            wy,
            wx,
            border=border,
            fill_min=fill_min,
            batch_size=batch_size,
            clip=clip,
            origin=_origin(index),
        )

    return _loop_leading(block, shifts, 4, fn, index, block.shape[-2:])


def _clip_and_scale(attrs: dict, clip: bool | None) -> tuple[bool, float]:
    """``clip`` (default: the run's ``clip`` attribute, else True) and the run's intensity scale."""
    if clip is None:
        clip = bool(_scalar(attrs.get("clip", 1)))
    scale = float(_scalar(attrs.get("intensity_scale", 1.0)))
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"the intensity_scale attribute of the shifts must be > 0, got {scale!r}")
    return bool(clip), scale


def _fill_and_batch(movie, attrs, border, min_mov, batch_size):
    fill = 0.0
    if border == "min":
        if min_mov is None and "min_mov" in attrs:  # the run's floor (recorded for border="min")
            min_mov = vd.finite_number(attrs["min_mov"], "min_mov (attribute of the shifts)")
        fill = resolve_min_mov(movie, min_mov)
    if batch_size is None and "batch_size" in attrs:  # the run's batching, validated like the parameter
        batch_size = vd.integer(_scalar(attrs["batch_size"]), "batch_size (attribute of the shifts)")
    n, h, w = (movie.sizes[d] for d in cv.MOVIE_DIMS)
    return float(fill), int(batch_size or default_batch_size((h, w), n))


def _scalar(value: Any) -> Any:
    """A one-element attribute (NetCDF may store a scalar as a 1-element array) as a scalar."""
    arr = np.asarray(value)
    return arr.reshape(-1)[0].item() if arr.dtype.kind in "iuf" and arr.size == 1 else value


def _aligned(
    movie: xr.DataArray, shifts: xr.DataArray, core: list[str]
) -> tuple[xr.Variable, xr.Variable, xr.Variable]:
    """Movie, float32 shifts and the frame numbers ``0..T-1`` as Variables with matching time
    chunks (if either is lazy)."""
    data = movie.variable
    sh = shifts.variable.astype(np.float32)
    index = xr.Variable((cv.DIM_TIME,), np.arange(movie.sizes[cv.DIM_TIME], dtype=np.int64))
    if movie.chunks is not None:
        data = data.chunk({cv.DIM_Y: -1, cv.DIM_X: -1})
        time_chunks = movie.chunksizes[cv.DIM_TIME]
        sh = sh.chunk({cv.DIM_TIME: time_chunks, **dict.fromkeys(core, -1)})
        index = index.chunk({cv.DIM_TIME: time_chunks})
    elif sh.chunks is not None:
        data = data.chunk({cv.DIM_TIME: sh.chunks[0]})
        sh = sh.chunk(dict.fromkeys(core, -1))
        index = index.chunk({cv.DIM_TIME: sh.chunks[0]})
    return data, sh, index


def _apply_rigid(
    movie: xr.DataArray,
    shifts: xr.DataArray,
    *,
    border: str,
    min_mov: float | None,
    batch_size: int | None,
    attrs: dict,
    clip: bool | None = None,
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
    if shifts.chunks is None:  # checked now; lazy shifts are checked chunk by chunk
        shifts = shifts.astype(np.float32).load()
        _check_values(shifts.values, (h, w))
    fill, bs = _fill_and_batch(movie, attrs, border, min_mov, batch_size)
    clip, scale = _clip_and_scale(attrs, clip)
    data, sh, index = _aligned(movie, shifts, [cv.DIM_AXIS])
    out = xr.apply_ufunc(
        _rigid_block,
        data,
        sh,
        index,
        input_core_dims=[[cv.DIM_Y, cv.DIM_X], [cv.DIM_AXIS], []],
        output_core_dims=[[cv.DIM_Y, cv.DIM_X]],
        kwargs={
            "border": border,
            "fill_min": float(fill),
            "batch_size": int(bs),
            "clip": clip,
            "scale": scale,
        },
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
    clip: bool | None = None,
) -> xr.DataArray:
    dims = cv.PW_SHIFT_DIMS
    if set(shifts.dims) != set(dims):
        raise ValueError(f"piecewise-rigid shifts must have dims {dims}, got {shifts.dims}")
    for d in _PATCH_DIMS:
        if d not in shifts.coords:
            raise ValueError(f"piecewise-rigid shifts need the patch-centre coordinate {d!r} (pixels)")
    if cv.DIM_AXIS in shifts.coords:
        shifts = shifts.sel({cv.DIM_AXIS: ["y", "x"]})
    for d in _PATCH_DIMS:
        if not shifts.indexes[d].is_unique:
            raise ValueError(f"the patch-centre coordinate {d!r} of the shifts has duplicated values")
    shifts = shifts.sortby(list(_PATCH_DIMS))  # the field is interpolated between ascending centres
    shifts = _match_time(shifts.transpose(*dims), movie)
    h, w = movie.sizes[cv.DIM_Y], movie.sizes[cv.DIM_X]
    cy = np.asarray(shifts["patch_y"].values, np.float64)
    cx = np.asarray(shifts["patch_x"].values, np.float64)
    if cy.min() < 0 or cy.max() > h - 1 or cx.min() < 0 or cx.max() > w - 1:
        raise ValueError(f"patch centres lie outside the {h}x{w} frame: the shifts belong to another movie")
    if shifts.chunks is None:  # checked now; lazy shifts are checked chunk by chunk
        shifts = shifts.astype(np.float32).load()
        _check_values(_largest(shifts.values), (h, w))
    fill, bs = _fill_and_batch(movie, attrs, border, min_mov, batch_size)
    clip, scale = _clip_and_scale(attrs, clip)
    core = [*_PATCH_DIMS, cv.DIM_AXIS]
    data, sh, index = _aligned(movie, shifts, core)
    out = xr.apply_ufunc(
        _pw_block,
        data,
        sh,
        index,
        input_core_dims=[[cv.DIM_Y, cv.DIM_X], core, []],
        output_core_dims=[[cv.DIM_Y, cv.DIM_X]],
        kwargs={
            "wy": interp_matrix(h, cy),
            "wx": interp_matrix(w, cx),
            "border": border,
            "fill_min": fill,
            "batch_size": bs,
            "clip": clip,
            "scale": scale,
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
    clip: bool | None = None,
    convention: str = "xnormcorre",
    scan_phase: None | str | float | xr.DataArray = None,
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
    clip : bool, optional
        Limit each corrected frame to its raw frame's range (as :func:`rigid`);
        default: the result's ``clip`` attribute when ``shifts`` is a result Dataset,
        else True.
    convention : {"xnormcorre", "caiman", "normcorre", "jnormcorre"}
        Who computed ``shifts``.  CaImAn, NoRMCorre and jnormcorre report the applied
        correction (the opposite sign): their shifts are converted by
        :func:`xnormcorre.shifts_from` first.
    scan_phase : None, "auto", float or DataArray
        Bidirectional scan phase removed from the movie first (default None: none), as
        in :func:`xnormcorre.rigid`: the displacement along x of the odd scan lines'
        content relative to the even lines (px); the odd lines are moved by
        ``-phase``.  Pass the run's ``res.scan_phase`` to reproduce its ``corrected``
        (or to correct another channel of the same recording); ``"auto"`` estimates it
        on the movie (on each variable of a Dataset, over all its channels).

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
    >>> bidi = xnormcorre.rigid(movie, max_shifts=4, scan_phase=0.5)
    >>> bool((xnormcorre.apply_shifts(movie, bidi, scan_phase=bidi.scan_phase) == bidi.corrected).all())
    True
    """
    border = vd.check_border(border)
    batch_size = vd.integer(batch_size, "batch_size", allow_none=True)
    clip = None if clip is None else vd.check_bool(clip, "clip")
    if min_mov is not None and not np.isfinite(min_mov):
        raise ValueError(f"min_mov must be finite, got {min_mov!r}")
    if convention != "xnormcorre":
        shifts = shifts_from(shifts, convention)
    kind, sh, attrs, frame = _as_shifts(shifts)

    def one(da: xr.DataArray) -> xr.DataArray:
        da = vd.as_movie(da)
        _check_frame(frame, da)
        if scan_phase is not None and not isinstance(movie, xr.Dataset):
            da = resolve_scan_phase(da, scan_phase)[0]
        return _APPLIERS[kind](
            da, sh, border=border, min_mov=min_mov, batch_size=batch_size, attrs=attrs, clip=clip
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
        # the scan phase of the whole variable (every channel) at once
        var = resolve_scan_phase(movie[name], scan_phase)[0]
        res = _apply_over_extra_dims(var, one)
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
