"""Resumable movie writes: ``to_tiff``, ``to_hdf5`` and ``to_zarr`` (a movie) with ``resume=True``.

A resumable write goes, like every write, to a hidden temporary file beside the output
that is renamed to the output's name when complete
(:func:`xnormcorre.io.atomic.write_atomically`); but its temporary has a fixed name,
``.<name>.resume.part``, and a small JSON record beside it, ``.<name>.resume.json``,
says which run wrote it and how many frames are written.  The file's layout (TIFF
header and IFDs, the HDF5 dataset with every chunk allocated, the zarr metadata) is
made first, then the frames are written in place block by block; after each block the
data are synced to disk and the record updated.

When the write does not complete -- the process SIGKILLed or its node lost, Ctrl-C,
SIGTERM, an error -- the partial file and its record are kept.  Writing again with
``resume=True`` checks that the record belongs to the same write (format, shape, dtype,
options, the movie's name, attributes and coordinates, package versions) and that the
first and the last written frames equal those of this movie, then writes only the
frames that are missing and renames the file as usual: the result is the same file as
an uninterrupted write (the same bytes for TIFF, the same values and attributes for
HDF5 and zarr).  A record of another write is a ``ValueError`` and nothing is changed.
Without ``resume`` nothing of this applies: the temporary has a random name and is
removed on any failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xarray as xr
from tqdm.std import tqdm

from . import atomic

__all__ = ["Filler", "Layout", "check_resume", "partial_paths", "partial_status", "write_resumably"]

#: Version of the record's layout.
RECORD_FORMAT = 1


class Filler(Protocol):
    """Writes frames in place into a partial file made by :meth:`Layout.create`."""

    def put(self, start: int, block: np.ndarray) -> None: ...

    def sync(self) -> None: ...


class Layout(Protocol):
    """A resumable file format: makes the file's layout, fills frames in place, reads one back."""

    fmt: str

    store: bool  # the output is a folder (a zarr store)

    def options(self, movie: xr.DataArray, dtype: np.dtype) -> dict[str, Any]: ...

    def versions(self) -> dict[str, str]: ...

    def create(self, part: Path, movie: xr.DataArray, dtype: np.dtype) -> dict[str, Any]: ...

    def filler(
        self, part: Path, shape: tuple[int, int, int], dtype: np.dtype, info: dict[str, Any]
    ) -> contextlib.AbstractContextManager[Filler]: ...

    def read(
        self, part: Path, shape: tuple[int, int, int], dtype: np.dtype, info: dict[str, Any], index: int
    ) -> np.ndarray: ...


def check_resume(resume: Any) -> bool:
    """``resume`` if it is True or False, else ``TypeError``.

    Examples
    --------
    >>> check_resume(False)
    False
    >>> check_resume("yes")
    Traceback (most recent call last):
    ...
    TypeError: resume must be True or False, got 'yes'
    """
    if not isinstance(resume, (bool, np.bool_)):
        raise TypeError(f"resume must be True or False, got {resume!r}")
    return bool(resume)


def partial_paths(target: Path) -> tuple[Path, Path]:
    """The partial file and its record of a resumable write of ``target``.

    Examples
    --------
    >>> [p.name for p in partial_paths(Path("/data/out.tif"))]
    ['.out.tif.resume.part', '.out.tif.resume.json']
    """
    return (
        target.with_name(f".{target.name}.resume.part"),
        target.with_name(f".{target.name}.resume.json"),
    )


def partial_status(target: str | os.PathLike) -> dict[str, int] | None:
    """``frames_done`` and ``n_frames`` of an interrupted resumable write of ``target``;
    None if there is none (or its record is unreadable).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> print(partial_status(pathlib.Path(tempfile.mkdtemp()) / "out.tif"))
    None
    """
    part, rec = partial_paths(Path(os.fspath(target)).expanduser().absolute())
    if not (os.path.exists(part) and rec.is_file()):
        return None
    try:
        record = json.loads(rec.read_text())
        return {"frames_done": int(record["frames_done"]), "n_frames": int(record["shape"][0])}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _digest(obj: Any) -> str:
    h = hashlib.sha256()
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "OUSM":
            h.update(json.dumps([str(x) for x in obj.ravel()]).encode())
        else:
            h.update(f"{obj.dtype.str}{obj.shape}".encode())
            h.update(np.ascontiguousarray(obj).tobytes())
    else:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _identity(movie: xr.DataArray, dtype: np.dtype, layout: Layout, target: Path) -> dict[str, Any]:
    """What a continued write must share with the one that made the partial file."""
    from .. import __version__

    shape = tuple(int(s) for s in movie.shape)
    return {
        "format": layout.fmt,
        "target": target.name,
        "shape": list(shape),
        "dtype": str(dtype),
        "options": layout.options(movie, dtype),
        "name": str(movie.name),
        "attrs": _digest(dict(movie.attrs)),
        "coords": {k: _digest(np.asarray(c.values)) for k, c in sorted(movie.coords.items())},
        "versions": {"xnormcorre": __version__, **layout.versions()},
    }


def _differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    for key in ("format", "target", "shape", "dtype", "options", "name", "attrs", "coords", "versions"):
        a, b = stored.get(key), now.get(key)
        if a == b:
            continue
        if key == "attrs":
            out.append("the movie's attributes differ")
        elif key == "coords":
            names = sorted(k for k in set(a or {}) | set(b or {}) if (a or {}).get(k) != (b or {}).get(k))
            out.append(f"the movie's coordinates differ: {', '.join(names)}")
        else:
            out.append(f"{key}: stored {a!r}, now {b!r}")
    return out


def _save_record(path: Path, record: dict[str, Any]) -> None:
    """Replace the record atomically and durably (written, synced, renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_record(part: Path, rec: Path) -> dict[str, Any] | None:
    """The record of a partial write, or None if there is none to continue (a partial file
    without a record was interrupted while its layout was made: it is removed)."""
    if not rec.is_file() or not os.path.lexists(part):
        for p in (part, rec):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        return None
    try:
        record = json.loads(rec.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"cannot resume: the record {str(rec)!r} of the partial output is unreadable ({exc}); "
            f"nothing was changed. Delete {part.name!r} and {rec.name!r} to start again"
        ) from None
    if not isinstance(record, dict) or record.get("record_format") != RECORD_FORMAT:
        raise ValueError(
            f"cannot resume: {str(rec)!r} is not a record of this version of xnormcorre; nothing was "
            f"changed. Delete {part.name!r} and {rec.name!r} to start again"
        )
    return record


def _check_frames(
    movie: xr.DataArray, dtype: np.dtype, layout: Layout, part: Path, record: dict
) -> str | None:
    """Compare the first and the last frames written with this movie's; a difference in words."""
    from .blocks import cast_block

    done = int(record["frames_done"])
    if done == 0:
        return None
    shape = tuple(record["shape"])
    index = sorted({0, done - 1})
    mine = cast_block(movie.isel({movie.dims[0]: index}).values, dtype)
    for k, frame in zip(index, mine, strict=True):
        stored = layout.read(part, shape, dtype, record["layout"], k)  # type: ignore[arg-type]
        if np.ascontiguousarray(stored).tobytes() != np.ascontiguousarray(frame).tobytes():
            return f"frame {k} already written differs from this movie's frame {k}"
    return None


def write_resumably(
    movie: xr.DataArray,
    target: Path,
    dtype: np.dtype,
    blocks_from: Callable[[int, list[int]], Iterator[np.ndarray]],
    layout: Layout,
    *,
    overwrite: bool,
    progress: bool,
) -> int:
    """Write ``movie`` to ``target`` resumably (see the module docstring), atomically.

    ``blocks_from(start, clipped)`` gives the cast blocks of frames from frame ``start``
    on, appending to ``clipped`` the number of clipped pixels of each block as it is
    given.  Returns the number of clipped pixels of the whole movie (those of the frames
    written by earlier, interrupted runs are kept in the record).

    Raises ``ValueError`` (nothing changed) when a partial file of another write is there.
    """
    part, rec = partial_paths(target)
    identity = _identity(movie, dtype, layout, target)
    record = _load_record(part, rec)
    if record is not None:
        diffs = _differences(record, identity)
        if not diffs:
            frames = _check_frames(movie, dtype, layout, part, record)
            diffs = [frames] if frames else []
        if diffs:
            raise ValueError(
                f"cannot resume writing {str(target)!r}: the partial output {part.name!r} was written by "
                f"another run ({'; '.join(diffs)}); nothing was changed. Write it with the same movie, "
                f"dtype and options, or delete {part.name!r} and {rec.name!r} in {str(target.parent)!r} "
                "to start again"
            )
    shape = tuple(identity["shape"])
    n = shape[0]
    before = 0 if record is None else int(record["clipped"])

    def write(tmp: Path) -> None:
        nonlocal record
        if record is None:
            info = layout.create(tmp, movie, dtype)
            if tmp.is_file():
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            record = {
                **identity,
                "record_format": RECORD_FORMAT,
                "layout": info,
                "frames_done": 0,
                "clipped": 0,
            }
            _save_record(rec, record)
        start = int(record["frames_done"])
        clipped: list[int] = []
        with (
            tqdm(
                total=n,
                initial=start,
                unit="frame",
                desc=f"to_{layout.fmt} {target.name}",
                disable=not progress,
            ) as bar,
            layout.filler(tmp, shape, dtype, record["layout"]) as filler,  # type: ignore[arg-type]
        ):
            for block in blocks_from(start, clipped):
                filler.put(start, block)
                start += block.shape[0]
                filler.sync()
                record = {**record, "frames_done": start, "clipped": before + sum(clipped)}
                _save_record(rec, record)
                bar.update(block.shape[0])
        if start != n:
            raise RuntimeError(f"{start} of {n} frames were written to {str(tmp)!r}")

    atomic.write_atomically(target, write, overwrite=overwrite, store=layout.store, partial=part)
    with contextlib.suppress(FileNotFoundError):
        rec.unlink()
    assert record is not None
    return int(record["clipped"])
