"""Shifts of other tools in xnormcorre's sign convention: :func:`shifts_from`.

xnormcorre's shifts are displacements of the frame content relative to the template,
``frame(r) = template(r - shift)``; the corrected frame is the frame moved by ``-shift``.
CaImAn, NoRMCorre (MATLAB) and jnormcorre report the *applied correction* instead, the
opposite sign, in the same ``(row, column)`` = ``(y, x)`` order (NoRMCorre's 1-based
indexing concerns pixel positions, not displacements).  Passing their shifts to
:func:`xnormcorre.apply_shifts` unconverted would double the motion instead of removing it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc

__all__ = ["CONVENTIONS", "shifts_from"]

#: Sign of each tool's shifts relative to xnormcorre's.
CONVENTIONS = {"xnormcorre": 1.0, "caiman": -1.0, "normcorre": -1.0, "jnormcorre": -1.0}


def check_convention(convention: str) -> float:
    """The sign of ``convention``'s shifts relative to xnormcorre's."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {tuple(CONVENTIONS)}, got {convention!r}")
    return CONVENTIONS[convention]


def shifts_from(shifts: Any, convention: str) -> xr.DataArray:
    """Shifts of CaImAn, NoRMCorre or jnormcorre as xnormcorre shifts (the sign flipped).

    Parameters
    ----------
    shifts : array-like (n_frames, 2) or DataArray
        Per-frame ``(y, x)`` = ``(row, column)`` shifts, e.g. CaImAn's ``shifts_rig``,
        jnormcorre's rigid shifts or NoRMCorre's ``cat(1, shifts.shifts)`` squeezed; or
        an xnormcorre-shaped DataArray (``(time, axis)`` or piecewise rigid
        ``(time, patch_y, patch_x, axis)``) holding another tool's values.
    convention : {"caiman", "normcorre", "jnormcorre", "xnormcorre"}
        The tool that produced ``shifts``; ``"xnormcorre"`` leaves them unchanged.

    Returns
    -------
    xarray.DataArray
        float32 shifts in xnormcorre's convention, ready for :func:`xnormcorre.apply_shifts`.

    Examples
    --------
    >>> shifts_from([[1.5, -2.0]], "caiman").values.tolist()
    [[-1.5, 2.0]]
    """
    sign = check_convention(convention)
    if isinstance(shifts, xr.Dataset):
        raise TypeError("shifts must be an array or DataArray of another tool's shifts, got a Dataset")
    if isinstance(shifts, xr.DataArray):
        da = shifts.astype(np.float32)
    else:
        arr = np.asarray(shifts, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"shifts must have shape (n_frames, 2) [(y, x) per frame], got {arr.shape}")
        da = xr.DataArray(arr, dims=sc.RIGID_SHIFT_DIMS, coords={sc.DIM_AXIS: list(sc.AXIS_LABELS)})
    out = da if sign == 1.0 else -da
    attrs = dict(sc.PW_SHIFT_ATTRS if sc.is_piecewise(out.dims) else sc.SHIFT_ATTRS)
    if sign != 1.0:
        attrs["source_convention"] = f"{convention} (applied correction; sign flipped)"
    return out.assign_attrs(attrs).rename(sc.SHIFTS)
