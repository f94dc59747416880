"""Resumable runs: per-chunk results in a zarr store, interrupted and resumed, bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xnormcorre
from xnormcorre.io.store import compute_to_store, load_template, plan_chunks, store_status

CHUNK = 10


class Probe:
    """Identity on each movie chunk that counts computations and can simulate a crash."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.fail_at: int | None = None

    def __call__(self, block, block_info=None):
        i = block_info[0]["chunk-location"][0]
        if i == self.fail_at:
            raise RuntimeError(f"simulated crash in chunk {i}")
        self.counts[i] += 1
        return block


def probed(movie, probe, chunk=CHUNK):
    return movie.copy(data=movie.chunk({"time": chunk}).data.map_blocks(probe, dtype=movie.dtype))


@pytest.fixture(scope="module")
def movie():
    return xnormcorre.datasets.synthetic_movie(n_frames=80, shape=(64, 64), max_shift=2, seed=0, fps=30.0)


@pytest.fixture(scope="module")
def expected(movie):
    """An uninterrupted run, computed in memory."""
    return xnormcorre.rigid(movie.chunk({"time": CHUNK}), max_shifts=3).drop_vars("corrected").compute()


@pytest.fixture()
def interrupted(tmp_path, movie):
    """A store whose run crashed in its third chunk."""
    probe = Probe()
    res = xnormcorre.rigid(probed(movie, probe), max_shifts=3)  # estimates the template
    probe.fail_at = 2
    store = tmp_path / "run.zarr"
    with pytest.raises(RuntimeError, match="simulated crash in chunk 2"):
        compute_to_store(res, store, movie=movie, progress=False)
    return store


def test_interrupted_run_resumes_bit_identical(interrupted, movie, expected):
    status = store_status(interrupted)
    assert (status["chunks_done"], status["n_chunks"], status["frames_done"]) == (2, 8, 2 * CHUNK)
    assert not status["complete"]
    probe = Probe()
    tmpl = load_template(interrupted)  # the stored template: no estimation on resume
    np.testing.assert_array_equal(tmpl.values, expected.template.values)
    res = xnormcorre.rigid(probed(movie, probe), max_shifts=3, template=tmpl)
    probe.counts.clear()  # min_mov reads the first frames
    out = compute_to_store(res, interrupted, resume=True, movie=movie, progress=False)
    assert dict(probe.counts) == {i: 1 for i in range(2, 8)}  # only the missing chunks, once each
    # identical to the uninterrupted run: values, flags, coordinates and attributes (those of the stored run)
    xr.testing.assert_identical(out.drop_vars("corrected"), expected)
    assert out.attrs["template_source"] == "estimated"
    assert store_status(interrupted)["complete"]
    # the store opens as the result, with the done record
    with xr.open_zarr(interrupted) as ds:
        assert ds.chunk_done.values.tolist() == [1] * 8 and int(ds.final_done) == 1
        np.testing.assert_array_equal(ds.shifts.values, expected.shifts.values)
    # a second resume computes nothing
    probe.counts.clear()
    again = compute_to_store(res, interrupted, resume=True, movie=movie, progress=False)
    assert not probe.counts
    xr.testing.assert_identical(again.drop_vars("corrected"), expected)
    # corrected stays lazy, from the result
    assert out.corrected.chunks is not None


def test_resume_with_other_run_is_refused_and_store_untouched(interrupted, movie, tree_digest):
    before = tree_digest(interrupted)
    tmpl = load_template(interrupted)
    chunked = movie.chunk({"time": CHUNK})
    cases = [
        (
            xnormcorre.rigid(chunked, max_shifts=4, template=tmpl),
            {},
            r"max_shifts: stored \[3, 3\], now \[4, 4\]",
        ),
        (xnormcorre.rigid(chunked, max_shifts=3, template=tmpl + 1), {}, "the template differs"),
        (xnormcorre.rigid(movie.chunk({"time": 16}), max_shifts=3, template=tmpl), {}, "time chunks differ"),
        (
            xnormcorre.rigid(chunked, max_shifts=3, template=tmpl),
            {"movie": movie + 1},
            "movie first/last frames",
        ),
    ]
    for res, kw, match in cases:
        with pytest.raises(ValueError, match=match) as err:
            compute_to_store(res, interrupted, resume=True, progress=False, **{"movie": movie, **kw})
        assert "left untouched" in str(err.value)
    assert tree_digest(interrupted) == before
    assert sorted(p.name for p in interrupted.parent.iterdir()) == ["run.zarr"]


def test_existing_store_needs_resume_or_overwrite(tmp_path, movie, expected, tree_digest):
    res = xnormcorre.rigid(movie.chunk({"time": 40}), max_shifts=3, template=expected.template)
    store = tmp_path / "s.zarr"
    compute_to_store(res, store, progress=False)
    before = tree_digest(store)
    with pytest.raises(FileExistsError, match="resume=True"):
        compute_to_store(res, store, progress=False)
    assert tree_digest(store) == before
    out = compute_to_store(res, store, overwrite=True, progress=False)
    np.testing.assert_array_equal(out.shifts.values, expected.shifts.values)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a zarr store"):
        compute_to_store(res, folder, overwrite=True, progress=False)
    assert (folder / "a.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="not a zarr store"):
        compute_to_store(res, folder, resume=True, progress=False)
    with pytest.raises(ValueError, match="not both"):
        compute_to_store(res, store, resume=True, overwrite=True, progress=False)
    # resume=True without a store starts one
    fresh = compute_to_store(res, tmp_path / "new.zarr", resume=True, progress=False)
    np.testing.assert_array_equal(fresh.correlation.values, expected.correlation.values)


def test_eager_result_is_saved_in_one_piece(tmp_path, movie, expected):
    res = xnormcorre.rigid(movie, max_shifts=3, template=expected.template)
    plan = plan_chunks(res)
    assert plan.units == (80,) and plan.local == [] and "shifts" in plan.eager
    out = compute_to_store(res, tmp_path / "e.zarr", progress=False)
    xr.testing.assert_identical(out.drop_vars("corrected"), res.drop_vars("corrected"))
    np.testing.assert_array_equal(out.shifts.values, expected.shifts.values)
    assert store_status(tmp_path / "e.zarr")["complete"]


@pytest.mark.slow
def test_pwrigid_store_bit_identical(tmp_path, movie):
    kw = {"max_shifts": 3, "strides": (24, 24), "overlaps": (12, 12), "max_deviation_rigid": 2}
    res = xnormcorre.pwrigid(movie.chunk({"time": 20}), **kw)
    plan = plan_chunks(res)
    assert set(plan.local) == {
        "correlation",
        "shifts",
        "rigid_shifts",
        "at_max_shift",
        "patch_at_max_deviation",
    }
    assert plan.final == ["low_correlation", "patch_jump"]
    out = compute_to_store(res, tmp_path / "pw.zarr", progress=False)
    xr.testing.assert_identical(out.drop_vars("corrected"), res.drop_vars("corrected").compute())


CHILD = """
import time, sys
import xnormcorre
from xnormcorre.io.store import compute_to_store

def slow(block):
    time.sleep(0.4)
    return block

movie = xnormcorre.datasets.synthetic_movie(n_frames=80, shape=(64, 64), max_shift=2, seed=0, fps=30.0)
lazy = movie.copy(data=movie.chunk({"time": 4}).data.map_blocks(slow, dtype=movie.dtype))
res = xnormcorre.rigid(lazy, max_shifts=3)
compute_to_store(res, sys.argv[1], movie=movie, progress=False)
"""


@pytest.mark.slow
def test_sigkilled_process_resumes_bit_identical(tmp_path, movie, kill_when):
    store = tmp_path / "killed.zarr"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {**os.environ, "PYTHONPATH": str(Path(xnormcorre.__file__).parents[1])}
    child = subprocess.Popen([sys.executable, str(script), str(store)], env=env, stderr=subprocess.PIPE)
    kill_when(
        child, lambda: store.exists() and store_status(store)["chunks_done"] >= 3, "write 3 chunks", 300
    )
    status = store_status(store)
    assert 3 <= status["chunks_done"] < status["n_chunks"] == 20
    chunked = movie.chunk({"time": 4})
    res = xnormcorre.rigid(chunked, max_shifts=3, template=load_template(store))
    out = compute_to_store(res, store, resume=True, movie=movie, progress=False)
    expected = xnormcorre.rigid(chunked, max_shifts=3).drop_vars("corrected").compute()
    xr.testing.assert_identical(out.drop_vars("corrected"), expected)
