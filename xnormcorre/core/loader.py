"""Any frame reader as a lazy movie: :func:`as_movie`.

A reader is any object with ``shape`` ``(time, y, x)``, ``dtype`` and ``__getitem__``
along time (``reader[a:b]`` returns frames ``a`` to ``b - 1``; ``ndim`` is optional):
jnormcorre/mesmerize ``lazy_data_loader`` subclasses, NumPy memmaps, zarr and h5py
arrays, or a small class of your own.  :func:`as_movie` wraps it in a dask-backed
``(time, y, x)`` DataArray that reads only the frames a computation needs, so every
xnormcorre function takes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import validate as vd
from ..schema import DIM_TIME, MOVIE_DIMS

__all__ = ["as_movie", "default_time_chunk"]

#: Target bytes of float32 frames per time chunk (about 16 MiB, the read batch of a pass).
_CHUNK_PIXELS = 2**22


def default_time_chunk(shape: tuple[int, ...]) -> int:
    """Frames per time chunk of :func:`as_movie`: a power of two of about 4 Mpixel
    (the registration's read batch, a multiple of its kernel batch), at most 256.

    Examples
    --------
    >>> default_time_chunk((1000, 512, 512)), default_time_chunk((1000, 64, 64))
    (16, 256)
    """
    h, w = int(shape[-2]), int(shape[-1])
    b = max(1, _CHUNK_PIXELS // max(1, h * w))
    return min(1 << (b.bit_length() - 1), 256)


class _TimeReader:
    """Adapter giving dask the ``reader[t0:t1, y0:y1, x0:x1]`` it asks for, from a
    reader that is indexed along time only (``reader[t0:t1]``)."""

    def __init__(self, reader: Any, shape: tuple[int, int, int], dtype: np.dtype, name: str):
        self._reader = reader
        self._name = name
        self.shape = shape
        self.dtype = dtype
        self.ndim = 3

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        t, ky, kx = key
        if isinstance(t, slice):
            a, b, step = t.indices(self.shape[0])
            block = np.asarray(self._reader[slice(a, b) if step == 1 else t])
            n = len(range(a, b, step))
            if block.shape != (n, *self.shape[1:]):
                raise ValueError(
                    f"{self._name}[{a}:{b}] returned an array of shape {block.shape}, expected "
                    f"{(n, *self.shape[1:])}: the reader's __getitem__ must return the frames of a time slice"
                )
            return block[:, ky, kx]
        frame = np.asarray(self._reader[t])
        return frame[ky, kx]


def as_movie(obj: Any, *, chunks: int | None = None, name: str = "movie") -> xr.DataArray:
    """Wrap a frame reader, memmap, zarr/h5py array or dask array as a lazy
    ``(time, y, x)`` DataArray.

    Parameters
    ----------
    obj : array-like
        A DataArray (returned validated, rechunked along time if ``chunks`` is given),
        a NumPy array (kept in memory), or any object with ``shape`` (3 entries),
        ``dtype`` and ``__getitem__`` along time (``obj[a:b]`` returns frames
        ``a .. b-1``; an optional ``ndim`` must be 3).  Anything but an in-memory
        NumPy array becomes dask-backed: frames are read chunk by chunk, only when a
        computation needs them, without a lock (readers must allow concurrent reads
        of different frames, as NumPy memmaps and zarr arrays do).
    chunks : int, optional
        Frames per time chunk (default :func:`default_time_chunk`: about 16 MiB of
        float32 frames).  Any chunking gives the same registration results.
    name : str
        Name of the DataArray and of the parameter in error messages.

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)`` with the reader's dtype.

    Examples
    --------
    >>> class Reader:  # any object with shape, dtype and __getitem__ along time
    ...     shape, dtype = (40, 32, 32), np.dtype("uint16")
    ...     def __getitem__(self, key):
    ...         t = np.arange(40, dtype=np.uint16)[key]
    ...         return np.broadcast_to(t[..., None, None], (*t.shape, 32, 32))
    >>> movie = as_movie(Reader(), chunks=16)
    >>> movie.dims, movie.chunks[0], int(movie[17, 0, 0])
    (('time', 'y', 'x'), (16, 16, 8), 17)
    """
    import dask.array as da

    if chunks is not None:
        chunks = vd.integer(chunks, "chunks")
    if isinstance(obj, xr.DataArray | xr.Dataset):
        movie = vd.as_movie(obj, name)
        return movie if chunks is None else movie.chunk({DIM_TIME: chunks})
    if isinstance(obj, np.ndarray) and not isinstance(obj, np.memmap):
        movie = vd.as_movie(obj, name)
        return movie if chunks is None else movie.chunk({DIM_TIME: chunks})
    if not all(hasattr(obj, a) for a in ("shape", "dtype", "__getitem__")):
        raise TypeError(
            f"{name} must be an array or a frame reader with shape, dtype and __getitem__ along time, "
            f"got {type(obj).__name__}"
        )
    try:
        shape = tuple(int(s) for s in obj.shape)
        dtype = np.dtype(obj.dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name}.shape must be a tuple of ints and {name}.dtype a NumPy dtype: {err}"
        ) from None
    ndim = getattr(obj, "ndim", len(shape))
    if len(shape) != 3 or ndim != 3:
        raise ValueError(
            f"{name} must be 3-D (time, y, x), got shape {shape}; for multi-channel or multi-plane "
            "data select one first"
        )
    if isinstance(obj, da.Array):
        arr = obj if chunks is None else obj.rechunk({0: chunks})
    else:
        t = chunks or default_time_chunk(shape)
        reader = obj if isinstance(obj, np.memmap) else _TimeReader(obj, shape, dtype, name)
        arr = da.from_array(
            reader,
            chunks=(t, shape[1], shape[2]),
            lock=False,
            asarray=True,
            meta=np.empty((0, 0, 0), dtype),
            name=False,  # no hashing of the reader's data
        )
    return vd.as_movie(xr.DataArray(arr, dims=MOVIE_DIMS, name=name), name)
