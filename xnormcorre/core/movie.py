"""The movie side of a registration: reading frames, the reference movie, ``min_mov``,
and the one ``apply_ufunc`` block function shared by rigid and piecewise-rigid runs."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import validate as vd
from ..schema import DIM_TIME, DIM_X, DIM_Y

__all__ = [
    "MIN_MOV_FRAMES",
    "Frames",
    "chunked_inputs",
    "check_reference",
    "estimated_on",
    "register_block",
    "registration_inputs",
    "resolve_min_mov",
    "source_of",
]

#: Frames whose minimum is the default ``min_mov``.
MIN_MOV_FRAMES = 400


def resolve_min_mov(movie: xr.DataArray, min_mov: float | None) -> float:
    """``min_mov``: as given, or the minimum of the first (up to) 400 frames (CaImAn's default)."""
    if min_mov is not None:
        return float(min_mov)
    head = movie.isel(time=slice(0, MIN_MOV_FRAMES))
    value = float(np.nanmin(np.asarray(head.min((DIM_Y, DIM_X)))))
    if not np.isfinite(value):
        raise ValueError(f"min_mov must be finite, got {value!r}")
    return value


class Frames:
    """Time-indexable view of a DataArray for the engine: ``frames[a:b]`` or
    ``frames[index_array]`` reads only those frames, in one read (one dask graph)."""

    def __init__(self, movie: xr.DataArray):
        self._movie = movie
        self.shape = tuple(movie.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        return np.asarray(self._movie.isel(time=key).values)


def source_of(movie: xr.DataArray) -> str | None:
    """The file a movie was read from, if known."""
    return movie.encoding.get("source") or movie.attrs.get("source")


def check_reference(reference, movie: xr.DataArray) -> xr.DataArray | None:
    """Validate ``reference=``: a movie of the same (time, y, x) sizes."""
    if reference is None:
        return None
    ref = vd.as_movie(reference, "reference")
    if dict(ref.sizes) != dict(movie.sizes):
        raise ValueError(f"reference must have the movie's sizes {dict(movie.sizes)}, got {dict(ref.sizes)}")
    if not isinstance(reference, xr.DataArray):
        ref = ref.assign_coords({d: movie[d] for d in (DIM_TIME, DIM_Y, DIM_X) if d in movie.coords})
    ref = _align_labels(ref, movie)
    vd.check_finite(ref, "reference")
    return ref


def _align_labels(ref: xr.DataArray, movie: xr.DataArray) -> xr.DataArray:
    """The reference's frames (rows, columns) in the movie's label order, or a clear error."""
    for d in (DIM_TIME, DIM_Y, DIM_X):
        if d not in ref.coords or d not in movie.coords:
            continue
        mine, theirs = ref.indexes[d], movie.indexes[d]
        if mine.equals(theirs):
            continue
        if not (mine.is_unique and theirs.is_unique) or set(mine) != set(theirs):
            raise ValueError(
                f"reference and movie have different {d!r} labels; pass a reference with the "
                f"movie's {d!r} coordinate (or without one)"
            )
        ref = ref.sel({d: movie[d].values})
    return ref


def estimated_on(ref: xr.DataArray | None) -> str:
    """The ``shifts_estimated_on`` attribute."""
    if ref is None:
        return "movie"
    return f"reference ({ref.name})" if ref.name else "reference"


def chunked_inputs(movie: xr.DataArray, ref: xr.DataArray | None) -> list[xr.Variable]:
    """Variables to pass to apply_ufunc: the movie (and reference), y/x unchunked."""
    out = []
    for da in (movie, ref):
        if da is None:
            continue
        if da.chunks is not None:
            da = da.chunk({DIM_Y: -1, DIM_X: -1})
        out.append(da.variable)
    if len(out) == 2 and (movie.chunks is None) != (ref.chunks is None):
        chunks = (movie if movie.chunks is not None else ref).chunks[0]
        out = [v.chunk({DIM_TIME: chunks}) for v in out]
    return out


def registration_inputs(movie: xr.DataArray, ref: xr.DataArray | None) -> list[xr.Variable]:
    """The inputs of :func:`register_block` for apply_ufunc: the movie, its frame numbers
    ``0..T-1`` (chunked like it), then the reference if any (:func:`chunked_inputs`)."""
    inputs = chunked_inputs(movie, ref)
    index = xr.Variable((DIM_TIME,), np.arange(movie.sizes[DIM_TIME], dtype=np.int64))
    if inputs[0].chunks is not None:
        index = index.chunk({DIM_TIME: inputs[0].chunks[0]})
    return [inputs[0], index, *inputs[1:]]


def register_block(
    block: np.ndarray, index: np.ndarray, *ref: np.ndarray, template: np.ndarray, params, shift_shapes
):
    """apply_ufunc kernel: one time chunk ``(T, H, W)`` -> ``(corrected, *shifts, corr)``.

    ``index`` holds the chunk's frame numbers, so that each frame is registered in the
    same kernel lane whatever the chunking (the same bits).

    ``params`` is the pass's engine parameters (rigid or piecewise rigid), whose
    ``register`` returns ``(*shifts, corrected, corr)``; ``shift_shapes`` the per-frame
    shapes of the shift outputs.  With a reference chunk the shifts (and correlation)
    come from the reference and the last shifts are applied to ``block``.
    """
    if block.shape[0] == 0:  # dask meta probing
        h, w = template.shape
        empty = [np.empty((0, *s), np.float32) for s in shift_shapes]
        return (np.empty((0, h, w), np.float32), *empty, np.empty((0,), np.float32))
    vd.check_finite_block(ref[0] if ref else block, "reference" if ref else "movie")
    origin = int(np.asarray(index).reshape(-1)[0])
    if not ref:
        *shifts, corrected, corr = params.register(block, template, origin=origin)
        return (corrected, *shifts, corr)
    *shifts, _, corr = params.register(ref[0], template, origin=origin)
    return (params.apply(block, shifts[-1], origin=origin), *shifts, corr)
