"""The one place that touches xarray's semi-internal lazy-indexing and file-manager API.

``xarray.core.indexing`` (``LazilyIndexedArray``, ``explicit_indexing_adapter``,
``IndexingSupport``), ``xarray.backends.locks`` (``SerializableLock``, ``HDF5_LOCK``) and
``xarray.backends.file_manager.CachingFileManager`` are documented only in xarray's
"how to add a new backend" guide and ``api-hidden.rst``; they have changed between
releases.  Every other module of :mod:`xnormcorre.io` imports them from here, so an
xarray upgrade that moves them needs a fix in this file only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xarray.backends import BackendArray, BackendEntrypoint
from xarray.backends.file_manager import CachingFileManager
from xarray.backends.locks import HDF5_LOCK, SerializableLock
from xarray.core import indexing

__all__ = [
    "HDF5_LOCK",
    "BackendArray",
    "BackendEntrypoint",
    "CachingFileManager",
    "SerializableLock",
    "lazily_indexed",
    "outer_1vector_getitem",
]


def outer_1vector_getitem(key: Any, shape: tuple[int, ...], raw: Callable[[tuple], Any]) -> Any:
    """Index a backend array whose raw reader handles ``OUTER_1VECTOR`` keys.

    ``raw`` receives a tuple of ints, positive-step slices and at most one sorted,
    unique integer array (the axis with the best span/size "gain"); xarray applies
    whatever else the key asks for (reordering, repeats, other arrays) in memory.
    """
    return indexing.explicit_indexing_adapter(key, shape, indexing.IndexingSupport.OUTER_1VECTOR, raw)


def lazily_indexed(array: BackendArray) -> Any:
    """Wrap a backend array so that successive ``isel`` calls compose without I/O."""
    return indexing.LazilyIndexedArray(array)
