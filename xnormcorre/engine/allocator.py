"""Reusing freed memory between kernel calls (glibc's allocator; never imports xarray).

Each kernel call allocates its temporary buffers (tens of MiB at 512 x 512) and frees them
when it returns.  glibc hands blocks above its mmap threshold (at most 32 MiB, by default)
straight back to the system, and trims the top of its heaps beyond twice that, so the next
call faults the same memory in again: a piecewise-rigid run of 1000 frames of 512 x 512
faulted in about 9 GB this way (2.3 million page faults; 6 of its 34 CPU-seconds were spent
in the kernel).  While passes of kernels run, xnormcorre raises glibc's mmap threshold to
:data:`MMAP_THRESHOLD` and its trim threshold to :data:`TRIM_THRESHOLD`: freed blocks stay
in the process and the next call reuses them (26 page faults in that run, 13 % less wall
time).  The peak memory does not change.  Once no pass has run for :data:`IDLE_SECONDS`,
the thresholds go back to the values glibc's own adjustment settles at (32 MiB and 64 MiB)
and ``malloc_trim(0)`` returns the free memory to the system.

Opt-out: ``XNORMCORRE_MALLOC=0`` (or ``off``, ``false``, ``no``).  Nothing is changed where
the user tunes glibc's allocator (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_`` or ``glibc.malloc`` in ``GLIBC_TUNABLES``) or where
the C library is not glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

from .compile_cache import OFF_VALUES

__all__ = ["ENV_VAR", "IDLE_SECONDS", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "pass_ended", "pass_started"]

#: Environment variable: ``0`` (``off``, ``false``, ``no``) leaves glibc's allocator alone.
ENV_VAR = "XNORMCORRE_MALLOC"
#: glibc's mmap threshold while kernels run (bytes): blocks below it come from the heaps.
MMAP_THRESHOLD = 1 << 30
#: glibc's trim threshold while kernels run (bytes; ``mallopt`` takes an ``int``).
TRIM_THRESHOLD = (1 << 31) - 1
#: Seconds without a pass after which the free memory is returned to the system.
IDLE_SECONDS = 1.0
# what glibc's dynamic thresholds settle at on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
_SETTLED = (32 << 20, 64 << 20)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_LOCK = threading.Lock()
_STATE = {"active": 0, "raised": False, "generation": 0}
_LIBC: list = []  # [ctypes library or None], looked up once


def _glibc():
    """The process's glibc (None elsewhere, or where the user tunes it or opted out)."""
    if _LIBC:
        return _LIBC[0]
    lib = None
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    user = any(v in os.environ for v in _USER_VARS) or "glibc.malloc" in tunables
    off = os.environ.get(ENV_VAR, "").strip().lower() in OFF_VALUES
    if sys.platform.startswith("linux") and not user and not off:
        try:
            libc = ctypes.CDLL(None)
            libc.gnu_get_libc_version.restype = ctypes.c_char_p
            libc.gnu_get_libc_version()
            libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            libc.malloc_trim.argtypes = (ctypes.c_size_t,)
            lib = libc
        except (OSError, AttributeError):  # not glibc (musl has no gnu_get_libc_version)
            lib = None
    _LIBC.append(lib)
    return lib


def _set(mmap_threshold: int, trim_threshold: int) -> bool:
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def pass_started() -> bool:
    """A pass of kernels begins: keep freed memory for reuse (see the module docstring).

    Returns whether glibc's thresholds are raised (False where nothing is changed).
    """
    with _LOCK:
        _STATE["active"] += 1
        _STATE["generation"] += 1
        if not _STATE["raised"]:
            _STATE["raised"] = _set(MMAP_THRESHOLD, TRIM_THRESHOLD)
        return _STATE["raised"]


def pass_ended() -> None:
    """A pass of kernels ends: after :data:`IDLE_SECONDS` without another, return the
    free memory to the system."""
    with _LOCK:
        _STATE["active"] = max(0, _STATE["active"] - 1)
        if not _STATE["raised"] or _STATE["active"]:
            return
        generation = _STATE["generation"]
    timer = threading.Timer(IDLE_SECONDS, _release_if_idle, args=(generation,))
    timer.daemon = True
    timer.start()


def _release_if_idle(generation: int) -> bool:
    """Back to glibc's settled thresholds and ``malloc_trim(0)``, unless a pass ran since."""
    with _LOCK:
        if _STATE["active"] or _STATE["generation"] != generation or not _STATE["raised"]:
            return False
        _set(*_SETTLED)
        _glibc().malloc_trim(0)
        _STATE["raised"] = False
        return True
