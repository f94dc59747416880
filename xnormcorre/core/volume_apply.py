"""Shifts of a volume run applied to a volumetric movie ``(time, z, y, x)``.

:func:`xnormcorre.apply_shifts` with 3-D shifts (a result of a volume run, rigid
``(time, axis)`` shifts of 3, or piecewise-rigid ``(time, patch_z, patch_y, patch_x, axis)``)
lands here: the volumes are moved as the registration moves them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine.patches import interp_matrix
from .volume import MIN_MOV_VOLUMES, as_volume_movie
from .volume_move import PW_COMMENT, RIGID_COMMENT, move_volumes

__all__ = ["apply_volume_shifts", "is_volume_shifts"]


def _is_volume_pw(da: xr.DataArray) -> bool:
    """Whether ``da`` are piecewise-rigid shifts of a volume ``(time, patch_<z>, patch_y, patch_x, axis)``."""
    dims = da.dims
    return (
        len(dims) == 5
        and dims[0] == sc.DIM_TIME
        and dims[-1] == sc.DIM_AXIS
        and dims[2:4] == sc.PATCH_DIMS
        and str(dims[1]).startswith("patch_")
        and da.sizes[sc.DIM_AXIS] == 3
    )


def is_volume_shifts(shifts: Any) -> bool:
    """Whether ``shifts`` are 3-D shifts of a volume: a result of a volume run, rigid
    ``(time, axis)`` shifts of 3, or piecewise-rigid ``(time, patch_z, patch_y, patch_x, axis)``."""
    if isinstance(shifts, xr.Dataset):
        return shifts.attrs.get("planes") == "volume" and sc.SHIFTS in shifts
    return isinstance(shifts, xr.DataArray) and (
        (shifts.dims == (sc.DIM_TIME, sc.DIM_AXIS) and shifts.sizes[sc.DIM_AXIS] == 3)
        or _is_volume_pw(shifts)
    )


def _pw_matrices(sh: xr.DataArray, movie: xr.DataArray, dims3: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Interpolation matrices from the patch centres of volume pw shifts (their
    ``patch_*`` coordinates, checked against the movie's size) to the movie's samples."""
    mats = []
    for d, pd in zip(dims3, sh.dims[1:4], strict=True):
        if pd not in sh.coords:
            raise ValueError(f"piecewise-rigid shifts need their patch centres as the {pd!r} coordinate")
        centres = np.asarray(sh[pd].values, np.float64)
        stop = sh.coords.get(f"{pd}_stop")
        n = movie.sizes[d]
        if (stop is not None and int(np.max(stop)) != n) or centres.max() > n - 1:
            raise ValueError(
                f"the shifts' patches along {d!r} end at {int(np.max(stop)) if stop is not None else '?'}, "
                f"but the movie has {n} samples along {d!r}: these shifts belong to another movie"
            )
        mats.append(interp_matrix(n, centres))
    return tuple(mats)


def apply_volume_shifts(movie: Any, shifts: Any, *, border: str, min_mov, batch_size, clip) -> xr.DataArray:
    """Move every volume of ``movie`` by ``-shifts`` (3-D rigid shifts ``(time, axis)``
    with ``axis`` = the movie's plane dim, y, x, or a result Dataset of a volume run),
    as the registration does: equal to its ``corrected`` for the same parameters."""
    attrs = dict(shifts.attrs) if isinstance(shifts, xr.Dataset) else {}
    sh = shifts[sc.SHIFTS] if isinstance(shifts, xr.Dataset) else shifts
    pw = _is_volume_pw(sh)
    if pw:
        plane_dim = str(sh.dims[1])[len("patch_") :]
    else:
        plane_dim = str(sh[sc.DIM_AXIS].values[0]) if sc.DIM_AXIS in sh.coords else "z"
    movie = as_volume_movie(movie, plane_dim)
    if sh.sizes[sc.DIM_TIME] != movie.sizes[sc.DIM_TIME]:
        raise ValueError(
            f"shifts has {sh.sizes[sc.DIM_TIME]} volumes but the movie has {movie.sizes[sc.DIM_TIME]}"
        )
    border = vd.check_border(border)
    if min_mov is None:
        min_mov = attrs.get("min_mov")
    if border == "min" and min_mov is None:
        min_mov = float(np.asarray(movie.isel(time=slice(0, MIN_MOV_VOLUMES)).min()))
    clip = vd.check_bool(attrs.get("clip", True) if clip is None else clip, "clip")
    bs = batch_size or attrs.get("batch_size") or 1
    dims3 = tuple(movie.dims[1:])
    shv = xr.Variable(sh.dims, np.asarray(sh.values, np.float32))
    mats = _pw_matrices(sh, movie, dims3) if pw else None
    out = move_volumes(
        movie, shv, mats, border=border, fill_min=float(min_mov or 0.0), batch_size=int(bs), clip=clip
    )
    units = movie.attrs.get("units", "a.u.")
    comment = (PW_COMMENT if pw else RIGID_COMMENT) + border
    return xr.DataArray(out, coords=movie.coords, name=sc.CORRECTED, attrs=sc.corrected_attrs(units, comment))
