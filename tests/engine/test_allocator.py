"""Freed memory is kept for the next kernel call while passes run, and returned after."""

from __future__ import annotations

import ctypes
import resource
import sys
import time

import pytest

from xnormcorre.engine import allocator, runner

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (Linux)")

BLOCK = 48 << 20  # above glibc's largest default mmap threshold (32 MiB): always faulted in anew


def _touch(_: int) -> int:
    """Allocate, write and free a block with C's malloc, as XLA does a kernel's buffers
    (NumPy asks for huge pages: far fewer faults to count)."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    ptr = libc.malloc(BLOCK)
    ctypes.memset(ptr, 1, BLOCK)
    libc.free(ptr)
    return BLOCK // 4096


def _faults_of_a_pass(n: int) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    assert list(runner.ordered_map(_touch, range(n))) == [BLOCK // 4096] * n
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.fixture
def fresh(monkeypatch):
    allocator._release_if_idle(allocator._STATE["generation"])  # an earlier test's pass
    monkeypatch.setenv("XNORMCORRE_KERNEL_THREADS", "1")
    monkeypatch.setattr(allocator, "_LIBC", [])
    monkeypatch.setattr(allocator, "IDLE_SECONDS", 0.05)
    for var in (*allocator._USER_VARS, "GLIBC_TUNABLES", allocator.ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    yield
    time.sleep(0.2)  # let the idle release run before the next test


def test_a_pass_reuses_freed_blocks_and_returns_them_when_idle(fresh):
    if allocator._glibc() is None:
        pytest.skip("not glibc")
    pages = BLOCK // 4096
    assert _faults_of_a_pass(12) < 3 * pages  # the first block only (12 without reuse)
    time.sleep(0.3)
    assert allocator._STATE["active"] == 0 and allocator._STATE["raised"] is False


def test_opt_out_and_user_tuning_leave_glibc_alone(fresh, monkeypatch):
    monkeypatch.setenv(allocator.ENV_VAR, "0")
    assert allocator.pass_started() is False and allocator._glibc() is None
    allocator.pass_ended()
    assert allocator._STATE["raised"] is False
    monkeypatch.delenv(allocator.ENV_VAR)
    monkeypatch.setattr(allocator, "_LIBC", [])
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert allocator.pass_started() is False and allocator._glibc() is None
    allocator.pass_ended()
