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

import numpy as np
import xarray as xr

from .. import schema as cv
from .. import validate as vd
from ..engine.patches import interp_matrix
from ..engine.rigid import apply_shifts as apply_rigid_shifts
from ..engine.warp import apply_pw_shifts
from .convention import shifts_from
from .planes import apply_shifts_by_plane, plane_dim_of
from .scanphase import resolve_scan_phase
from .shiftinput import (
    as_shifts,
    check_frame,
    check_values,
    clip_and_scale,
    fill_and_batch,
    largest,
    match_time,
)
from .volume_apply import apply_volume_shifts, is_volume_shifts

__all__ = ["apply_shifts"]

_PATCH_DIMS = cv.PATCH_DIMS
_RIGID_DIMS = cv.RIGID_SHIFT_DIMS


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
        check_values(largest(sh[idx]), frame, index)
        out[idx] = fn(block[idx], sh[idx])
    return out


def _origin(index: np.ndarray) -> int | None:
    index = np.asarray(index).reshape(-1)
    return int(index[0]) if index.size else None


def _block(block: np.ndarray, shifts: np.ndarray, index: np.ndarray, *, warp: Callable, ndim: int, **kw):
    """apply_ufunc kernel: frames ``(..., T, H, W)``, shifts ``(..., T, ...)`` (``ndim`` dims
    from ``T`` on) and the frames' numbers ``(T,)`` -> corrected, by the engine's
    ``warp(frames, shifts, **kw, origin=...)``."""
    origin = _origin(index)
    return _loop_leading(
        block, shifts, ndim, lambda frames, sh: warp(frames, sh, **kw, origin=origin), index, block.shape[-2:]
    )


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


def _warp(
    movie: xr.DataArray,
    shifts: xr.DataArray,
    core: list[str],
    warp: Callable,
    *,
    border: str,
    min_mov: float | None,
    batch_size: int | None,
    attrs: dict,
    clip: bool | None,
    comment: str,
    scaled: bool = False,
    **kw,
) -> xr.DataArray:
    """``movie`` moved by ``shifts`` (time-matched; ``core`` their dims per frame) with the
    engine's ``warp`` (rigid or piecewise rigid; ``kw``: its own arguments; ``scaled``: it
    takes the run's intensity ``scale``), lazily on lazy input: the corrected DataArray."""
    h, w = movie.sizes[cv.DIM_Y], movie.sizes[cv.DIM_X]
    if shifts.chunks is None:  # checked now; lazy shifts are checked chunk by chunk
        shifts = shifts.astype(np.float32).load()
        check_values(shifts.values if len(core) == 1 else largest(shifts.values), (h, w))
    fill, bs = fill_and_batch(movie, attrs, border, min_mov, batch_size)
    clip, scale = clip_and_scale(attrs, clip)
    if scaled:
        kw["scale"] = scale
    data, sh, index = _aligned(movie, shifts, core)
    out = xr.apply_ufunc(
        _block,
        data,
        sh,
        index,
        input_core_dims=[[cv.DIM_Y, cv.DIM_X], core, []],
        output_core_dims=[[cv.DIM_Y, cv.DIM_X]],
        kwargs={
            "warp": warp,
            "ndim": 1 + len(core),
            **kw,
            "border": border,
            "fill_min": float(fill),
            "batch_size": int(bs),
            "clip": clip,
        },
        dask="parallelized",
        output_dtypes=[np.float32],
    )
    attrs_out = cv.corrected_attrs(movie.attrs.get("units", "a.u."), comment + border)
    return xr.DataArray(out, coords=movie.coords, name=cv.CORRECTED, attrs=attrs_out)


def _apply_rigid(movie: xr.DataArray, shifts: xr.DataArray, **kw) -> xr.DataArray:
    if cv.DIM_AXIS in shifts.coords:
        try:
            shifts = shifts.sel({cv.DIM_AXIS: ["y", "x"]})
        except KeyError:
            raise ValueError(
                f"the axis coordinate of shifts must hold 'y' and 'x', got {shifts[cv.DIM_AXIS].values.tolist()}"
            ) from None
    elif shifts.sizes[cv.DIM_AXIS] != 2:
        raise ValueError(f"shifts must have 2 components (y, x) along axis, got {shifts.sizes[cv.DIM_AXIS]}")
    shifts = match_time(shifts.transpose(*_RIGID_DIMS), movie)
    return _warp(
        movie, shifts, [cv.DIM_AXIS], apply_rigid_shifts, comment=cv.RIGID_COMMENT, scaled=True, **kw
    )


def _apply_pwrigid(movie: xr.DataArray, shifts: xr.DataArray, **kw) -> xr.DataArray:
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
    shifts = match_time(shifts.transpose(*dims), movie)
    h, w = movie.sizes[cv.DIM_Y], movie.sizes[cv.DIM_X]
    cy = np.asarray(shifts["patch_y"].values, np.float64)
    cx = np.asarray(shifts["patch_x"].values, np.float64)
    if cy.min() < 0 or cy.max() > h - 1 or cx.min() < 0 or cx.max() > w - 1:
        raise ValueError(f"patch centres lie outside the {h}x{w} frame: the shifts belong to another movie")
    wy, wx = interp_matrix(h, cy), interp_matrix(w, cx)
    core = [*_PATCH_DIMS, cv.DIM_AXIS]
    return _warp(movie, shifts, core, apply_pw_shifts, comment=cv.PW_COMMENT, wy=wy, wx=wx, **kw)


#: Appliers by kind of shifts (see ``shift_kind``); each takes
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
        Multi-plane shifts (a result of ``planes="independent"``, or shifts with one
        more dim than these, e.g. ``(time, z, axis)``) are applied plane by plane to a
        ``(time, z, y, x)`` movie; 3-D rigid shifts of a volume (``(time, axis)`` with
        ``axis = [z, y, x]``, a result of :func:`rigid` on a volume) move each volume.
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
    if is_volume_shifts(shifts) and not isinstance(movie, xr.Dataset):
        return apply_volume_shifts(
            movie, shifts, border=border, min_mov=min_mov, batch_size=batch_size, clip=clip
        )
    plane_dim = plane_dim_of(shifts)
    if plane_dim is not None and not isinstance(movie, xr.Dataset):
        kwargs = dict(border=border, min_mov=min_mov, batch_size=batch_size, clip=clip, convention=convention)
        return apply_shifts_by_plane(
            apply_shifts, movie, shifts, plane_dim, kwargs | {"scan_phase": scan_phase}
        )
    border = vd.check_border(border)
    batch_size = vd.integer(batch_size, "batch_size", allow_none=True)
    clip = None if clip is None else vd.check_bool(clip, "clip")
    min_mov = None if min_mov is None else vd.finite_number(min_mov, "min_mov")
    if convention != "xnormcorre":
        shifts = shifts_from(shifts, convention)
    kind, sh, attrs, frame = as_shifts(shifts)

    def one(da: xr.DataArray) -> xr.DataArray:
        da = vd.as_movie(da)
        check_frame(frame, da)
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
