"""Whole compiled kernels kept on disk (``compile_cache.kernel_jit``, ``program_dir``).

A process that finds a kernel's program on disk loads it without tracing the kernel.
Each scenario runs in its own subprocess (a fresh JAX, a controlled cache directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import xnormcorre
from xnormcorre.engine import compile_cache

ROOT = Path(xnormcorre.__file__).resolve().parents[1]

PROGRAM = """
import json, os, sys
import numpy as np
import jax, jax.numpy as jnp
if os.environ.get("HIDE_JAXLIB_LAPACK"):  # a jaxlib without the set-up xnormcorre calls
    import jaxlib
    jaxlib.lapack = None
from jax import monitoring
from xnormcorre.engine import compile_cache

events = {"trace": 0, "hits": 0}
def on_duration(ev, d, **kw):
    if ev == "/jax/core/compile/jaxpr_trace_duration":
        events["trace"] += 1
monitoring.register_event_duration_secs_listener(on_duration)
monitoring.register_event_listener(
    lambda ev, **kw: events.__setitem__("hits", events["hits"] + 1) if ev.endswith("cache_hits") else None
)

def kernel(x, w, *, k):
    spec = jnp.fft.rfft2(x * w)
    # a linear solve: on CPU it calls LAPACK, which a process that loads the program
    # without lowering anything must still have set up (else the call crashes)
    gram = jnp.einsum("tij,tik->jk", x, x) + k * jnp.eye(x.shape[-1])
    return jnp.fft.irfft2(spec * spec.conj() * k, x.shape[-2:]), (x * w).sum() + jnp.linalg.solve(gram, w).sum()

jitted = compile_cache.kernel_jit(kernel, static_argnames=("k",))
plain = jax.jit(kernel, static_argnames=("k",), compiler_options=compile_cache.COMPILER_OPTIONS)
x = np.random.default_rng(0).standard_normal((3, 16, 16)).astype(np.float32)
w = np.linspace(0.5, 1.5, 16, dtype=np.float32)
k = int(sys.argv[1])
out = jitted(x, w, k=k)
ref = plain(x, w, k=k)
folder = compile_cache.program_dir()
print(json.dumps({
    "folder": None if folder is None else str(folder),
    "files": sorted(p.name for p in folder.glob("*.program")) if folder and folder.exists() else [],
    "trace": events["trace"],
    "hits": events["hits"],
    "bits": np.asarray(out[0]).tobytes().hex() + np.asarray(out[1]).tobytes().hex(),
    "same_as_jit": bool(
        np.array_equal(np.asarray(out[0]), np.asarray(ref[0])) and float(out[1]) == float(ref[1])
    ),
}))
"""


def _run(tmp_path: Path, cache: str, k: int = 2, *, hide_lapack: bool = False) -> dict:
    env = {k_: v for k_, v in os.environ.items() if k_ not in ("JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(
        {
            "HOME": str(tmp_path / "home"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "JAX_PLATFORMS": "cpu",
            "XNORMCORRE_JAX_CACHE": cache,
        }
    )
    if hide_lapack:
        env["HIDE_JAXLIB_LAPACK"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(k)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_program_without_tracing(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path, str(cache))
    assert first["folder"] == str(cache.resolve() / compile_cache.PROGRAMS_FOLDER)
    assert len(first["files"]) == 1 and first["files"][0].startswith("kernel-")
    assert first["trace"] >= 1 and first["same_as_jit"]

    second = _run(tmp_path, str(cache))
    # the kernel is not traced again (the plain jax.jit reference still is: one trace)
    assert second["trace"] == 1
    assert second["files"] == first["files"]
    assert second["bits"] == first["bits"] and second["same_as_jit"]

    other = _run(tmp_path, str(cache), k=3)  # another static argument: another program
    assert len(other["files"]) == 2 and other["bits"] != first["bits"]


@pytest.mark.parametrize("hide_lapack", [False, True], ids=["jaxlib-set-up", "lowered-solve"])
def test_a_loaded_program_that_calls_lapack_runs(tmp_path, hide_lapack):
    # the kernel's solve calls LAPACK on CPU; the loading process lowers nothing before
    # it, so its LAPACK set-up is xnormcorre's (jaxlib's own call, or a lowered solve)
    cache = str(tmp_path / "cache")
    first = _run(tmp_path, cache)
    second = _run(tmp_path, cache, hide_lapack=hide_lapack)
    # loaded, not traced: the one trace is the jax.jit reference's (and the solve lowered
    # for LAPACK's set-up where jaxlib's own is hidden)
    assert second["trace"] == (2 if hide_lapack else 1)
    assert second["bits"] == first["bits"] and second["same_as_jit"]


def test_a_damaged_program_is_compiled_again_and_rewritten(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path, str(cache))
    (entry,) = (cache / compile_cache.PROGRAMS_FOLDER).glob("*.program")
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])
    again = _run(tmp_path, str(cache))
    assert again["bits"] == first["bits"] and again["same_as_jit"]
    assert again["trace"] >= 2  # compiled, not loaded
    assert again["files"] == first["files"]  # written again, whole:
    third = _run(tmp_path, str(cache))
    assert third["trace"] == 1 and third["bits"] == first["bits"]


def test_a_program_from_jax_s_own_cache_is_compiled_afresh_to_be_written(tmp_path):
    # XLA's CPU backend cannot serialize an executable it loaded from JAX's persistent
    # cache again whole (running the copy fails with "Function ... not found"): when JAX
    # has the program in its cache but its file is gone, the kernel is compiled afresh
    # (under a name JAX has not seen) and that program is written.
    cache = tmp_path / "cache"
    first = _run(tmp_path, str(cache))
    folder = cache / compile_cache.PROGRAMS_FOLDER
    for p in folder.glob("*.program"):
        p.unlink()
    second = _run(tmp_path, str(cache))
    assert second["hits"] >= 1 and second["files"] == first["files"]
    assert second["bits"] == first["bits"] and second["same_as_jit"]
    third = _run(tmp_path, str(cache))  # the program written runs, without tracing
    assert third["trace"] == 1 and third["bits"] == first["bits"] and third["same_as_jit"]


def test_opt_out_keeps_no_programs(tmp_path):
    out = _run(tmp_path, "0")
    assert out["folder"] is None and out["files"] == []
    assert out["same_as_jit"]
    assert not (tmp_path / "home" / ".cache" / "xnormcorre").exists()


# ------------------------------------------------------------------ in this process
def test_a_loaded_program_that_fails_to_run_is_dropped_with_its_file(tmp_path, monkeypatch):
    @compile_cache.kernel_jit(static_argnames=("k",))
    def triple(x, *, k):
        return x * k

    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(triple(x, k=3), 3 * x)
    key = next(key for key in compile_cache._PROGRAMS if key[0].endswith("triple"))
    bad = tmp_path / "triple.program"
    bad.write_bytes(b"stale")

    def broken(*args, **kw):
        raise jax.errors.JaxRuntimeError("INTERNAL: Function fusion not found")

    monkeypatch.setitem(compile_cache._PROGRAMS, key, (broken, bad))
    np.testing.assert_array_equal(triple(x, k=3), 3 * x)  # jax.jit serves it instead
    assert not bad.exists()
    assert compile_cache._PROGRAMS[key] == (None, None)
    np.testing.assert_array_equal(triple(x, k=3), 3 * x)


def test_an_error_of_a_program_compiled_here_is_raised(monkeypatch):
    @compile_cache.kernel_jit
    def add_one(x):
        return x + 1

    x = np.zeros(3, np.float32)
    add_one(x)
    key = next(key for key in compile_cache._PROGRAMS if key[0].endswith("add_one"))

    def failing(*args, **kw):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: out of memory")

    monkeypatch.setitem(compile_cache._PROGRAMS, key, (failing, None))
    with pytest.raises(jax.errors.JaxRuntimeError, match="out of memory"):
        add_one(x)


def test_inputs_of_another_shape_or_dtype_get_another_program():
    @compile_cache.kernel_jit
    def halve(x):
        return x / 2

    halve(np.ones(3, np.float32))
    halve(np.ones(3, np.float32))
    assert halve._cache_size() == 1
    halve(np.ones(4, np.float32))
    halve(np.ones(4, np.int32))
    assert halve._cache_size() == 3
    halve.clear_cache()
    assert halve._cache_size() == 0


def test_a_static_argument_without_a_stable_text_is_not_written():
    assert compile_cache._disk_key("m.k", (("f", object()),), None, ()) is None
    key = compile_cache._disk_key("m.k", (("n", 3),), None, ((3,), "<f4", False))
    assert key is not None and key.startswith("k-") and key.endswith(".program")
    assert key != compile_cache._disk_key("m.k", (("n", 4),), None, ((3,), "<f4", False))


def test_another_processor_gets_another_program(monkeypatch):
    # a cache shared by machines with different instruction sets keeps one program each
    args = ("m.k", (("n", 3),), None, ((3,), "<f4", False))
    here = compile_cache._disk_key(*args)
    assert compile_cache._host_isa() == compile_cache._host_isa()
    monkeypatch.setattr(compile_cache, "_HOST_ISA", ["another-processor"])
    assert compile_cache._disk_key(*args) != here
