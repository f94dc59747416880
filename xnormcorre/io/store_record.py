"""Resumable stores, the record: paths, bookkeeping names, the fingerprint of a run and the
creation of a new store.

A store of :func:`xnormcorre.io.store.compute_to_store` keeps, in its root attribute
:data:`STORE_ATTR`, a JSON record of the run that wrote it (parameters, template,
sizes, chunks, coordinates, package versions, input); :func:`differences` lists, in
words, what a resumed run does not share with it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import conventions as cv
from .store_plan import ChunkPlan

__all__ = [
    "BOOKKEEPING",
    "CHUNK_DIM",
    "DONE_VAR",
    "FINAL_VAR",
    "FORMAT",
    "STORE_ATTR",
    "VERSION_KEYS",
    "ZARR_FORMAT",
    "bookkeeping",
    "create_store",
    "differences",
    "fingerprint",
    "is_zarr_store",
    "require_zarr",
    "store_encoding",
    "store_path",
    "store_skeleton",
    "zarr_time_chunk",
]

#: Root attribute holding the store's bookkeeping (JSON).
STORE_ATTR = "xnormcorre_store"
#: Name of the per-chunk "done" record and its dimension.
DONE_VAR, CHUNK_DIM = "chunk_done", "chunk"
#: Scalar record that the variables needing every frame are written.
FINAL_VAR = "final_done"
BOOKKEEPING = (DONE_VAR, FINAL_VAR, "chunk_start", "chunk_stop")
FORMAT = 1
ZARR_FORMAT = 2
VERSION_KEYS = ("xnormcorre_version", "jax_version", "jaxlib_version", "numpy_version", "xarray_version")


# --------------------------------------------------------------------------- paths
def require_zarr():
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("resumable stores need zarr: pip install zarr") from exc
    return zarr


def store_path(store: str | os.PathLike) -> Path:
    if not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a path to a zarr store (a folder), got {type(store).__name__}")
    p = Path(os.fspath(store)).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise FileExistsError(f"store {str(p)!r} is a file; a zarr store is a folder: give another path")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"folder {str(p.parent)!r} of the store does not exist")
    return p


def is_zarr_store(p: Path) -> bool:
    return p.is_dir() and any((p / name).exists() for name in (".zgroup", "zarr.json"))


def bookkeeping(p: Path) -> dict[str, Any]:
    """The store's bookkeeping record; ValueError if ``p`` is not a store of this module."""
    if not is_zarr_store(p):
        raise ValueError(f"{str(p)!r} is not a zarr store (no .zgroup/zarr.json)")
    with xr.open_zarr(p, chunks=None) as ds:
        raw = ds.attrs.get(STORE_ATTR)
    if raw is None:
        raise ValueError(
            f"{str(p)!r} is a zarr store but not a resumable xnormcorre store (no {STORE_ATTR!r})"
        )
    record = json.loads(raw)
    if record.get("format") != FORMAT:
        raise ValueError(f"store {str(p)!r} has format {record.get('format')!r}; this version reads {FORMAT}")
    return record


# --------------------------------------------------------------------------- fingerprint
def _sha256(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            if arr.dtype.kind in "OUS":
                arr = np.asarray([str(x) for x in arr.ravel()], dtype=object)
                h.update(json.dumps(arr.tolist()).encode())
            else:
                h.update(f"{arr.dtype.str}{arr.shape}".encode())
                h.update(arr.tobytes())
        else:
            h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def _movie_record(movie: Any) -> dict[str, Any]:
    m = cv.as_movie(movie)
    first = np.asarray(m.isel(time=0).values)
    last = np.asarray(m.isel(time=-1).values)
    return {
        "shape": list(m.shape),
        "dtype": str(m.dtype),
        "source": str(m.encoding.get("source") or m.attrs.get("source") or ""),
        "first_last_frames_sha256": _sha256(first, last),
    }


def fingerprint(res: xr.Dataset, plan: ChunkPlan, movie: Any = None) -> dict[str, Any]:
    """What a resumed run must share with the stored one (JSON-safe dict)."""
    coords = {
        name: _sha256(name, np.asarray(c.values), json.dumps(c.attrs, sort_keys=True, default=str))
        for name, c in sorted(res.coords.items())
    }
    variables = {
        v: f"{res[v].dtype}{tuple(res[v].dims)}{tuple(res[v].shape)}"
        for v in res.data_vars
        if v != "corrected"
    }
    return {
        "method": str(res.attrs.get("method", "")),
        "parameters": str(res.attrs.get("parameters", "")),
        "template": _sha256(np.asarray(res["template"].values)),
        "sizes": {k: int(v) for k, v in res.sizes.items()},
        "time_chunks": list(plan.units),
        "coords": coords,
        "variables": variables,
        "source": str(res.attrs.get("source", "")),
        "versions": {k: res.attrs.get(k, "") for k in VERSION_KEYS},
        "movie": _movie_record(movie) if movie is not None else None,
    }


def _param_diff(stored: str, now: str) -> str:
    try:
        a, b = json.loads(stored or "{}"), json.loads(now or "{}")
    except json.JSONDecodeError:
        return "parameters differ"
    keys = sorted(set(a) | set(b))
    diffs = [f"{k}: stored {a.get(k)!r}, now {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
    return "parameters differ (" + "; ".join(diffs) + ")"


def differences(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    out = []
    for key in ("method", "parameters", "template", "sizes", "time_chunks", "coords", "variables"):
        a, b = stored.get(key), now.get(key)
        if a == b:
            continue
        if key == "parameters":
            out.append(_param_diff(a, b))
        elif key == "template":
            out.append("the template differs (pass template=load_template(store) to reuse the stored one)")
        elif key == "time_chunks":
            out.append(
                f"time chunks differ (stored {_short(a)}, now {_short(b)}): open the movie with the same chunks"
            )
        elif key == "coords":
            names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            out.append(f"coordinates differ: {', '.join(names)}")
        else:
            out.append(f"{key} differ: stored {a!r}, now {b!r}")
    if stored.get("source") and now.get("source") and stored["source"] != now["source"]:
        out.append(f"source differs: stored {stored['source']!r}, now {now['source']!r}")
    sv, nv = stored.get("versions", {}), now.get("versions", {})
    changed = [
        f"{k}: stored {sv.get(k)!r}, now {nv.get(k)!r}" for k in VERSION_KEYS if sv.get(k) != nv.get(k)
    ]
    if changed:
        out.append("package versions differ, so the bits may too (" + "; ".join(changed) + ")")
    sm, nm = stored.get("movie"), now.get("movie")
    if sm is not None and nm is not None:
        for k in ("shape", "dtype", "source", "first_last_frames_sha256"):
            if sm.get(k) != nm.get(k):
                what = "first/last frames" if k.endswith("sha256") else k
                out.append(f"movie {what} differ(s): stored {sm.get(k)!r}, now {nm.get(k)!r}")
    return out


def _short(seq: Any) -> str:
    seq = list(seq or [])
    return str(seq) if len(seq) <= 6 else f"[{', '.join(map(str, seq[:3]))}, ... ({len(seq)} chunks)]"


# --------------------------------------------------------------------------- creation
def zarr_time_chunk(units: tuple[int, ...]) -> int:
    """zarr chunk length along time: the run's chunk size, or a divisor of every chunk."""
    first = units[0]
    if all(u == first for u in units[:-1]) and units[-1] <= first:
        return first
    return math.gcd(*units)


def store_encoding(res: xr.Dataset, names: list[str], tchunk: int) -> dict[str, dict]:
    """zarr chunks of the variables ``names`` of ``res``: ``tchunk`` frames along time, whole otherwise."""
    enc = {}
    for v in names:
        var = res[v]
        if "time" in var.dims:
            enc[v] = {"chunks": tuple(tchunk if d == "time" else var.sizes[d] for d in var.dims)}
    return enc


def store_skeleton(res: xr.Dataset, plan: ChunkPlan, record: dict) -> xr.Dataset:
    """The Dataset a new store is created from: ``res`` without ``corrected``, the chunk records
    (all pending) and the bookkeeping ``record`` in the attributes."""
    skel = res.drop_vars("corrected", errors="ignore").drop_encoding()
    skel = skel.assign_coords({k: c.compute() for k, c in skel.coords.items() if c.chunks is not None})
    bounds = plan.bounds
    done = np.zeros(len(bounds), np.int8)
    if not plan.local:
        done[:] = 1  # nothing to compute chunk by chunk
    skel[DONE_VAR] = xr.DataArray(
        done,
        dims=(CHUNK_DIM,),
        coords={
            "chunk_start": (CHUNK_DIM, [a for a, _ in bounds], {"long_name": "first frame", "units": "1"}),
            "chunk_stop": (
                CHUNK_DIM,
                [b for _, b in bounds],
                {"long_name": "one past the last frame", "units": "1"},
            ),
        },
        attrs={
            "long_name": "time chunk whose results are written",
            "units": "1",
            "flag_values": [0, 1],
            "flag_meanings": "pending done",
        },
    )
    skel[FINAL_VAR] = xr.DataArray(
        np.int8(0 if plan.final else 1),
        attrs={
            "long_name": "variables needing every frame are written",
            "units": "1",
            "flag_values": [0, 1],
            "flag_meanings": "pending done",
        },
    )
    skel.attrs = {**res.attrs, STORE_ATTR: json.dumps(record, sort_keys=True)}
    return skel


def create_store(p: Path, res: xr.Dataset, plan: ChunkPlan, record: dict, replace: bool) -> None:
    """Write a new store under a temporary name and move it into place."""
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.part")
    skel = store_skeleton(res, plan, record)
    enc = store_encoding(
        skel, [v for v in skel.data_vars if v not in BOOKKEEPING], zarr_time_chunk(plan.units)
    )
    enc[DONE_VAR] = {"chunks": (1,)}
    try:
        skel.to_zarr(tmp, mode="w-", compute=False, encoding=enc, zarr_format=ZARR_FORMAT, consolidated=True)
        if replace:
            trash = p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.old")
            os.replace(p, trash)
            os.replace(tmp, p)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
