"""Resumable runs: the results of a lazy registration written to a zarr store chunk by chunk.

:func:`compute_to_store` computes a lazy result Dataset (``rigid(...)`` or ``pwrigid(...)``
of a dask-backed movie) one time chunk at a time and writes each chunk's per-frame results
-- shifts, correlation, flags: every variable except ``corrected`` -- to a zarr store as
soon as it is done, then records the chunk as done.  The template, the coordinates and
the attributes are written once, when the store is created, with a fingerprint of the run
(input, template, parameters, chunks, versions).  After a crash, an interrupt or a
pre-empted job, ``resume=True`` checks the fingerprint and computes only the chunks that
are not done; the final Dataset is the same, bit for bit, as that of an uninterrupted run.

Variables that depend on every frame (``low_correlation``: a robust threshold over all
frames) are computed at the end from the stored per-frame values, never by registering
frames again.

Store layout (zarr format 2, consolidated metadata; ``xr.open_zarr(store)`` opens it):

* the result's variables except ``corrected``, zarr-chunked along ``time`` like the run;
* ``chunk_done (chunk)`` int8 (1 = the chunk's results are written) with the coordinates
  ``chunk_start``/``chunk_stop`` (frames), and ``final_done`` (1 = the variables that need
  every frame are written);
* ``attrs``: the result's attributes plus ``xnormcorre_store``, a JSON record of the
  fingerprint and the chunk boundaries.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from tqdm.std import tqdm

from ._docs import fill_doc
from .store_plan import ChunkPlan, compute_final, plan_chunks
from .store_record import (
    BOOKKEEPING,
    DONE_VAR,
    FINAL_VAR,
    FORMAT,
    STORE_ATTR,
    ZARR_FORMAT,
    bookkeeping,
    create_store,
    differences,
    fingerprint,
    is_zarr_store,
    require_zarr,
    store_path,
)

__all__ = ["ChunkPlan", "compute_final", "compute_to_store", "load_template", "plan_chunks", "store_status"]

#: Time chunks computed concurrently (each one already uses several cores).
_IN_FLIGHT = 2


# --------------------------------------------------------------------------- writing
def _read_done(p: Path) -> np.ndarray:
    with xr.open_zarr(p, chunks=None) as ds:
        return np.asarray(ds[DONE_VAR].values, dtype=np.int8)


class _Writer:
    """Writes chunk results straight into the store's zarr arrays (opened once)."""

    def __init__(self, p: Path, res: xr.Dataset, names: list[str]):
        self.p, self.res = p, res
        zarr = require_zarr()
        group = zarr.open_group(str(p), mode="r+", zarr_format=ZARR_FORMAT)
        self.arrays = {v: group[v] for v in [*names, DONE_VAR]}
        # write raw values only where xarray stores them unencoded (same dtype); else through xarray
        self.raw = {v: self.arrays[v].dtype == res[v].dtype for v in names}

    def chunk(self, names: list[str], values: list[np.ndarray], a: int, b: int) -> None:
        slow = {}
        for v, x in zip(names, values, strict=True):
            if self.raw[v]:
                axis = self.res[v].dims.index("time")
                key = tuple(slice(a, b) if k == axis else slice(None) for k in range(x.ndim))
                self.arrays[v][key] = x
            else:
                slow[v] = (self.res[v].dims, x)
        if slow:
            xr.Dataset(slow).to_zarr(self.p, region={"time": slice(a, b)}, mode="r+")

    def done(self, i: int) -> None:
        self.arrays[DONE_VAR][i] = 1


def _compute_chunk(res: xr.Dataset, names: list[str], a: int, b: int) -> list[np.ndarray]:
    arrays = [res[v].isel(time=slice(a, b)).data for v in names]
    return [np.asarray(x) for x in dask.compute(*arrays, scheduler="threads")]


def _run_chunks(p: Path, res: xr.Dataset, plan: ChunkPlan, todo: list[int], bar: tqdm) -> None:
    """Compute the pending chunks (a few at a time) and write each, in order, as it finishes."""
    bounds = plan.bounds
    writer = _Writer(p, res, plan.local)
    pool = ThreadPoolExecutor(max_workers=_IN_FLIGHT)
    pending: list[tuple[int, Future]] = []
    ok = False
    try:
        for i in itertools.chain(todo, [None] * _IN_FLIGHT):
            if i is not None:
                pending.append((i, pool.submit(_compute_chunk, res, plan.local, *bounds[i])))
            if len(pending) >= _IN_FLIGHT or (i is None and pending):
                j, fut = pending.pop(0)
                a, b = bounds[j]
                writer.chunk(plan.local, fut.result(), a, b)
                writer.done(j)
                bar.update(b - a)
        ok = True
    finally:
        # on error or interrupt, do not wait for the chunks in flight: nothing more is written
        pool.shutdown(wait=ok, cancel_futures=True)


def _write_final(p: Path, res: xr.Dataset, plan: ChunkPlan) -> None:
    """Compute the variables that need every frame from the stored per-frame ones; write them."""
    if not plan.final:
        return
    with xr.open_zarr(p, chunks=None) as stored:
        local = {v: np.asarray(stored[v].values) for v in plan.local}
    values = compute_final(res, plan, local)
    timed = {v: x for v, x in values.items() if "time" in res[v].dims}
    other = {v: x for v, x in values.items() if "time" not in res[v].dims}
    if timed:
        sub = xr.Dataset({v: (res[v].dims, x) for v, x in timed.items()})
        sub.to_zarr(p, region={"time": slice(0, res.sizes["time"])}, mode="r+")
    if other:
        sub = xr.Dataset({v: (res[v].dims, x, res[v].attrs) for v, x in other.items()})
        sub.to_zarr(p, mode="a")
    zarr = require_zarr()
    zarr.open_group(str(p), mode="r+", zarr_format=ZARR_FORMAT)[FINAL_VAR][...] = 1


def _native(obj):
    """Variables with the native dtype spelling (zarr gives '<f4' for float32)."""

    def fix(var: xr.Variable) -> xr.Variable:
        dt = var.dtype
        if dt.kind in "biufc" and dt.byteorder in "<>" and dt.isnative:
            return var.copy(data=var.values.view(dt.newbyteorder("=")))
        return var

    if isinstance(obj, xr.DataArray):
        return obj.copy(data=fix(obj.variable).values).assign_coords(
            {k: fix(c.variable) for k, c in obj.coords.items()}
        )
    return obj.assign_coords({k: fix(c.variable) for k, c in obj.coords.items()}).assign(
        {k: fix(v.variable) for k, v in obj.data_vars.items()}
    )


def _load(p: Path, order: list[str]) -> xr.Dataset:
    with xr.open_zarr(p, chunks=None, decode_timedelta=False) as ds:
        out = _native(ds.drop_vars(list(BOOKKEEPING)).load().drop_encoding())
    out.attrs.pop(STORE_ATTR, None)
    return out[[v for v in order if v in out.data_vars]]


# --------------------------------------------------------------------------- public API
@fill_doc
def compute_to_store(
    res: xr.Dataset,
    store: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    movie: xr.DataArray | np.ndarray | None = None,
    progress: bool = True,
    keep_corrected: bool = True,
) -> xr.Dataset:
    """Compute a (lazy) result chunk by chunk into a zarr store; resume an interrupted run.

    Every variable of ``res`` except ``corrected`` is written to ``store``: the template,
    coordinates and attributes when the store is created, then, for each dask time chunk
    as it finishes, the chunk's per-frame results (shifts, correlation, flags), followed
    by a record that the chunk is done.  Variables that depend on every frame
    (``low_correlation``) are computed at the end from the stored per-frame values.

    Parameters
    ----------
    res : xarray.Dataset
        A result of :func:`xnormcorre.rigid` or :func:`xnormcorre.pwrigid`; dask-backed
        (from a chunked movie) to be computed chunk by chunk.  An in-memory result is
        simply saved.
    store : str or path
        Zarr store (a folder).  Created under a temporary name and moved into place, so
        a store at this path is always complete up to its ``chunk_done`` record.
    resume : bool
        Continue an existing store: check that it was written by the same run
        (parameters, template, sizes, chunks, coordinates, package versions and, when
        both runs give ``movie``, the input) and compute only the chunks not done.
        Without a store at ``store`` a new one is started.
    overwrite : bool
        Replace an existing zarr store (without ``resume``).  Default: ``FileExistsError``.
    movie : DataArray or array, optional
        The input movie: its shape, dtype, source and the bytes of its first and last
        frames join the fingerprint.
    %(progress)s
    keep_corrected : bool
        Return ``res.corrected`` (lazy: computing it registers the frames again) with the
        stored variables.

    Returns
    -------
    xarray.Dataset
        The stored variables in memory, equal bit for bit to those of
        ``res.compute()`` (attributes included: on resume, those of the stored run), and
        ``corrected`` from ``res`` if ``keep_corrected``.

    Raises
    ------
    FileExistsError
        ``store`` exists and neither ``resume`` nor ``overwrite`` is given.
    ValueError
        ``resume=True`` on a store of another run (the message names what differs; the
        store is left untouched), or ``store`` is not a store of this function.

    Examples
    --------
    >>> import pathlib, tempfile, xnormcorre
    >>> from xnormcorre.io.store import compute_to_store, load_template
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(64, 64), max_shift=2).chunk({"time": 5})
    >>> store = pathlib.Path(tempfile.mkdtemp()) / "run.zarr"
    >>> res = xnormcorre.rigid(movie, max_shifts=3)
    >>> out = compute_to_store(res, store, progress=False)
    >>> bool((out.shifts == res.shifts).all()), sorted(out.data_vars)[:3]
    (True, ['at_max_shift', 'corrected', 'correlation'])
    >>> again = xnormcorre.rigid(movie, max_shifts=3, template=load_template(store))
    >>> out2 = compute_to_store(again, store, resume=True, progress=False)  # nothing left to compute
    >>> out2.drop_vars("corrected").identical(out.drop_vars("corrected"))
    True
    """
    if not isinstance(res, xr.Dataset):
        raise TypeError(f"res must be a result Dataset of rigid/pwrigid, got {type(res).__name__}")
    if "time" not in res.dims or "template" not in res:
        raise ValueError("res must be a registration result with a 'time' dim and a 'template' variable")
    if resume and overwrite:
        raise ValueError("give resume=True (continue the store) or overwrite=True (start again), not both")
    require_zarr()
    p = store_path(store)
    plan = plan_chunks(res)
    fp = fingerprint(res, plan, movie)
    record = {"format": FORMAT, "fingerprint": fp}
    if p.exists() and resume:
        stored = bookkeeping(p)
        diffs = differences(stored["fingerprint"], fp)
        if diffs:
            raise ValueError(
                f"cannot resume {str(p)!r}: it was written by another run, and is left untouched. "
                + "; ".join(diffs)
                + ". Resume with the same movie, chunks and parameters, or start again in a new store."
            )
    elif p.exists():
        if not overwrite:
            raise FileExistsError(
                f"store {str(p)!r} exists; pass resume=True to continue it or overwrite=True to replace it"
            )
        if not is_zarr_store(p) and any(p.iterdir()):
            raise ValueError(f"{str(p)!r} is a folder but not a zarr store: refusing to replace it")
        create_store(p, res, plan, record, replace=True)
    else:
        create_store(p, res, plan, record, replace=False)

    done = _read_done(p)
    bounds = plan.bounds
    todo = [i for i in range(len(bounds)) if not done[i]]
    frames_done = sum(b - a for i, (a, b) in enumerate(bounds) if done[i])
    with tqdm(
        total=res.sizes["time"],
        initial=frames_done,
        unit="frame",
        desc=f"store {p.name}",
        disable=not progress,
    ) as bar:
        if todo:
            _run_chunks(p, res, plan, todo, bar)
    _write_final(p, res, plan)
    out = _load(p, list(res.data_vars))
    if keep_corrected and "corrected" in res:
        out = out.assign(corrected=res["corrected"])[list(res.data_vars)]
    return out


def load_template(store: str | os.PathLike) -> xr.DataArray:
    """The template stored by :func:`compute_to_store`, to pass as ``template=`` on resume.

    Registering to the stored template skips template estimation and gives the same
    bits as the interrupted run.

    Examples
    --------
    >>> import pathlib, tempfile, xnormcorre
    >>> from xnormcorre.io.store import compute_to_store, load_template
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(64, 64), max_shift=2).chunk({"time": 10})
    >>> store = pathlib.Path(tempfile.mkdtemp()) / "run.zarr"
    >>> res = compute_to_store(xnormcorre.rigid(movie, max_shifts=3), store, progress=False)
    >>> tmpl = load_template(store)
    >>> tmpl.dims, tmpl.dtype, bool((tmpl == res.template).all())
    (('y', 'x'), dtype('float32'), True)
    """
    p = Path(os.fspath(store)).expanduser().absolute()
    if not p.exists():
        raise FileNotFoundError(f"store not found: {str(p)!r}")
    bookkeeping(p)
    with xr.open_zarr(p, chunks=None) as ds:
        return _native(ds["template"].load().drop_encoding())


def store_status(store: str | os.PathLike) -> dict[str, Any]:
    """Progress of a store: chunks and frames done, and whether it is complete.

    Returns
    -------
    dict
        ``n_chunks``, ``chunks_done``, ``n_frames``, ``frames_done``, ``complete``
        (every chunk and the variables needing every frame are written: the store then
        opens with ``xr.open_zarr`` as the finished result, plus its bookkeeping
        variables) and ``fingerprint`` (the stored run's record).  Until then, the
        frames of pending chunks and the variables needing every frame hold fill values.
    """
    p = Path(os.fspath(store)).expanduser().absolute()
    if not p.exists():
        raise FileNotFoundError(f"store not found: {str(p)!r}")
    record = bookkeeping(p)
    with xr.open_zarr(p, chunks=None) as ds:
        done = np.asarray(ds[DONE_VAR].values, bool)
        final = bool(ds[FINAL_VAR].values)
        sizes = np.asarray(ds["chunk_stop"].values) - np.asarray(ds["chunk_start"].values)
    return {
        "n_chunks": int(done.size),
        "chunks_done": int(done.sum()),
        "n_frames": int(sizes.sum()),
        "frames_done": int(sizes[done].sum()),
        "complete": bool(done.all()) and final,
        "fingerprint": record["fingerprint"],
    }
