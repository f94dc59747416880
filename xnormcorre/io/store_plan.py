"""Resumable stores, the plan: which variables of a lazy result are computed chunk by chunk.

:func:`plan_chunks` sorts the variables of a (lazy) registration result into those a
time chunk of which needs only that chunk of frames (written to a store, or a file,
chunk by chunk), those that need every frame (computed at the end by
:func:`compute_final` from the per-chunk values, without registering again) and those
already in memory.  Used by :mod:`xnormcorre.io.store` and the NWB export.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.optimization import cull

__all__ = ["ChunkPlan", "compute_final", "plan_chunks"]


# --------------------------------------------------------------------------- plan
@dataclass
class ChunkPlan:
    """How the variables of a result are computed: chunk by chunk, at the end, or already.

    ``units`` are the frames per time chunk (of ``corrected``), ``local`` the dask
    variables a chunk of which needs only that chunk of frames, ``final`` the dask
    variables that need every frame (computed by :func:`compute_final`), ``eager`` the
    variables already in memory.
    """

    units: tuple[int, ...]  # frames per time chunk (the unit of work and of the done record)
    local: list[str] = field(default_factory=list)  # dask, per-frame, computable chunk by chunk
    final: list[str] = field(default_factory=list)  # dask, needing every frame: computed at the end
    eager: list[str] = field(default_factory=list)  # already in memory: written at creation

    @property
    def bounds(self) -> list[tuple[int, int]]:
        stops = np.cumsum(self.units).tolist()
        return list(zip([0, *stops[:-1]], stops, strict=True))


def _keys(arr: da.Array) -> list:
    return list(dask.core.flatten(arr.__dask_keys__()))


def _closure(arr: da.Array) -> tuple[dict, dict]:
    """Tasks needed for ``arr`` and their dependencies."""
    return cull(dict(arr.__dask_graph__()), _keys(arr))


def _is_chunk_local(var: xr.DataArray, bounds: list[tuple[int, int]]) -> bool:
    """True if a chunk of ``var`` needs no task that another chunk also needs (except inputs).

    Tasks without dependencies (the opened file, constants) may be shared; a task with
    dependencies that two chunks share (e.g. a reduction over all frames) makes the
    variable depend on every frame.
    """
    if len(bounds) < 2:
        return True
    (a0, b0), (a1, b1) = bounds[0], bounds[1]
    g0, _ = _closure(var.isel(time=slice(a0, b0)).data)
    g1, deps1 = _closure(var.isel(time=slice(a1, b1)).data)
    return all(not deps1.get(k) for k in g0.keys() & g1.keys())


def plan_chunks(res: xr.Dataset) -> ChunkPlan:
    """Sort the variables of a result (except ``corrected``) by how they can be computed.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(64, 64), max_shift=2)
    >>> plan = plan_chunks(xnormcorre.rigid(movie.chunk({"time": 8}), max_shifts=3))
    >>> plan.units, plan.local, plan.final, plan.eager
    ((8, 8, 4), ['correlation', 'shifts', 'at_max_shift'], ['low_correlation'], ['template', 'defect_mask'])
    """
    names = [v for v in res.data_vars if v != "corrected"]
    timed = [v for v in names if "time" in res[v].dims]
    lazy = [v for v in names if res[v].chunks is not None]
    ref = res["corrected"] if "corrected" in res and res["corrected"].chunks is not None else None
    if ref is None:
        ref = next((res[v] for v in timed if res[v].chunks is not None), None)
    n = res.sizes["time"]
    units = (n,) if ref is None else tuple(ref.variable.chunksizes["time"])
    plan = ChunkPlan(units=units)
    bounds = plan.bounds
    for v in names:
        if v not in lazy:
            plan.eager.append(v)
        elif (
            v in timed
            and tuple(res[v].variable.chunksizes["time"]) == units
            and _is_chunk_local(res[v], bounds)
        ):
            plan.local.append(v)
        else:
            plan.final.append(v)
    return plan


def _override_blocks(arr: da.Array, full: np.ndarray) -> dict:
    """Graph entries giving each block of ``arr`` its stored value."""
    edges = [np.cumsum((0, *c)) for c in arr.chunks]
    out = {}
    for idx in itertools.product(*(range(len(c)) for c in arr.chunks)):
        sl = tuple(slice(e[i], e[i + 1]) for e, i in zip(edges, idx, strict=True))
        out[(arr.name, *idx)] = full[sl]
    return out


def compute_final(res: xr.Dataset, plan: ChunkPlan, local: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Compute the ``final`` variables of ``plan`` from the values of its ``local`` ones.

    The dask graph of each final variable gets the given values in place of the blocks
    of the local variables, so nothing is registered again (a final variable that needs
    anything else, e.g. ``corrected``, would compute it).

    Parameters
    ----------
    res : xarray.Dataset
        The lazy result that ``plan`` was made from.
    plan : ChunkPlan
        From :func:`plan_chunks`.
    local : mapping
        Name -> whole NumPy array (all frames) of each variable in ``plan.local``.
    """
    known: dict = {}
    for v in plan.local:
        known.update(_override_blocks(res[v].data, np.asarray(local[v])))
    arrays = []
    for v in plan.final:
        arr = res[v].data
        dsk = dict(arr.__dask_graph__())
        dsk.update({k: val for k, val in known.items() if k in dsk})
        arrays.append(da.Array(dsk, arr.name, arr.chunks, meta=arr._meta))
    values = dask.compute(*arrays, scheduler="threads")
    return {v: np.asarray(x) for v, x in zip(plan.final, values, strict=True)}
