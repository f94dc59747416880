"""The persistent compilation cache (xnormcorre.engine.compile_cache).

``enable`` changes JAX's process-wide configuration, so every scenario that enables
the cache runs in its own subprocess with a controlled environment (each costs a JAX
import, ~1 s: the less central scenarios are marked slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import xnormcorre
from xnormcorre.engine import compile_cache

ROOT = Path(xnormcorre.__file__).resolve().parents[1]

# A tiny jitted program, compiled once; prints what the test checks as one JSON line.
PROGRAM = """
import json, warnings
import jax, jax.numpy as jnp
from jax import monitoring
hits = []
monitoring.register_event_listener(lambda ev, **kw: hits.append(ev) if ev.endswith("cache_hits") else None)
import importlib.util
spec = importlib.util.spec_from_file_location("compile_cache", {module!r})  # not the whole package
compile_cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compile_cache)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
{before}
    result = compile_cache.enable({path})
    again = compile_cache.enable()
    value = float(jax.jit(lambda x: jnp.sin(x) * 3.0 + x.sum())(jnp.arange(5.0))[1])
print(json.dumps({{
    "result": None if result is None else str(result),
    "again": None if again is None else str(again),
    "dir": jax.config.jax_compilation_cache_dir,
    "min_secs": jax.config.jax_persistent_cache_min_compile_time_secs,
    "min_bytes": jax.config.jax_persistent_cache_min_entry_size_bytes,
    "max_size": jax.config.jax_compilation_cache_max_size,
    "hits": len(hits),
    "value": value,
    "warnings": [str(w.message) for w in caught],
}}))
"""
EXPECTED = 3.0 * 0.8414709848078965 + 10.0  # sin(1) * 3 + sum(0..4)


def _run(tmp_path: Path, env: dict[str, str], path: str | None = None, before: str = "") -> dict:
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XNORMCORRE_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")
    }
    full.update(
        {
            "HOME": str(tmp_path / "home"),  # nothing may land in the real home
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "JAX_PLATFORMS": "cpu",
        }
    )
    full.update(env)
    code = PROGRAM.format(
        module=compile_cache.__file__,
        path=repr(path),
        before=textwrap.indent(textwrap.dedent(before) or "pass", "    "),
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _entries(path: Path) -> list[Path]:
    return sorted(path.glob("*-cache")) if path.exists() else []


def test_enable_writes_entries_and_a_second_process_hits_them(tmp_path):
    cache = tmp_path / "cache"
    first = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": str(cache)})
    assert first["result"] == str(cache.resolve()) == first["again"] == first["dir"]
    assert first["min_secs"] == 0.0 and first["min_bytes"] == -1
    # a bounded cache: JAX then locks each entry's read and write against other processes
    assert first["max_size"] == compile_cache.MAX_BYTES
    assert (cache / ".lockfile").exists()
    assert first["value"] == pytest.approx(EXPECTED, rel=1e-6)
    assert first["hits"] == 0
    written = _entries(cache)
    assert len(written) >= 1  # the jitted program (a 5-element program compiles in ms)

    second = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": str(cache)})
    assert second["hits"] >= 1  # loaded, not compiled
    assert second["value"] == pytest.approx(EXPECTED, rel=1e-6)
    assert _entries(cache) == written


@pytest.mark.slow
def test_enable_after_an_earlier_compile_still_caches(tmp_path):
    # the engine enables the cache lazily, possibly after the user compiled other programs
    cache = tmp_path / "cache"
    before = "jax.jit(lambda x: x * 2.0)(jnp.ones(3)).block_until_ready()"
    out = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": str(cache)}, before=before)
    assert out["result"] == str(cache.resolve())
    assert len(_entries(cache)) >= 1


@pytest.mark.slow
def test_default_location_respects_xdg_cache_home(tmp_path):
    xdg = tmp_path / "xdg"
    out = _run(tmp_path, {"XDG_CACHE_HOME": str(xdg)})
    expected = xdg / "xnormcorre" / "jax"
    assert out["result"] == str(expected.resolve())
    assert len(_entries(expected)) >= 1


@pytest.mark.slow
def test_default_location_is_under_home_cache(tmp_path):
    out = _run(tmp_path, {})
    expected = tmp_path / "home" / ".cache" / "xnormcorre" / "jax"
    assert out["result"] == str(expected.resolve())
    assert len(_entries(expected)) >= 1


@pytest.mark.parametrize("value", ["0", pytest.param("OFF", marks=pytest.mark.slow)])
def test_opt_out_leaves_jax_untouched(tmp_path, value):
    xdg = tmp_path / "xdg"
    out = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": value, "XDG_CACHE_HOME": str(xdg)})
    assert out["result"] is None and out["again"] is None
    assert out["dir"] is None
    assert out["min_secs"] == 1.0 and out["min_bytes"] == 0 and out["max_size"] == -1  # JAX's defaults
    assert not xdg.exists() and not (tmp_path / "home").exists()
    assert out["value"] == pytest.approx(EXPECTED, rel=1e-6)


@pytest.mark.slow
def test_explicit_path_overrides_the_opt_out(tmp_path):
    cache = tmp_path / "explicit"
    out = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": "off"}, path=str(cache))
    assert out["result"] == str(cache.resolve())
    assert len(_entries(cache)) >= 1


def test_a_cache_dir_configured_in_jax_is_kept(tmp_path):
    user = tmp_path / "user"
    ours = tmp_path / "ours"
    out = _run(tmp_path, {"JAX_COMPILATION_CACHE_DIR": str(user), "XNORMCORRE_JAX_CACHE": str(ours)})
    assert out["result"] == str(user) == out["dir"]
    assert out["min_secs"] == 1.0 and out["min_bytes"] == 0  # thresholds untouched too
    assert not ours.exists()


@pytest.mark.slow
def test_jax_cache_switched_off_by_the_user_is_respected(tmp_path):
    cache = tmp_path / "cache"
    before = 'jax.config.update("jax_enable_compilation_cache", False)'
    out = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": str(cache)}, before=before)
    assert out["result"] is None and out["dir"] is None
    assert not cache.exists()


@pytest.mark.slow
def test_second_call_with_another_path_warns_and_keeps_the_first(tmp_path):
    first, other = tmp_path / "first", tmp_path / "other"
    before = f"compile_cache.enable({str(first)!r})"
    out = _run(tmp_path, {}, path=str(other), before=before)
    assert out["result"] == str(first.resolve()) == out["dir"]
    assert not other.exists()
    assert any("is ignored" in w and str(other) in w for w in out["warnings"])


@pytest.mark.slow
def test_truncated_entry_is_recompiled_not_loaded(tmp_path):
    # JAX writes entries in place (no atomic rename): a reader can see a partly written
    # entry.  It must fail JAX's decompression check and be recompiled, never run.
    cache = tmp_path / "cache"
    _run(tmp_path, {"XNORMCORRE_JAX_CACHE": str(cache)})
    entries = _entries(cache)
    assert entries
    for e in entries:
        data = e.read_bytes()
        e.write_bytes(data[: len(data) // 2])
    out = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": str(cache)})
    assert out["value"] == pytest.approx(EXPECTED, rel=1e-6)
    assert out["hits"] == 0
    assert any("Error reading persistent compilation cache entry" in w for w in out["warnings"])


@pytest.mark.slow
def test_unwritable_directory_warns_and_disables(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": str(blocker / "cache")})
    assert out["result"] is None and out["dir"] is None
    assert out["min_secs"] == 1.0 and out["min_bytes"] == 0
    assert any(
        "compilation cache is off because" in w and "XNORMCORRE_JAX_CACHE" in w for w in out["warnings"]
    )


@pytest.mark.parametrize("value", ["0", "off", "Off", "false", "no", " none "])
def test_opt_out_values(monkeypatch, value):
    monkeypatch.setenv("XNORMCORRE_JAX_CACHE", value)
    assert compile_cache._requested_dir() is None


def test_requested_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XNORMCORRE_JAX_CACHE", str(tmp_path / "x"))
    assert compile_cache._requested_dir() == tmp_path / "x"
    monkeypatch.setenv("XNORMCORRE_JAX_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache._requested_dir() == tmp_path / "xnormcorre" / "jax"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_cache_dir() == tmp_path / "xnormcorre" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    assert compile_cache.default_cache_dir() == Path.home() / ".cache" / "xnormcorre" / "jax"


@pytest.mark.slow
def test_a_size_the_user_set_is_kept(tmp_path):
    cache = tmp_path / "cache"
    before = 'jax.config.update("jax_compilation_cache_max_size", 123_456_789)'
    out = _run(tmp_path, {"XNORMCORRE_JAX_CACHE": str(cache)}, before=before)
    assert out["max_size"] == 123_456_789
    assert len(_entries(cache)) >= 1


# -- memory maps: compiled programs dropped near the process's cap --------------------


@pytest.fixture
def map_counter(monkeypatch):
    """``release_if_crowded`` with a controlled map count and a recorded clear_caches."""
    import jax

    state = {"count": (1000, 65530), "cleared": 0}
    monkeypatch.setattr(compile_cache, "_map_count_and_cap", lambda: state["count"])
    monkeypatch.setattr(jax, "clear_caches", lambda: state.__setitem__("cleared", state["cleared"] + 1))
    monkeypatch.setattr(compile_cache, "_MAP_LAST", [-float("inf")])
    return state


def test_programs_are_kept_below_half_the_map_cap(map_counter):
    map_counter["count"] = (32_000, 65_530)
    assert compile_cache.release_if_crowded() is False
    assert map_counter["cleared"] == 0


def test_programs_are_dropped_beyond_half_the_map_cap(map_counter):
    map_counter["count"] = (40_000, 65_530)
    assert compile_cache.release_if_crowded() is True
    assert map_counter["cleared"] == 1
    # counted at most once a second: an immediate second call does nothing
    assert compile_cache.release_if_crowded() is False
    assert map_counter["cleared"] == 1


def test_unknown_map_count_does_nothing(map_counter):
    map_counter["count"] = None
    assert compile_cache.release_if_crowded() is False
    assert map_counter["cleared"] == 0


def test_map_count_is_read_on_linux():
    counted = compile_cache._map_count_and_cap()
    if not Path("/proc/self/maps").exists():
        assert counted is None
    else:
        n, cap = counted
        assert 0 < n < cap


def test_every_pass_of_kernels_checks_the_map_count(monkeypatch):
    from xnormcorre.engine import runner

    calls = []
    monkeypatch.setattr(compile_cache, "release_if_crowded", lambda: calls.append(1) or False)
    assert list(runner.ordered_map(lambda x: x * 2, range(5))) == [0, 2, 4, 6, 8]
    assert calls == [1]
    assert list(runner.ordered_map(lambda x: x, [])) == []  # no pass, no count
    assert calls == [1]
