"""The movie side of a registration: reading frames, the reference movie, ``min_mov``,
and the one ``apply_ufunc`` block function shared by rigid and piecewise-rigid runs."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import validate as vd
from ..schema import DIM_TIME, DIM_X, DIM_Y

__all__ = [
    "MIN_MOV_FRAMES",
    "register_lazily",
    "run_inputs",
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


#: Bytes of whole time chunks a :class:`Frames` view keeps (template estimation).
CHUNK_CACHE_BYTES = 2**28
#: Pixels per time chunk of a :class:`Frames` view of a lazily opened file without dask.
LAZY_CHUNK_PIXELS = 2**24


class Frames:
    """Time-indexable view of a DataArray for the engine: ``frames[a:b]`` or
    ``frames[index_array]``, each read as one computation.

    An in-memory movie reads only the requested frames.  A dask-backed movie -- and a
    lazily opened file without dask, viewed in time chunks of ``LAZY_CHUNK_PIXELS``
    pixels -- is read by whole time chunks (dask computes a chunk of a derived movie --
    a slice, a channel, a filtered reference -- whole), those a read needs in one graph,
    kept in a least-recently-used cache of at most ``cache_bytes``, so that the template
    sample and the template iterations that follow compute each chunk once rather than
    once per read.  A sample of frames whose chunks would not fit in the cache is read
    frame by frame in one graph instead (only those frames of a lazily opened file;
    each chunk of a derived movie once), so a long movie is never read whole for it.
    Memory stays within ``cache_bytes`` plus the frames returned.
    """

    def __init__(self, movie: xr.DataArray, cache_bytes: int = CHUNK_CACHE_BYTES):
        if movie.chunks is None and not movie.variable._in_memory and DIM_TIME in movie.dims:
            # a lazily opened file without dask: read in time chunks, through the cache
            frame = int(np.prod([n for d, n in movie.sizes.items() if d != DIM_TIME]))
            movie = movie.chunk({DIM_TIME: max(1, LAZY_CHUNK_PIXELS // max(frame, 1))})
        self._movie = movie
        self.shape = tuple(movie.shape)
        self._cache: dict[int, np.ndarray] = {}
        self._cache_bytes = cache_bytes
        if movie.chunks is not None:
            self._bounds = np.cumsum((0, *movie.chunks[0]))
            self._frame_bytes = int(np.prod(self.shape[1:])) * movie.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if self._movie.chunks is None:
            return np.asarray(self._movie.isel(time=key).values)
        idx = np.arange(self.shape[0])[key]
        if idx.ndim == 0:
            return self[idx[None]][0]
        which = np.searchsorted(self._bounds, idx, side="right") - 1
        needed = [int(c) for c in np.unique(which)]
        size = sum(int(self._bounds[c + 1] - self._bounds[c]) for c in needed) * self._frame_bytes
        if size > self._cache_bytes and not isinstance(key, slice):
            return self._frames(idx)
        out = np.empty((idx.size, *self.shape[1:]), self._movie.dtype)
        for group in self._groups(needed):
            self._load([c for c in group if c not in self._cache])
            for c in group:
                sel = which == c
                out[sel] = self._cache[c][idx[sel] - self._bounds[c]]
                self._cache[c] = self._cache.pop(c)  # most recently used last
        return out

    def _frames(self, idx: np.ndarray) -> np.ndarray:
        import dask

        data = self._movie.data
        return np.stack(dask.compute(*(data[int(i)] for i in idx)))

    def _groups(self, chunks: list[int]) -> list[list[int]]:
        """Consecutive groups of chunks, each within the cache budget (at least one chunk)."""
        groups: list[list[int]] = [[]]
        size = 0
        for c in chunks:
            n = int(self._bounds[c + 1] - self._bounds[c]) * self._frame_bytes
            if groups[-1] and size + n > self._cache_bytes:
                groups.append([])
                size = 0
            groups[-1].append(c)
            size += n
        return groups

    def _load(self, chunks: list[int]) -> None:
        if not chunks:
            return
        import dask

        data = self._movie.data
        parts = dask.compute(*(data[self._bounds[c] : self._bounds[c + 1]] for c in chunks))
        new = {c: np.asarray(part) for c, part in zip(chunks, parts, strict=True)}
        # evict the least recently used chunks to make room (the new ones always stay)
        budget = self._cache_bytes - sum(a.nbytes for a in new.values())
        for c in list(self._cache):
            if sum(a.nbytes for a in self._cache.values()) <= budget:
                break
            del self._cache[c]
        self._cache.update(new)


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
        ref.name = None  # an unlabeled array: nothing names it (see estimated_on)
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


def estimated_on(ref: xr.DataArray | None, movie: xr.DataArray | None = None) -> str:
    """The ``shifts_estimated_on`` attribute: ``"movie"``, or ``"reference"`` followed by
    what tells the reference apart from the movie, the first of: its channel label
    (``"reference (channel red)"``), its name (``"reference (red)"``), its ``long_name``
    (a filtered copy: ``"reference (high-passed movie (gSig_filt = [3.0, 3.0]))"``).

    Examples
    --------
    >>> movie = xr.DataArray(np.zeros((2, 4, 4)), dims=("time", "y", "x"), name="movie")
    >>> estimated_on(None), estimated_on(movie.rename("red"), movie)
    ('movie', 'reference (red)')
    >>> estimated_on(movie.assign_coords(channel="red"), movie)
    'reference (channel red)'
    >>> estimated_on(movie.assign_attrs(long_name="filtered movie"), movie)
    'reference (filtered movie)'
    """
    if ref is None:
        return "movie"

    def label(da: xr.DataArray | None) -> object:
        return (
            da["channel"].item()
            if da is not None and "channel" in da.coords and da["channel"].ndim == 0
            else None
        )

    name = None if movie is None else movie.name
    long_name = None if movie is None else movie.attrs.get("long_name")
    if label(ref) is not None and label(ref) != label(movie):
        return f"reference (channel {label(ref)})"
    if ref.name is not None and ref.name != name:
        return f"reference ({ref.name})"
    if ref.attrs.get("long_name") and ref.attrs["long_name"] != long_name:
        return f"reference ({ref.attrs['long_name']})"
    return "reference"


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


def run_inputs(movie: xr.DataArray, template, reference, border: str, min_mov: float | None, shape):
    """The checks every registration run makes on its inputs, once:
    ``(user template or None, min_mov, reference or None)``.

    ``min_mov`` is read from the movie only when ``border="min"`` needs it.
    """
    user_template = None if template is None else vd.as_template(template, shape)
    vd.check_finite(movie)
    min_mov = resolve_min_mov(movie, min_mov) if border == "min" else min_mov
    return user_template, min_mov, check_reference(reference, movie)


def register_lazily(
    movie: xr.DataArray, ref: xr.DataArray | None, template: np.ndarray, params, shifts: dict
):
    """Register ``movie`` chunk by chunk (lazily on dask input): ``(corrected, *shifts, corr)``.

    ``shifts`` maps each shift output's core dims (a tuple) to its sizes; ``params`` is
    the pass's engine parameters (see :func:`register_block`).
    """
    sizes = {d: n for dims, shape in shifts.items() for d, n in zip(dims, shape, strict=True)}
    return xr.apply_ufunc(
        register_block,
        *registration_inputs(movie, ref),
        input_core_dims=[[DIM_Y, DIM_X], [], *([[DIM_Y, DIM_X]] * (0 if ref is None else 1))],
        output_core_dims=[[DIM_Y, DIM_X], *(list(d) for d in shifts), []],
        kwargs={"template": template, "params": params, "shift_shapes": [tuple(s) for s in shifts.values()]},
        dask="parallelized",
        output_dtypes=[np.float32] * (2 + len(shifts)),
        dask_gufunc_kwargs={"output_sizes": sizes},
    )
