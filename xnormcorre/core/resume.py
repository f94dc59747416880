"""Registration runs kept in a zarr store: ``rigid(movie, store=..., resume=...)``.

The per-frame results (shifts, correlation, flags) are written to the store one time
chunk at a time as they are computed (:func:`xnormcorre.io.store.compute_to_store`);
after a crash ``resume=True`` registers only the chunks that are not done, to the
stored template, and gives the same bits as an uninterrupted run.  The corrected movie
is not stored: it is returned lazily, the movie moved by the stored shifts chunk by
chunk (:func:`xnormcorre.apply_shifts`, the same bits as the run's own warp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from .. import schema as sc
from .. import validate as vd
from .apply import apply_shifts

__all__ = ["run_with_store", "wants_store"]


def wants_store(store: Any, resume: Any) -> bool:
    """True if a run was given ``store=``/``resume=`` (checked: ``resume`` needs a store)."""
    return vd.check_store(store, resume) is not None


def _time_chunked(movie: xr.DataArray) -> xr.DataArray:
    """A dask-backed movie as it is; an in-memory one cut into time chunks of about 2**24 px."""
    if movie.chunks is not None:
        return movie
    from ..io import default_time_chunk

    shape = (movie.sizes[sc.DIM_TIME], movie.sizes[sc.DIM_Y], movie.sizes[sc.DIM_X])
    return movie.chunk({sc.DIM_TIME: default_time_chunk(shape)})


def run_with_store(
    register: Callable[..., xr.Dataset], arguments: Mapping[str, Any], *, progress: bool = False
) -> xr.Dataset:
    """Run ``register`` (``rigid`` or ``pwrigid``) with the per-chunk results in a zarr store.

    ``arguments`` are the keyword arguments of the call (``movie``, ``store``,
    ``resume``, ``template``, ... and ``aliases``).  An in-memory movie is cut into time
    chunks (the unit of work and of resumption).  With ``resume=True`` and an existing
    store, the stored template is used (unless ``template`` is given) and the store's
    record of the run is checked against this one: ``ValueError`` naming what differs,
    the store left untouched.  Without ``resume`` an existing path is an error.

    Returns the result with every variable but ``corrected`` in memory, and
    ``corrected`` lazy (computed chunk by chunk from the stored shifts).  ``progress``:
    show a progress bar (frames) while the chunks are registered.
    """
    from ..io.store import compute_to_store, load_template

    kw = dict(arguments)
    aliases = kw.pop("aliases", None) or {}
    store, resume = kw.pop("store"), kw.pop("resume")
    path = Path(vd.check_store(store, resume)).expanduser()
    if path.exists() and not resume:
        raise FileExistsError(
            f"store {str(path)!r} exists; pass resume=True to continue it, or another path (or delete it) "
            "to start again"
        )
    movie = vd.as_movie(kw.pop("movie"))
    chunked = _time_chunked(movie)
    if resume and path.exists() and kw.get("template") is None:
        kw["template"] = load_template(path)
    lazy = register(chunked, **kw, **aliases)
    out = compute_to_store(lazy, path, resume=resume, movie=movie, progress=progress, keep_corrected=False)
    corrected = apply_shifts(chunked, out, border=out.attrs["border"], scan_phase=out.get("scan_phase"))
    corrected = corrected.assign_attrs(lazy[sc.CORRECTED].attrs)
    return out.assign({sc.CORRECTED: corrected})[list(lazy.data_vars)]
