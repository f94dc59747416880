"""Command-line saving: the resumable store (``--resume``, ``--store``) and NWB output (``-o out.nwb``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .output import CLIError, log, output_path, require

__all__ = ["check_nwb", "register_into", "reopen_nwb", "store_target", "write_nwb_output"]


def store_target(args: argparse.Namespace, out: Path) -> Path | None:
    """The zarr store of the run's per-chunk results: ``--store PATH``, or with ``--resume``
    ``<OUT stem>_shifts.zarr`` next to OUT; None without either (no store).

    Without ``--resume`` the store must not exist yet (it is never replaced, not even with
    ``--overwrite``: it may hold the work of an interrupted run).
    """
    if args.store is None and not args.resume:
        return None
    store = output_path(args.store) if args.store is not None else out.with_name(f"{out.stem}_shifts.zarr")
    if store == out:
        raise CLIError(f"--store {str(store)!r} is the output: choose another path")
    if store.exists() and not args.resume:
        raise FileExistsError(
            f"store {str(store)!r} exists; pass --resume to continue it, or delete it to start again"
        )
    require("zarr", "--resume/--store", "zarr")
    return store


def register_into(args: argparse.Namespace, register, store: Path | None, movie, **kw: Any):
    """``register(movie, **kw)`` (``rigid`` or ``pwrigid``), with the per-chunk results in
    ``store`` (and a progress bar) when there is one."""
    if store is None:
        return register(movie, **kw)
    from ..core.resume import run_with_store

    if args.resume and store.exists():
        from ..io.store import store_status

        s = store_status(store)
        log(args, f"resuming {store}: {s['chunks_done']} of {s['n_chunks']} chunks done")
    else:
        log(args, f"per-chunk results go to {store} (continue an interrupted run with --resume)")
    arguments = {"movie": movie, "store": store, "resume": bool(args.resume), **kw}
    return run_with_store(register, arguments, progress=not args.quiet)


def check_nwb(fmt: str) -> None:
    """``-o out.nwb`` needs pynwb."""
    if fmt == "nwb":
        require("pynwb", "NWB output", "'xnormcorre[nwb]'")


def write_nwb_output(args: argparse.Namespace, res, out: Path, *, dtype, names: list[str]):
    """Write ``res`` to the NWB file ``out`` (streamed: a lazy result is registered as it is
    written); return the variables ``names`` computed on the way, as a Dataset."""
    import warnings

    import xarray as xr

    from ..io.nwb import write_nwb

    fps = getattr(args, "fps", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, values = write_nwb(
            res, out, overwrite=args.overwrite, dtype=dtype, rate=fps, progress=not args.quiet
        )
    for w in caught:
        if "rate = 1.0 Hz" in str(w.message):
            print(
                "note: the movie's file gives no frame rate, so the NWB series get rate = 1.0 Hz; pass --fps HZ"
            )
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return xr.Dataset({v: res[v].copy(data=values[v]) for v in names})


def reopen_nwb(path: Path):
    """The corrected movie of an NWB file just written, lazily, as ``(time, y, x)``."""
    import dask.array as da
    import h5py
    import xarray as xr

    f = h5py.File(path, "r")
    stacks = f["processing/ophys/MotionCorrection"]
    data = stacks[next(iter(stacks))]["corrected/data"]
    lazy = da.from_array(data, chunks=(min(len(data), 256), *data.shape[1:])).transpose(0, 2, 1)
    return xr.DataArray(lazy, dims=("time", "y", "x"), name="corrected")
