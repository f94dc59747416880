"""Streamed writers: :func:`to_tiff`, :func:`to_hdf5` (movies), :func:`to_netcdf` and
:func:`to_zarr` (movies or result Datasets), all through one atomic writer
(:func:`write_atomically`).

The movie writers write a ``(time, y, x)`` movie -- NumPy, lazily indexed or dask-backed, e.g. the
lazy ``corrected`` of :func:`xnormcorre.rigid` -- block by block: dask chunks (small
ones merged up to about 2**24 pixels) or batches of frames, the next block computed
in a background thread while the current one is written, with a tqdm progress bar.
Memory stays at a few blocks whatever the movie length.

The file is written under a temporary name in the target folder and renamed with
:func:`os.replace` only when complete: an error or an interrupt mid-way leaves no file
at ``path`` and no temporary file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import os
import shutil
import signal
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tifffile
import xarray as xr
from tqdm.std import tqdm

from ..schema import CORRECTED, MOVIE_DIMS
from ..validate import as_movie
from ._common import default_time_chunk

__all__ = ["cast_block", "cast_movie", "to_hdf5", "to_netcdf", "to_tiff", "to_zarr", "write_atomically"]

#: TIFF files larger than this are written as BigTIFF when ``bigtiff=None`` (tifffile's own margin).
_BIGTIFF_BYTES = 2**32 - 2**25


def _out_dtype(dtype: Any) -> np.dtype:
    if dtype is None:
        return np.dtype(np.float32)
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be a NumPy integer or float dtype, got {dtype!r}") from exc
    if out.kind not in "iuf":
        raise TypeError(f"dtype must be a NumPy integer or float dtype, got {out}")
    return out


def _target(path: str | os.PathLike, overwrite: bool, store: bool = False) -> Path:
    """The absolute output path, checked before any compute (and again at the final rename)."""
    p = Path(os.fspath(path)).expanduser().absolute()
    _check_replaceable(p, overwrite, store)
    if not p.parent.is_dir():
        raise FileNotFoundError(f"folder {str(p.parent)!r} of the output file does not exist")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES, "Permission denied: cannot write in the output folder", str(p.parent)
        )
    return p


def _check_space(target: Path, nbytes: int) -> None:
    """Refuse before any compute an uncompressed output larger than the free disk space."""
    try:
        free = shutil.disk_usage(target.parent).free
    except OSError:
        return
    if nbytes > free:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: the output needs {nbytes / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB are free",
            str(target),
        )


def count_clipped(block: np.ndarray, dtype: np.dtype) -> int:
    """Pixels of ``block`` outside the range of an integer ``dtype`` (0 for a float dtype).

    Examples
    --------
    >>> count_clipped(np.array([-3.0, 1.6, 300.0]), np.dtype(np.uint8))
    2
    """
    if dtype.kind == "f":
        return 0
    info = np.iinfo(dtype)
    vals = np.asarray(block)
    return int(np.count_nonzero((vals < info.min - 0.5) | (vals >= info.max + 0.5)))


#: Fraction of clipped pixels above which an integer output gets a warning.
CLIP_WARN_FRACTION = 1e-3


def _warn_clipped(clipped: list[int], n_pixels: int, dtype: np.dtype, target: Path) -> None:
    frac = sum(clipped) / max(1, n_pixels)
    if frac > CLIP_WARN_FRACTION:
        info = np.iinfo(dtype)
        warnings.warn(
            f"{frac:.1%} of the pixels written to {str(target)!r} were outside the range of {dtype} "
            f"[{info.min}, {info.max}] and were clipped; write float32 (the default dtype) or a wider "
            "integer dtype, or rescale the movie first",
            UserWarning,
            stacklevel=3,
        )


def cast_block(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Convert frames to the output dtype; integers are rounded and clipped, NaN -> 0.

    Examples
    --------
    >>> cast_block(np.array([-3.0, 1.6, np.nan, 70000.0]), np.dtype(np.uint16))
    array([    0,     2,     0, 65535], dtype=uint16)
    """
    if dtype.kind == "f":
        return np.asarray(block, dtype=dtype)
    info = np.iinfo(dtype)
    vals = np.asarray(block)
    if vals.dtype.kind == "f":
        vals = np.rint(np.nan_to_num(vals, nan=0.0, posinf=info.max, neginf=info.min))
    return np.clip(vals, info.min, info.max).astype(dtype)


def _bounds(movie: xr.DataArray) -> list[tuple[int, int]]:
    """Time blocks: dask chunks merged up to the default block size, or plain batches."""
    n, h, w = movie.shape
    target = default_time_chunk((n, h, w))
    if movie.chunks is None:
        return [(a, min(n, a + target)) for a in range(0, n, target)]
    out: list[tuple[int, int]] = []
    start = stop = 0
    for size in movie.chunks[0]:
        stop += size
        if stop - start >= target:
            out.append((start, stop))
            start = stop
    if stop > start:
        out.append((start, stop))
    return out


def _blocks(
    movie: xr.DataArray,
    dtype: np.dtype,
    prefetch: int,
    along: xr.Dataset | None = None,
    sink: list | None = None,
    clipped: list | None = None,
) -> Iterator[np.ndarray]:
    """Computed, cast blocks in time order; ``prefetch`` blocks are computed ahead in threads.

    ``along`` (time-aligned variables sharing the movie's dask graph, e.g. the shifts of a
    lazy registration result) is computed with each block in one ``dask.compute`` --
    the shared tasks run once -- and its blocks are appended to ``sink``.  With ``clipped``
    (a list) the number of pixels outside the range of an integer ``dtype`` is appended per block.
    """
    bounds = _bounds(movie)

    def load(a: int, b: int):
        sl = {MOVIE_DIMS[0]: slice(a, b)}
        if along is None:
            values, extra = movie.isel(sl).values, None
        else:
            import dask

            block, extra = dask.compute(movie.isel(sl), along.isel(sl))
            values = block.values
        if clipped is not None:
            clipped.append(count_clipped(values, dtype))
        return cast_block(values, dtype), extra

    pool = ThreadPoolExecutor(max_workers=prefetch)
    pending: list[Future] = []
    try:
        for a, b in bounds:
            pending.append(pool.submit(load, a, b))
            if len(pending) > prefetch:
                yield _take(pending.pop(0), sink)
        while pending:
            yield _take(pending.pop(0), sink)
    except _Terminated:
        # SIGTERM: the process ends once the temporary is removed; do not wait for the block
        # being computed
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        for f in pending:
            f.cancel()
    pool.shutdown(wait=True)


def _take(future: Future, sink: list | None) -> np.ndarray:
    block, extra = future.result()
    if sink is not None:
        sink.append(extra)
    return block


def _prefetch() -> int:
    """Blocks computed ahead of the one being written.

    One: the registration of a block already uses several cores (dask threads within
    the block, XLA's intra-op threads), so more blocks in flight only add memory
    (about 2 blocks + the JAX work buffers are resident: ~350 MB for 256×256 frames).
    """
    return 1


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def is_store(path: Path) -> bool:
    """True if ``path`` is a zarr store folder (v2 ``.zgroup``/``.zarray`` or v3 ``zarr.json``).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> is_store(d)
    False
    >>> _ = (d / ".zgroup").write_text("{}")
    >>> is_store(d)
    True
    """
    if not path.is_dir() or path.is_symlink():
        return False
    return any((path / name).is_file() for name in (".zgroup", ".zarray", "zarr.json"))


def _check_replaceable(target: Path, overwrite: bool, store: bool) -> None:
    """Raise unless ``target`` is absent, or may be replaced: ``overwrite`` and a file (or,
    for a zarr output, a zarr store).  A folder that is not a store is never replaced."""
    if not os.path.lexists(target):
        return
    is_dir = target.is_dir() and not target.is_symlink()
    if is_dir and not (store and is_store(target)):
        what = "a folder that is not a zarr store" if store else "a folder"
        raise IsADirectoryError(
            f"{str(target)!r} is {what}; it is never replaced, not even with overwrite=True: "
            "give the name of a file" + (" or of a zarr store" if store else "")
        )
    if not overwrite:
        raise FileExistsError(f"{str(target)!r} exists; pass overwrite=True to replace it")


#: errno values of a filesystem without hard links (FAT, some network and FUSE filesystems).
_NO_LINKS = {
    errno.EPERM,
    errno.EACCES,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOSYS,
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
}


def _renameat2_noreplace(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (Linux ``renameat2(RENAME_NOREPLACE)``);
    False when the system or the filesystem does not support it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, noreplace = -100, 1
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), noreplace) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _rename_noreplace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``, failing with ``FileExistsError`` if ``target`` exists now.

    A file is hard-linked (``os.link`` fails if the name exists) and the temporary name
    unlinked; a folder (zarr store) is renamed with ``renameat2(RENAME_NOREPLACE)``.
    Where neither is supported the name is first claimed with ``O_CREAT | O_EXCL``.
    """
    if tmp.is_dir():
        if _renameat2_noreplace(tmp, target):
            return
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target))
        os.rename(tmp, target)  # refuses a file or a non-empty folder at target
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    else:
        os.unlink(tmp)
        return
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # claim the name
    os.close(fd)
    try:
        os.replace(tmp, target)
    except BaseException:
        _remove(target)
        raise


def _publish(tmp: Path, target: Path, overwrite: bool, store: bool) -> None:
    """Put the finished ``tmp`` at ``target``, re-checking ``target`` now (it may have appeared
    or changed during the write)."""
    try:
        _check_replaceable(target, overwrite, store)
    except FileExistsError:
        raise FileExistsError(
            f"{str(target)!r} appeared while the output was being written; it was left as it is and "
            "the new output discarded; pass overwrite=True to replace it"
        ) from None
    if not os.path.lexists(target):
        try:
            _rename_noreplace(tmp, target)
            return
        except FileExistsError:
            if not overwrite:
                raise FileExistsError(
                    f"{str(target)!r} appeared while the output was being written; it was left as it "
                    "is and the new output discarded; pass overwrite=True to replace it"
                ) from None
            _check_replaceable(target, overwrite, store)
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
    os.replace(target, old)  # moved aside: put back if the rename fails
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    _remove(old)


class _Terminated(BaseException):
    """SIGTERM received during a write (raised in the main thread to clean up)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def _clean_up_on_sigterm(target: Path) -> Iterator[None]:
    """Turn SIGTERM into an exception while writing (the temporary is removed as on
    Ctrl-C), then restore the previous handler and deliver the signal to it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_IGN, None):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated as exc:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(exc.signum)  # default action: the process ends by SIGTERM
        raise InterruptedError(f"writing {str(target)!r} was interrupted by SIGTERM") from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _no_space(exc: BaseException, folder: Path) -> bool:
    """True if ``exc`` comes from a full disk: ENOSPC, or a short write (tifffile's "N
    requested and M written", netCDF's "HDF error") with (almost) no space left in ``folder``."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if not isinstance(exc, (OSError, RuntimeError)):
        return False
    if "No space left on device" in str(exc):
        return True
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def write_atomically(
    target: Path, write: Callable[[Path], Any], *, overwrite: bool = False, store: bool = False
) -> Path:
    """``write(tmp)`` to a temporary name beside ``target``, then move it to ``target``.

    Works for files and folders (zarr stores, ``store=True``).  ``target`` is checked
    again when the output is complete: a file that appeared there during the write is
    never replaced without ``overwrite`` (``FileExistsError``), a folder that is not a
    zarr store never at all.  With ``overwrite`` an existing ``target`` is moved aside,
    replaced, then deleted.  On any error, Ctrl-C or SIGTERM the temporary is removed
    and ``target`` is left as it was; a full disk raises ``OSError`` (ENOSPC) naming
    ``target``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = write_atomically(p, lambda tmp: tmp.write_text("one"))
    >>> write_atomically(p, lambda tmp: tmp.write_text("two"))
    Traceback (most recent call last):
    ...
    FileExistsError: ...exists; pass overwrite=True to replace it
    >>> _ = write_atomically(p, lambda tmp: tmp.write_text("two"), overwrite=True)
    >>> p.read_text()
    'two'
    """
    target = Path(target)
    _check_replaceable(target, overwrite, store)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    with _clean_up_on_sigterm(target):
        try:
            write(tmp)
            _publish(tmp, target, overwrite, store)
        except BaseException as exc:
            full = _no_space(exc, target.parent)  # before the temporary frees its space
            _remove(tmp)
            if full:
                raise OSError(
                    errno.ENOSPC, "No space left on device (nothing was written)", str(target)
                ) from exc
            raise
    return target


def cast_movie(da: xr.DataArray, dtype: Any) -> xr.DataArray:
    """Lazily cast a (dask-backed) movie as the writers do: integers rounded and clipped, NaN -> 0."""
    if dtype is None or da.dtype == dtype:
        return da
    dtype = np.dtype(dtype)
    if da.chunks is None:
        return da.copy(data=cast_block(da.values, dtype))
    return da.copy(data=da.data.map_blocks(cast_block, dtype, dtype=dtype))


@contextlib.contextmanager
def _dask_progress(desc: str, enabled: bool) -> Iterator[None]:
    """A tqdm bar over the dask tasks computed inside the block."""
    if not enabled:
        yield
        return
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc, unit="task", leave=True):
        yield


def dask_compute(delayed) -> None:
    """Compute a delayed write."""
    delayed.compute()


def _as_dataset(obj: xr.DataArray | xr.Dataset, dtype: Any, attrs: dict | None) -> xr.Dataset:
    if isinstance(obj, xr.Dataset):
        return obj
    ds = cast_movie(obj, dtype).rename(obj.name or CORRECTED).to_dataset()
    ds.attrs = dict(attrs or {})
    for name in ds.variables:
        ds[name].encoding = {}
    return ds


def to_netcdf(
    obj: xr.DataArray | xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: Any = None,
    attrs: dict | None = None,
    progress: bool = False,
    _compute: Callable | None = None,
) -> Path:
    """Write a movie (DataArray, cast to ``dtype``) or a result Dataset to NetCDF-4, atomically.

    Examples
    --------
    >>> import pathlib, tempfile, xarray as xr
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.nc"
    >>> _ = to_netcdf(xr.Dataset({"a": ("t", [1.0, 2.0])}), p)
    >>> xr.open_dataset(p).a.values.tolist()
    [1.0, 2.0]
    """
    target = _target(path, overwrite)
    ds = _as_dataset(obj, dtype, attrs)

    def write(tmp: Path) -> None:
        delayed = ds.to_netcdf(tmp, compute=False, engine="netcdf4")
        with _dask_progress(f"to_netcdf {target.name}", progress):
            (_compute or dask_compute)(delayed)

    return write_atomically(target, write, overwrite=overwrite)


def to_zarr(
    obj: xr.DataArray | xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: Any = None,
    attrs: dict | None = None,
    progress: bool = False,
    _compute: Callable | None = None,
) -> Path:
    """Write a movie (DataArray, cast to ``dtype``) or a Dataset to a zarr (v2) store, atomically."""
    target = _target(path, overwrite, store=True)
    ds = _as_dataset(obj, dtype, attrs)

    def write(tmp: Path) -> None:
        delayed = ds.to_zarr(tmp, mode="w-", compute=False, consolidated=True, zarr_format=2)
        with _dask_progress(f"to_zarr {target.name}", progress):
            (_compute or dask_compute)(delayed)

    return write_atomically(target, write, overwrite=overwrite, store=True)


def to_tiff(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    bigtiff: bool | None = None,
    overwrite: bool = False,
    dtype: Any = None,
    progress: bool = True,
) -> Path:
    """Write a ``(time, y, x)`` movie to a multi-page TIFF, streamed block by block.

    Parameters
    ----------
    da : xarray.DataArray, (time, y, x)
        Movie to write; NumPy or dask-backed (e.g. a lazy ``rigid(...).corrected``).
        Only a few blocks of frames are in memory at any time.
    path : str or path
        Output file.  Written as ``.<name>.<random>.part`` in the same folder and
        renamed when complete; on error nothing is left behind.
    bigtiff : bool, optional
        Write BigTIFF (needed above 4 GB).  Default: only if the data exceed ~4 GB.
    overwrite : bool
        Replace an existing file (default: raise ``FileExistsError``).
    dtype : dtype, optional
        Output dtype: float32 by default; an integer dtype (e.g. ``np.uint16``) rounds
        and clips to its range (NaN -> 0).
    progress : bool
        Show a tqdm progress bar (frames).

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import tifffile, xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=6, shape=(32, 32), max_shift=1)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.tif"
    >>> _ = xnormcorre.to_tiff(movie.chunk({"time": 4}), p, progress=False)
    >>> back = tifffile.imread(p)
    >>> back.shape, back.dtype, bool((back == movie.values.astype(np.float32)).all())
    ((6, 32, 32), dtype('float32'), True)
    """
    movie = as_movie(da, name="da")
    out_dtype = _out_dtype(dtype)
    target = _target(path, overwrite)
    clipped: list[int] = []
    blocks = _blocks(movie, out_dtype, _prefetch(), clipped=clipped)
    out = _write_tiff(movie, target, out_dtype, bigtiff, progress, blocks, overwrite)
    _warn_clipped(clipped, movie.size, out_dtype, target)
    return out


def _write_tiff(
    movie, target: Path, out_dtype, bigtiff, progress: bool, blocks: Iterator[np.ndarray], overwrite: bool
) -> Path:
    n, h, w = movie.shape
    if bigtiff is None:
        bigtiff = n * h * w * out_dtype.itemsize > _BIGTIFF_BYTES
    _check_space(target, n * h * w * out_dtype.itemsize)

    def write(tmp: Path) -> None:
        with tqdm(total=n, unit="frame", desc=f"to_tiff {target.name}", disable=not progress) as bar:

            def pages() -> Iterator[np.ndarray]:
                for block in blocks:
                    yield from block
                    bar.update(block.shape[0])

            with tifffile.TiffWriter(tmp, bigtiff=bool(bigtiff), ome=False) as tw:
                tw.write(
                    pages(),
                    shape=(n, h, w),
                    dtype=out_dtype,
                    photometric="minisblack",
                    metadata={"axes": "TYX"},
                )

    return write_atomically(target, write, overwrite=overwrite)


def to_hdf5(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    dataset: str = "mov",
    overwrite: bool = False,
    dtype: Any = None,
    progress: bool = True,
) -> Path:
    """Write a ``(time, y, x)`` movie to an HDF5 dataset, streamed block by block.

    The dataset is chunked one frame per HDF5 chunk and labels its dimensions
    ``time``, ``y``, ``x`` (HDF5 dimension labels); the file holds only this dataset.

    Parameters
    ----------
    da : xarray.DataArray, (time, y, x)
        Movie to write; NumPy or dask-backed (e.g. a lazy ``rigid(...).corrected``).
    path : str or path
        Output file, written under a temporary name and renamed when complete.
    dataset : str
        Name of the dataset (CaImAn's default ``"mov"``).
    overwrite : bool
        Replace an existing file (default: raise ``FileExistsError``).
    dtype : dtype, optional
        Output dtype: float32 by default; an integer dtype rounds and clips (NaN -> 0).
    progress : bool
        Show a tqdm progress bar (frames).

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=6, shape=(32, 32), max_shift=1)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.h5"
    >>> _ = xnormcorre.to_hdf5(movie, p, dtype=np.uint16, progress=False)
    >>> back = xnormcorre.open_movie(p)
    >>> back.dtype, bool((back == np.clip(np.rint(movie), 0, 65535)).all())
    (dtype('uint16'), True)
    >>> back.close()
    """
    movie = as_movie(da, name="da")
    out_dtype = _out_dtype(dtype)
    if not isinstance(dataset, str) or not dataset.strip("/"):
        raise ValueError(f"dataset must be a non-empty HDF5 dataset name, got {dataset!r}")
    target = _target(path, overwrite)
    clipped: list[int] = []
    blocks = _blocks(movie, out_dtype, _prefetch(), clipped=clipped)
    out = _write_hdf5(movie, target, dataset, out_dtype, progress, blocks, overwrite)
    _warn_clipped(clipped, movie.size, out_dtype, target)
    return out


class _WriteOnce(io.RawIOBase):
    """The file under an HDF5 output (h5py's ``fileobj`` driver): a failed write (a full
    disk) is remembered and every later write skipped, so that HDF5 still closes its file
    cleanly -- a file whose close failed crashes the interpreter when h5py frees it --
    and :meth:`check` then raises the error."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._f = open(path, "w+b", buffering=0)  # noqa: SIM115 (closed in close())
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:
        return self._f.readinto(buffer)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += self._f.write(view[done:])
            except OSError as exc:
                self.error = exc
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        if self.error is not None:
            return self._f.tell() if size is None else size
        return self._f.truncate(size)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()

    def check(self) -> None:
        """Raise the first failed write (ENOSPC: no space left on device)."""
        if self.error is not None:
            exc = self.error
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc


def _write_hdf5(
    movie,
    target: Path,
    dataset: str,
    out_dtype,
    progress: bool,
    blocks: Iterator[np.ndarray],
    overwrite: bool,
) -> Path:
    n, h, w = movie.shape
    _check_space(target, n * h * w * out_dtype.itemsize)

    def fill(f: h5py.File, bar) -> None:
        dset = f.create_dataset(dataset, shape=(n, h, w), dtype=out_dtype, chunks=(1, h, w))
        for dim, label in zip(dset.dims, MOVIE_DIMS, strict=True):
            dim.label = label
        start = 0
        for block in blocks:
            dset[start : start + block.shape[0]] = block
            start += block.shape[0]
            bar.update(block.shape[0])

    def write(tmp: Path) -> None:
        with (
            tqdm(total=n, unit="frame", desc=f"to_hdf5 {target.name}", disable=not progress) as bar,
            _WriteOnce(tmp) as raw,
        ):
            with h5py.File(raw, "w") as f:
                fill(f, bar)
            raw.check()

    return write_atomically(target, write, overwrite=overwrite)


#: Formats of :func:`write_movie`.
MOVIE_FORMATS = ("tiff", "hdf5", "zarr", "netcdf")


def write_movie(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    fmt: str,
    overwrite: bool = False,
    dtype: Any = None,
    dataset: str = "mov",
    attrs: dict | None = None,
    progress: bool = True,
    along: xr.Dataset | None = None,
) -> xr.Dataset | None:
    """Write a movie in ``fmt`` (one of :data:`MOVIE_FORMATS`), atomically, block by block.

    ``along`` holds time-aligned variables that share the movie's dask graph (e.g.
    ``shifts`` and ``correlation`` of a lazy :func:`xnormcorre.rigid` result): they are
    computed in the same pass as the frames -- every shared task (reading, registering,
    warping a chunk) runs once -- and returned, loaded; None without ``along``.
    ``attrs`` are the Dataset attributes of a zarr/NetCDF output.
    """
    if fmt not in MOVIE_FORMATS:
        raise ValueError(f"fmt must be one of {MOVIE_FORMATS}, got {fmt!r}")
    if fmt in ("zarr", "netcdf"):
        writer = to_zarr if fmt == "zarr" else to_netcdf
        if along is None:
            writer(da, path, overwrite=overwrite, dtype=dtype, attrs=attrs, progress=progress)
            return None
        extra: list = []
        ds = _as_dataset(da, dtype, attrs)

        def compute(delayed) -> None:
            import dask

            extra.append(dask.compute(delayed, along)[1])

        writer(ds, path, overwrite=overwrite, progress=progress, _compute=compute)
        return extra[0].load()
    movie = as_movie(da, name="da")
    out_dtype = _out_dtype(dtype)
    target = _target(path, overwrite)
    sink: list = []
    clipped: list[int] = []
    blocks = _blocks(movie, out_dtype, _prefetch(), along, sink if along is not None else None, clipped)
    if fmt == "tiff":
        _write_tiff(movie, target, out_dtype, None, progress, blocks, overwrite)
    else:
        _write_hdf5(movie, target, dataset, out_dtype, progress, blocks, overwrite)
    _warn_clipped(clipped, movie.size, out_dtype, target)
    if along is None:
        return None
    return xr.concat(sink, dim=MOVIE_DIMS[0], data_vars="minimal", coords="minimal", compat="override").load()
