"""Atomic writes: nothing replaced without permission, no folder deleted, nothing left behind
on a full disk, an error or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xnormcorre
from xnormcorre.io import blocks, writers, writers_store


def _movie(n=12, h=16, w=16):
    rng = np.random.default_rng(0)
    return xr.DataArray(rng.normal(size=(n, h, w)).astype(np.float32), dims=("time", "y", "x"), name="movie")


def _write(fmt, obj, path, **kw):
    if fmt == "tiff":
        return xnormcorre.to_tiff(obj, path, progress=False, **kw)
    if fmt == "hdf5":
        return xnormcorre.to_hdf5(obj, path, progress=False, **kw)
    if fmt == "netcdf":
        return writers.to_netcdf(obj, path, **kw)
    return writers.to_zarr(obj, path, **kw)


def _appear_during_write(monkeypatch, fmt, target: Path, make):
    """Call ``make(target)`` while the output is being written (after the start-up checks)."""
    if fmt in ("tiff", "hdf5"):
        orig = blocks.cast_block

        def cast(block, dtype):
            if not os.path.lexists(target):
                make(target)
            return orig(block, dtype)

        monkeypatch.setattr(blocks, "cast_block", cast)
        return {}

    def compute(delayed, *extra):
        make(target)
        return writers_store.dask_compute(delayed, *extra)

    return {"_compute": compute}


FORMATS = ["tiff", "hdf5", "netcdf", "zarr"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_file_appearing_during_the_write_is_not_replaced(tmp_path, monkeypatch, fmt):
    pytest.importorskip("zarr") if fmt == "zarr" else None
    target = tmp_path / f"out.{fmt}"
    kw = _appear_during_write(monkeypatch, fmt, target, lambda p: p.write_bytes(b"foreign"))
    with pytest.raises(FileExistsError, match="appeared while the output was being written"):
        _write(fmt, _movie(), target, **kw)
    assert target.read_bytes() == b"foreign"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left


@pytest.mark.parametrize("fmt", ["tiff", "netcdf"])
def test_file_appearing_during_the_write_is_replaced_with_overwrite(tmp_path, monkeypatch, fmt):
    target = tmp_path / f"out.{fmt}"
    kw = _appear_during_write(monkeypatch, fmt, target, lambda p: p.write_bytes(b"foreign"))
    _write(fmt, _movie(), target, overwrite=True, **kw)
    back = xnormcorre.open_movie(target) if fmt == "tiff" else xr.open_dataset(target)["movie"]
    np.testing.assert_array_equal(back.values, _movie().values)
    back.close()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_zarr_store_appearing_during_the_write_is_not_replaced(tmp_path, monkeypatch):
    pytest.importorskip("zarr")
    target = tmp_path / "out.zarr"

    def make(p):
        p.mkdir()
        (p / "notes.txt").write_text("mine")

    kw = _appear_during_write(monkeypatch, "zarr", target, make)
    with pytest.raises((FileExistsError, IsADirectoryError)):
        writers.to_zarr(_movie(), target, **kw)
    assert (target / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_overwrite_never_deletes_a_folder_that_is_not_a_store(tmp_path, fmt):
    pytest.importorskip("zarr") if fmt == "zarr" else None
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "analysis.npy").write_bytes(b"months of work")
    with pytest.raises(IsADirectoryError, match="never replaced"):
        _write(fmt, _movie(), folder, overwrite=True)
    assert (folder / "analysis.npy").read_bytes() == b"months of work"
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_overwrite_replaces_a_zarr_store(tmp_path):
    pytest.importorskip("zarr")
    target = tmp_path / "out.zarr"
    writers.to_zarr(_movie() * 0, target)
    writers.to_zarr(_movie(), target, overwrite=True)
    np.testing.assert_array_equal(xr.open_zarr(target)["movie"].values, _movie().values)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.slow  # one registration (JAX compile)
def test_cli_shifts_only_never_deletes_an_existing_folder(tmp_path):
    import tifffile

    from xnormcorre.cli import main

    src = tmp_path / "m.tif"
    tifffile.imwrite(src, (_movie(n=10, h=32, w=32).values * 100 + 1000).astype(np.uint16))
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    rc = main(["correct", str(src), "-o", str(folder), "--shifts-only", "--overwrite", "--quiet"])
    assert rc == 1
    assert (folder / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "results"]


def test_full_disk_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    target = tmp_path / "out.h5"
    with pytest.raises(OSError, match="No space left on device") as info:
        xnormcorre.to_hdf5(_movie(), target, progress=False)
    assert info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- subprocesses
_RUN = textwrap.dedent(
    """
    import sys, time
    import numpy as np, xarray as xr
    import xnormcorre
    from xnormcorre.io import atomic, blocks, writers
    fmt, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    movie = xr.DataArray(
        np.random.default_rng(0).normal(size=(100, 64, 64)).astype(np.float32), dims=("time", "y", "x")
    ).chunk({"time": 10})
    atomic.check_space = lambda *a: None  # fail mid-write, not at the up-front check
    if mode == "slow":
        orig = blocks.cast_block
        def cast(block, dtype):
            if block.size and (blocks._n.append(1) or len(blocks._n) == 2):  # not dask's meta probe
                print("writing", flush=True)
                time.sleep(60)
            return orig(block, dtype)
        blocks._n = []
        blocks.cast_block = cast
        blocks.default_time_chunk = lambda shape, preferred=1: 10
    try:
        if fmt in ("netcdf", "zarr"):
            getattr(writers, "to_" + fmt)(movie, path, dtype=np.float64)  # cast per chunk, as "slow" needs
        else:
            getattr(xnormcorre, "to_" + fmt)(movie, path, progress=False)
    except OSError as exc:
        print("error:", exc, file=sys.stderr)
        sys.exit(1)
    """
)


def _spawn(tmp_path, fmt, path, mode):
    script = tmp_path / f"run_{uuid.uuid4().hex[:6]}.py"
    script.write_text(_RUN)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, str(script), fmt, str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_failed_zarr_write_leaves_nothing_when_other_chunks_are_still_writing(tmp_path, monkeypatch):
    """A chunk that fails while another is still being written: the write waits for that one
    before removing the temporary, so that it cannot recreate the store (a full disk)."""
    pytest.importorskip("zarr")
    import threading

    started = threading.Event()
    orig = blocks.cast_block

    def cast(block, dtype):
        if block.size and block.flat[0] == 0.0:  # the first chunk: fail once the second is under way
            started.wait(5)
            raise OSError(28, "No space left on device")
        if block.size:
            started.set()
            time.sleep(0.5)  # still writing when the first chunk fails
        return orig(block, dtype)

    monkeypatch.setattr(blocks, "cast_block", cast)
    movie = xr.DataArray(np.arange(2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16), dims=("time", "y", "x"))
    with pytest.raises(OSError, match="No space left on device"):
        writers.to_zarr(movie.chunk({"time": 1}), tmp_path / "out.zarr", dtype=np.float64)
    time.sleep(1.0)  # the other chunk would be written by now
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not permitted)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["hdf5", "tiff", "netcdf", "zarr"])
def test_full_disk_mid_write_is_one_clear_error(tmp_path, small_tmpfs, fmt):
    target = small_tmpfs / f"out.{fmt}"
    proc = _spawn(tmp_path, fmt, target, "full")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # not 139 (a crash in h5py's cleanup)
    assert "No space left on device" in err and str(target) in err
    assert list(small_tmpfs.iterdir()) == []  # no partial file, no temporary


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tiff", "hdf5", "netcdf", "zarr"])
def test_sigterm_mid_write_leaves_no_temporary(tmp_path, fmt):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _spawn(tmp_path, fmt, out_dir / f"m.{fmt}", "slow")
    line = proc.stdout.readline()  # the second block is being computed
    assert line.strip() == "writing", proc.stderr.read()
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # still ends by the signal, as without the handler
    assert list(out_dir.iterdir()) == []


def test_sigterm_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    xnormcorre.to_tiff(_movie(), tmp_path / "a.tif", progress=False)
    assert signal.getsignal(signal.SIGTERM) is before


def test_saturating_integer_output_warns_with_the_clipped_fraction(tmp_path):
    movie = _movie() * 1000 + 5000  # almost every pixel above 255
    with pytest.warns(UserWarning, match=r"\d+\.\d% of the pixels .* outside the range of uint8") as rec:
        xnormcorre.to_tiff(movie, tmp_path / "m.tif", dtype=np.uint8, progress=False)
    frac = float(str(rec[0].message).split("%")[0]) / 100
    assert frac == pytest.approx(float(((movie.values > 255.5) | (movie.values < -0.5)).mean()), abs=1e-3)
    assert frac > 0.99
    xnormcorre.to_tiff(_movie() + 100, tmp_path / "ok.tif", dtype=np.uint8, progress=False)  # no warning


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lazy", [False, True])
def test_every_writer_warns_when_an_integer_dtype_saturates(tmp_path, fmt, lazy):
    pytest.importorskip("zarr") if fmt == "zarr" else None
    movie = _movie() * 1000 + 5000
    movie[:6] = 100.0  # half the frames fit in uint8
    src = movie.chunk({"time": 5}) if lazy else movie
    with pytest.warns(
        UserWarning, match=r"50\.0% of the pixels .* outside the range of uint8 \[0, 255\]"
    ) as rec:
        _write(fmt, src, tmp_path / f"m.{fmt}", dtype=np.uint8)
    assert {w.filename for w in rec} == {__file__}  # the warning names the user's line


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_movie_warns_when_an_integer_dtype_saturates_with_along(tmp_path, fmt):
    """The CLI path: movie and time-aligned variables computed in one pass."""
    pytest.importorskip("zarr") if fmt == "zarr" else None
    movie = (_movie() * 1000 + 5000).chunk({"time": 5})
    along = xr.Dataset({"s": ("time", np.arange(12.0))}).chunk({"time": 5})
    with pytest.warns(UserWarning, match=r"100\.0% of the pixels .* outside the range of int8"):
        got = writers.write_movie(
            movie, tmp_path / f"m.{fmt}", fmt=fmt, dtype=np.int8, progress=False, along=along
        )
    np.testing.assert_array_equal(got["s"].values, np.arange(12.0))


def test_highpass_sigma_larger_than_the_frame_is_refused():
    with pytest.raises(ValueError, match="sigma=1000000.0 is too large for frames of 16x16 px"):
        xnormcorre.highpass(_movie(), sigma=1e6)
