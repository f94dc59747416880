"""Volumes moved by their shifts, lazily: the one mover of registration and apply.

Rigid shifts ``(time, axis)`` move each volume by a Fourier phase ramp
(:func:`xnormcorre.engine.volume.apply_volume_shifts`); piecewise-rigid patch shifts resample
it at ``r + field(r)`` (:func:`xnormcorre.engine.volume_pw.apply_volume_pw_shifts`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import schema as sc
from ..engine import volume as _vol
from ..engine import volume_pw as _vpw

__all__ = ["PW_COMMENT", "RIGID_COMMENT", "block_origin", "move_volumes"]

#: ``comment`` of the corrected movie of a rigid volume run (the border mode follows).
RIGID_COMMENT = "volume moved by -shifts (Fourier phase ramp); border: "

#: ``comment`` of the corrected movie of a piecewise-rigid volume run (the border mode follows).
PW_COMMENT = (
    "volume resampled (Keys cubic) at r + field(r), the field interpolated linearly between patch "
    "centres along each axis; border: "
)


def block_origin(index) -> int:
    """The number of a block's first volume in the whole movie, from the time ``index``
    that ``apply_ufunc`` passes a block kernel (the same kernel lane whatever the chunking)."""
    return int(np.asarray(index).reshape(-1)[0])


def _apply_block(block, index, sh, *, mats=None, **kw):
    """apply_ufunc kernel: volumes ``(T, D, H, W)`` moved by their rigid shifts, or warped
    by their patch shifts with the interpolation matrices ``mats``."""
    if block.shape[0] == 0:
        return np.empty(block.shape, np.float32)
    if mats is None:
        return _vol.apply_volume_shifts(block, sh, origin=block_origin(index), **kw)
    return _vpw.apply_volume_pw_shifts(block, sh, mats, origin=block_origin(index), **kw)


def move_volumes(movie: xr.DataArray, shv: xr.Variable, mats, **kwargs) -> xr.Variable:
    """``movie`` moved by the shifts ``shv`` (rigid ``(time, axis)``, or patch shifts with
    the interpolation matrices ``mats``), chunk by chunk on dask input (or dask shifts)."""
    dims3 = tuple(movie.dims[1:])
    data = movie.variable
    index = xr.Variable((sc.DIM_TIME,), np.arange(movie.sizes[sc.DIM_TIME], dtype=np.int64))
    core = list(shv.dims[1:])
    if data.chunks is not None or shv.chunks is not None:
        chunks = data.chunks[0] if data.chunks is not None else shv.chunks[0]
        data = data.chunk({sc.DIM_TIME: chunks, **{d: -1 for d in dims3}})
        index = index.chunk({sc.DIM_TIME: chunks})
        shv = shv.chunk({sc.DIM_TIME: chunks, **{d: -1 for d in core}})
    return xr.apply_ufunc(
        _apply_block,
        data,
        index,
        shv,
        input_core_dims=[list(dims3), [], core],
        output_core_dims=[list(dims3)],
        kwargs={**kwargs, "mats": mats},
        dask="parallelized",
        output_dtypes=[np.float32],
    )
