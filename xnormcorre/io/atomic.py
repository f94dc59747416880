"""The one atomic writer (:func:`write_atomically`) and the checks of an output location.

Every output -- a file or a zarr store folder -- is written under a temporary name in the
target folder and moved to its name only when complete, re-checking the name then: an
error, Ctrl-C or SIGTERM mid-way leaves no file at the target and no temporary; a full
disk is one ``OSError`` (ENOSPC) naming the target; nothing is replaced without
``overwrite``, and a folder that is not a zarr store is never replaced at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Terminated", "check_space", "check_target", "is_store", "write_atomically"]


def check_target(path: str | os.PathLike, overwrite: bool, store: bool = False) -> Path:
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


def check_space(target: Path, nbytes: int) -> None:
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


class Terminated(BaseException):
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
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated as exc:
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
    target: Path,
    write: Callable[[Path], Any],
    *,
    overwrite: bool = False,
    store: bool = False,
    partial: Path | None = None,
) -> Path:
    """``write(tmp)`` to a temporary name beside ``target``, then move it to ``target``.

    Works for files and folders (zarr stores, ``store=True``).  ``target`` is checked
    again when the output is complete: a file that appeared there during the write is
    never replaced without ``overwrite`` (``FileExistsError``), a folder that is not a
    zarr store never at all.  With ``overwrite`` an existing ``target`` is moved aside,
    replaced, then deleted.  On any error, Ctrl-C or SIGTERM the temporary is removed
    and ``target`` is left as it was; a full disk raises ``OSError`` (ENOSPC) naming
    ``target``.

    ``partial`` (a resumable write, :mod:`xnormcorre.io.resumable`) is the temporary name
    to use instead of a random one -- ``write`` may find it already there, partly written
    -- and it is *kept*, not removed, when the write does not complete (error, Ctrl-C,
    SIGTERM), so that the write can be continued.

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
    tmp = partial if partial is not None else target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
    with _clean_up_on_sigterm(target):
        try:
            write(tmp)
            _publish(tmp, target, overwrite, store)
        except BaseException as exc:
            full = _no_space(exc, target.parent)  # before the temporary frees its space
            if partial is not None:
                if full:
                    raise OSError(
                        errno.ENOSPC,
                        f"No space left on device (the partial output {tmp.name!r} is kept: free some "
                        "space and write again with resume=True to continue)",
                        str(target),
                    ) from exc
                raise
            _remove(tmp)
            if full:
                raise OSError(
                    errno.ENOSPC, "No space left on device (nothing was written)", str(target)
                ) from exc
            raise
    return target
