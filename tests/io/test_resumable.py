"""Resumable writes ``to_tiff(..., resume=True)`` / ``to_hdf5(..., resume=True)``.

An interrupted write is made by a movie whose dask chunk reads fail (or raise
KeyboardInterrupt) from some chunk on; the write is then continued with the same movie
and compared with an uninterrupted write: the same bytes (TIFF), the same dataset
values, dtype, chunks and attributes (HDF5).
"""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.io import blocks
from xnormcorre.io.resumable import partial_paths
from xnormcorre.io.writers import write_movie

T, CHUNK = 50, 10
WRITERS = {"tiff": xnormcorre.to_tiff, "hdf5": xnormcorre.to_hdf5}


class Crash(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def ten_frame_blocks(monkeypatch):
    monkeypatch.setattr(blocks, "default_time_chunk", lambda shape, preferred=1: CHUNK)


def _movie(offset: float = 0.0) -> xr.DataArray:
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(T, 24, 20)) * 300 + 3000 + offset).astype(np.float32)
    return xr.DataArray(arr, dims=("time", "y", "x"), name="movie", attrs={"long_name": "x", "units": "1"})


def _failing(movie: xr.DataArray, after: int, exc: type[BaseException] = Crash, seen: list | None = None):
    """``movie`` in chunks of CHUNK frames; reading chunk ``after`` or later raises ``exc``;
    the chunk indices read go to ``seen``."""

    def read(block, block_info=None):
        if block_info is None:  # dask's meta probe
            return block
        i = block_info[0]["chunk-location"][0]
        if seen is not None:
            seen.append(i)
        if i >= after:
            raise exc("the job died")
        return block

    chunked = movie.chunk({"time": CHUNK})
    return chunked.copy(data=chunked.data.map_blocks(read, dtype=movie.dtype))


def _digest(*paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _assert_same_hdf5(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert list(fa) == list(fb) == ["mov"]
        da, db = fa["mov"], fb["mov"]
        assert (da.shape, da.dtype, da.chunks) == (db.shape, db.dtype, db.chunks)
        assert da[...].tobytes() == db[...].tobytes()
        assert sorted(da.attrs) == sorted(db.attrs) == ["DIMENSION_LABELS"]
        assert list(da.attrs["DIMENSION_LABELS"]) == list(db.attrs["DIMENSION_LABELS"]) == ["time", "y", "x"]


def _assert_same_output(fmt, out, plain):
    """The resumed output ``out`` is the uninterrupted ``plain``: the same bytes (TIFF), files
    (zarr) or dataset (HDF5: the same values, dtype, chunks and attributes)."""
    if fmt == "tiff":
        assert out.read_bytes() == plain.read_bytes()
    elif fmt == "zarr":
        assert _tree(out) == _tree(plain)
    else:
        _assert_same_hdf5(out, plain)


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_interrupted_write_resumes_to_the_same_file(tmp_path, fmt, dtype):
    write = WRITERS[fmt]
    movie = _movie()
    plain = write(movie.chunk({"time": CHUNK}), tmp_path / f"plain.{fmt}", dtype=dtype, progress=False)
    out = tmp_path / f"out.{fmt}"
    part, record = partial_paths(out)
    with pytest.raises(Crash):
        write(_failing(movie, after=3), out, dtype=dtype, progress=False, resume=True)
    assert not out.exists() and part.is_file() and record.is_file()  # kept for resuming
    assert json.loads(record.read_text())["frames_done"] == 30

    seen: list[int] = []
    resumed = write(_failing(movie, after=99, seen=seen), out, dtype=dtype, progress=False, resume=True)
    assert resumed == out
    # frames 0 and 29 are read again to check the partial file; chunk 1 (frames 10-19) never
    assert 1 not in seen and {3, 4} <= set(seen) and set(seen) <= {0, 2, 3, 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"out.{fmt}", f"plain.{fmt}"])
    _assert_same_output(fmt, out, plain)


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
def test_resume_with_other_chunks_and_ctrl_c(tmp_path, fmt):
    """Ctrl-C keeps the partial file with resume=True; the write continues with other time chunks."""
    write = WRITERS[fmt]
    movie = _movie()
    out = tmp_path / f"out.{fmt}"
    with pytest.raises(KeyboardInterrupt):
        write(_failing(movie, after=2, exc=KeyboardInterrupt), out, progress=False, resume=True)
    assert json.loads(partial_paths(out)[1].read_text())["frames_done"] == 20
    write(movie.chunk({"time": 7}), out, progress=False, resume=True)  # blocks 14-28, ...: cut at 20
    plain = write(movie, tmp_path / f"plain.{fmt}", progress=False)
    _assert_same_output(fmt, out, plain)


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
def test_without_resume_nothing_is_kept(tmp_path, fmt):
    with pytest.raises(KeyboardInterrupt):
        WRITERS[fmt](
            _failing(_movie(), after=2, exc=KeyboardInterrupt), tmp_path / f"o.{fmt}", progress=False
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
def test_partial_file_of_another_write_is_refused_untouched(tmp_path, fmt):
    write = WRITERS[fmt]
    out = tmp_path / f"out.{fmt}"
    part, record = partial_paths(out)
    with pytest.raises(Crash):
        write(_failing(_movie(), after=3), out, progress=False, resume=True)
    before = _digest(part, record)
    with pytest.raises(ValueError, match=r"cannot resume writing .*frame 0 already written differs"):
        write(_movie(offset=1.0), out, progress=False, resume=True)  # same shape, other values
    with pytest.raises(ValueError, match=r"dtype: stored 'float32', now 'uint16'.*nothing was changed"):
        write(_movie(), out, dtype=np.uint16, progress=False, resume=True)
    with pytest.raises(ValueError, match=r"shape: stored \[50, 24, 20\], now \[40, 24, 20\]"):
        write(_movie().isel(time=slice(0, 40)), out, progress=False, resume=True)
    assert _digest(part, record) == before and not out.exists()
    if fmt == "hdf5":
        with pytest.raises(ValueError, match=r"options: stored \{'dataset': 'mov'\}, now \{'dataset': 'd'\}"):
            write(_movie(), out, dataset="d", progress=False, resume=True)
    else:
        with pytest.raises(
            ValueError, match=r"options: stored \{'bigtiff': False\}, now \{'bigtiff': True\}"
        ):
            write(_movie(), out, bigtiff=True, progress=False, resume=True)
    assert _digest(part, record) == before
    write(_movie(), out, progress=False, resume=True)  # the right movie continues it
    assert not part.exists() and not record.exists()


def _tree(path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_zarr_write_resumes_to_the_same_store(tmp_path):
    movie, attrs = _movie(), {"method": "rigid", "max_shifts": [5, 5]}
    plain = tmp_path / "plain.zarr"
    write_movie(movie.chunk({"time": CHUNK}), plain, fmt="zarr", attrs=attrs, progress=False)
    out = tmp_path / "out.zarr"
    part, record = partial_paths(out)
    with pytest.raises(Crash):
        write_movie(_failing(movie, after=3), out, fmt="zarr", attrs=attrs, progress=False, resume=True)
    assert part.is_dir() and json.loads(record.read_text())["frames_done"] == 30
    before = _tree(part)
    with pytest.raises(ValueError, match=r"options: stored \{'attrs'.*'time_chunks': \[10, 10, 10, 10, 10\]"):
        xnormcorre.io.writers.to_zarr(movie.chunk({"time": 7}), out, attrs=attrs, resume=True)
    with pytest.raises(ValueError, match="frame 0 already written differs"):
        xnormcorre.io.writers.to_zarr(_movie(1.0).chunk({"time": CHUNK}), out, attrs=attrs, resume=True)
    assert _tree(part) == before and not out.exists()
    seen: list[int] = []
    xnormcorre.io.writers.to_zarr(_failing(movie, after=99, seen=seen), out, attrs=attrs, resume=True)
    assert 1 not in seen and {3, 4} <= set(seen)
    assert _tree(out) == _tree(plain)  # the same files, metadata included
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "plain.zarr"]
    with pytest.raises(ValueError, match="resume=True writes a movie"):
        xnormcorre.io.writers.to_zarr(xr.Dataset({"m": movie}), tmp_path / "d.zarr", resume=True)


def test_clipping_warning_counts_the_frames_of_the_interrupted_run(tmp_path):
    movie = _movie() * 100  # mostly outside uint8
    with pytest.warns(UserWarning, match="were clipped") as plain:
        xnormcorre.to_tiff(movie, tmp_path / "plain.tif", dtype=np.uint8, progress=False)
    out = tmp_path / "out.tif"
    with pytest.raises(Crash):
        xnormcorre.to_tiff(_failing(movie, after=2), out, dtype=np.uint8, progress=False, resume=True)
    with pytest.warns(UserWarning, match="were clipped") as resumed:
        xnormcorre.to_tiff(movie, out, dtype=np.uint8, progress=False, resume=True)
    assert str(resumed[0].message).replace("out.tif", "plain.tif") == str(plain[0].message)
    assert out.read_bytes() == (tmp_path / "plain.tif").read_bytes()


def test_stale_partial_without_record_is_started_again(tmp_path):
    out = tmp_path / "out.tif"
    part, record = partial_paths(out)
    part.write_bytes(b"half a header")  # killed while the layout was made: no record yet
    xnormcorre.to_tiff(_movie(), out, progress=False, resume=True)
    np.testing.assert_array_equal(tifffile.imread(out), _movie().values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_resume_arguments(tmp_path):
    with pytest.raises(TypeError, match="resume must be True or False, got 'yes'"):
        xnormcorre.to_tiff(_movie(), tmp_path / "a.tif", resume="yes")
    with pytest.raises(ValueError, match=r"resume=True applies to the formats \('tiff', 'hdf5', 'zarr'\)"):
        write_movie(_movie(), tmp_path / "a.nc", fmt="netcdf", resume=True)
    xnormcorre.to_tiff(_movie(), tmp_path / "a.tif", progress=False)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        xnormcorre.to_tiff(_movie(), tmp_path / "a.tif", progress=False, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
def test_write_movie_resumes_with_along(tmp_path, fmt):
    """The CLI's path: variables computed along the movie come back whole after a resume."""
    movie = _movie()
    along = xr.Dataset({"m": movie.mean(("y", "x"))}).chunk({"time": CHUNK})
    out = tmp_path / f"out.{fmt}"
    kw = {"fmt": fmt, "along": along, "progress": False, "resume": True, "attrs": {"a": 1}}
    with pytest.raises(Crash):
        write_movie(_failing(movie, after=3), out, **kw)
    got = write_movie(movie.chunk({"time": CHUNK}), out, **kw)
    np.testing.assert_array_equal(got.m.values, movie.mean(("y", "x")).values)
    if fmt == "hdf5":
        with h5py.File(out, "r") as f:
            assert f["mov"][...].tobytes() == movie.values.tobytes()
    else:
        back = xr.open_zarr(out)
        assert back.attrs == {"a": 1} and back.movie.values.tobytes() == movie.values.tobytes()


_RUN = """
import sys, time
import numpy as np, xarray as xr
from xnormcorre.io import blocks, writers

fmt, path, slow, resume = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "resume"
movie = xr.DataArray(
    (np.random.default_rng(1).normal(size=(60, 48, 40)) * 100).astype(np.float32), dims=("time", "y", "x")
).chunk({"time": 10})
blocks.default_time_chunk = lambda shape, preferred=1: 10
if slow:
    cast = blocks.cast_block
    blocks.cast_block = lambda *a: (time.sleep(slow), cast(*a))[1]
getattr(writers, "to_" + fmt)(movie, path, progress=False, resume=resume)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "sig"), [("tiff", "SIGKILL"), ("hdf5", "SIGKILL"), ("zarr", "SIGKILL"), ("hdf5", "SIGTERM")]
)
def test_sigkilled_write_resumes_to_the_same_file(tmp_path, fmt, sig):
    """Killed mid-write (SIGKILL: nothing runs; SIGTERM: the partial file is kept, the process
    still ends by the signal), then resumed: the file of an uninterrupted write."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from xnormcorre.io.resumable import partial_status

    script = tmp_path / "run.py"
    script.write_text(_RUN)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "JAX_PLATFORMS": "cpu"}
    out, plain = tmp_path / f"out.{fmt}", tmp_path / f"plain.{fmt}"
    run = [sys.executable, str(script), fmt]
    done = subprocess.run([*run, str(plain), "0", "plain"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    child = subprocess.Popen([*run, str(out), "0.5", "resume"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while (partial_status(out) or {}).get("frames_done", 0) < 20:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no frames written in time"
            time.sleep(0.02)
        time.sleep(0.3)  # a moment later: the next blocks are being computed and written
        os.kill(child.pid, getattr(signal, sig))
        child.wait(timeout=60)
        assert child.returncode == -getattr(signal, sig)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    status = partial_status(out)
    assert not out.exists() and status is not None and 20 <= status["frames_done"] < 60
    done = subprocess.run([*run, str(out), "0", "resume"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    _assert_same_output(fmt, out, plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run.py", out.name, plain.name])
