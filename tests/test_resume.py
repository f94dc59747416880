"""``rigid/pwrigid(movie, store=..., resume=...)`` and the command line's ``--resume`` and ``-o out.nwb``.

An interrupted run is made by a movie whose chunk reads fail once the store exists (the
template is estimated, the store created and the first chunks written, then the "job" dies);
the command line is SIGKILLed mid-run.  Each resumed result is compared, bit for bit, with
an uninterrupted run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.io.resumable import partial_paths, partial_status
from xnormcorre.io.store import store_status

pytest.importorskip("zarr")

T, H, W, CHUNK = 120, 64, 64, 30
PW = {"strides": 24, "overlaps": 8}


class Crash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def movie():
    return xnormcorre.datasets.synthetic_movie(n_frames=T, shape=(H, W), max_shift=3, seed=3)


def crashing(movie: xr.DataArray, store: Path) -> xr.DataArray:
    """``movie`` in chunks of CHUNK frames whose reads fail from the third chunk on once ``store`` exists."""

    def read(block, block_info=None):
        if store.exists() and block_info[0]["chunk-location"][0] >= 2:
            raise Crash("the job died")
        return block

    chunked = movie.chunk({"time": CHUNK})
    return chunked.copy(data=chunked.data.map_blocks(read, dtype=movie.dtype))


def interrupted(register, movie, store: Path, **kw) -> None:
    with pytest.raises(Crash):
        register(crashing(movie, store), store=store, **kw)
    status = store_status(store)
    assert 1 <= status["chunks_done"] < status["n_chunks"] == T // CHUNK
    assert not status["complete"]


@pytest.mark.parametrize(
    ("register", "kw"), [(xnormcorre.rigid, {}), (xnormcorre.pwrigid, PW)], ids=["rigid", "pwrigid"]
)
def test_resumed_run_is_bit_identical(tmp_path, movie, register, kw):
    chunked = movie.chunk({"time": CHUNK})
    whole = register(chunked, max_shifts=5, store=tmp_path / "whole.zarr", **kw)
    assert whole.corrected.chunks is not None  # the corrected movie stays lazy
    assert all(whole[v].chunks is None for v in whole.data_vars if v != "corrected")
    whole = whole.compute()
    xr.testing.assert_identical(whole, register(movie, max_shifts=5, **kw))  # same as without a store

    store = tmp_path / "run.zarr"
    interrupted(register, movie, store, max_shifts=5, **kw)
    resumed = register(chunked, max_shifts=5, store=store, resume=True, **kw)
    xr.testing.assert_identical(resumed.compute(), whole)
    assert store_status(store)["complete"]
    stored = xr.open_zarr(store)
    np.testing.assert_array_equal(stored.shifts.values, whole.shifts.values)


def test_in_memory_movie_is_chunked_along_time(tmp_path, movie):
    res = xnormcorre.rigid(movie, max_shifts=5, store=tmp_path / "eager.zarr")
    assert res.corrected.chunks is not None
    assert store_status(tmp_path / "eager.zarr")["complete"]
    xr.testing.assert_identical(res.compute(), xnormcorre.rigid(movie, max_shifts=5))


def test_resume_with_other_parameters_is_refused_untouched(tmp_path, movie, tree_digest):
    store = tmp_path / "run.zarr"
    interrupted(xnormcorre.rigid, movie, store, max_shifts=5)
    before = tree_digest(store)
    with pytest.raises(ValueError, match=r"cannot resume.*max_shifts: stored \[5, 5\], now \[4, 4\]"):
        xnormcorre.rigid(movie.chunk({"time": CHUNK}), max_shifts=4, store=store, resume=True)
    with pytest.raises(ValueError, match="first/last frames"):
        xnormcorre.rigid((movie + 1).chunk({"time": CHUNK}), max_shifts=5, store=store, resume=True)
    with pytest.raises(ValueError, match="time chunks differ"):
        xnormcorre.rigid(movie.chunk({"time": 20}), max_shifts=5, store=store, resume=True)
    assert tree_digest(store) == before


def test_store_and_resume_arguments(tmp_path, movie):
    with pytest.raises(ValueError, match=r"resume=True needs store="):
        xnormcorre.rigid(movie, resume=True)
    with pytest.raises(TypeError, match="resume must be True or False"):
        xnormcorre.rigid(movie, store=tmp_path / "x.zarr", resume="yes")
    with pytest.raises(TypeError, match="store must be the path"):
        xnormcorre.pwrigid(movie, store=3)
    (tmp_path / "taken.zarr").mkdir()
    with pytest.raises(FileExistsError, match="pass resume=True"):
        xnormcorre.rigid(movie, store=tmp_path / "taken.zarr")
    params = movie.normcorre.rigid.__signature__.parameters
    assert "store" in params and "resume" in params  # the accessor shows them


# --------------------------------------------------------------------------- command line
def cli(argv: list[str], cwd: Path, *, slow: float = 0.0, slow_write: float = 0.0, wait: bool = True):
    """The CLI as a subprocess; ``slow``: seconds of sleep before each chunk is registered;
    ``slow_write``: the movie written in blocks of 20 frames, with this sleep before each."""
    code = "import sys\nfrom xnormcorre.cli import main\n"
    if slow:
        code += (
            "import time\nimport xnormcorre.io.store as st\nslow = st._compute_chunk\n"
            f"st._compute_chunk = lambda *a: (time.sleep({slow}), slow(*a))[1]\n"
        )
    if slow_write:
        code += (
            "import time\nimport xnormcorre.io.blocks as bl\ncast = bl.cast_block\n"
            "bl.default_time_chunk = lambda shape, preferred=1: 20\n"
            f"bl.cast_block = lambda *a: (time.sleep({slow_write}), cast(*a))[1]\n"
        )
    code += "sys.exit(main(sys.argv[1:]))\n"
    root = str(Path(xnormcorre.__file__).parents[1])
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": root}
    cmd = [sys.executable, "-c", code, *argv]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tif(tmp_path_factory, movie):
    path = tmp_path_factory.mktemp("cli") / "in.tif"
    tifffile.imwrite(path, np.asarray(movie.values))
    return path


def test_cli_nwb_output_reads_back(tif, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    run = cli(["correct", str(tif), "-o", "out.nwb", "--chunk", "30", "--fps", "30", "-q"], tmp_path)
    assert run.returncode == 0, run.stderr
    expected = xnormcorre.rigid(xnormcorre.open_movie(tif, chunks={"time": 30})).compute()
    saved = xr.open_dataset(tmp_path / "out_shifts.nc")
    np.testing.assert_array_equal(saved.shifts.values, expected.shifts.values)
    with pynwb.NWBHDF5IO(tmp_path / "out.nwb", "r") as io:
        ophys = io.read().processing["ophys"]
        stack = ophys["MotionCorrection"]["CorrectedImageStack"]
        np.testing.assert_array_equal(stack.corrected.data[:].transpose(0, 2, 1), expected.corrected.values)
        np.testing.assert_array_equal(
            stack.xy_translation.data[:], -expected.shifts.sel(axis=["x", "y"]).values
        )
        np.testing.assert_array_equal(
            ophys["CorrectedImageStack_correlation"].data[:], expected.correlation.values
        )
        np.testing.assert_array_equal(
            ophys["CorrectedImageStack_template"]["template"].data[:].T, expected.template.values
        )
        assert float(stack.corrected.rate) == 30.0


@pytest.mark.slow
def test_cli_sigkilled_run_resumes_bit_identical(tif, tmp_path, tree_digest, kill_when):
    plain = cli(["correct", str(tif), "-o", "plain.tif", "--chunk", "20"], tmp_path, wait=False)
    args = ["correct", str(tif), "-o", "out.tif", "--chunk", "20", "--resume"]
    store = tmp_path / "out_shifts.zarr"
    child = cli(args, tmp_path, slow=1.0, wait=False)
    kill_when(child, lambda: store.exists() and store_status(store)["chunks_done"] >= 1, "finish a chunk")
    status = store_status(store)
    assert 1 <= status["chunks_done"] < status["n_chunks"] == T // 20
    assert not (tmp_path / "out.tif").exists()  # no partial output

    # changed parameters: refused, the store left as it was
    before = tree_digest(store)
    other = cli([*args, "--max-shifts", "4"], tmp_path)
    assert other.returncode == 1
    assert "cannot resume" in other.stderr and "max_shifts" in other.stderr
    assert tree_digest(store) == before and not (tmp_path / "out.tif").exists()

    # resumed, then killed again while the corrected movie is written
    child = cli(args, tmp_path, slow_write=1.0, wait=False)
    record = partial_paths(tmp_path / "out.tif")[1]
    kill_when(
        child,
        lambda: (partial_status(tmp_path / "out.tif") or {}).get("frames_done", 0) >= 20,
        "write frames",
    )
    assert store_status(store)["complete"] and not (tmp_path / "out.tif").exists()
    written = partial_status(tmp_path / "out.tif")
    assert written is not None and 20 <= written["frames_done"] < written["n_frames"] == T
    assert record.is_file()

    resumed = cli(args, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {store}: {status['n_chunks']} of {status['n_chunks']} chunks done" in resumed.stdout
    assert f"resuming the write of {tmp_path / 'out.tif'}: {written['frames_done']} of {T}" in resumed.stdout
    plain.wait(timeout=300)
    assert plain.returncode == 0, plain.stderr.read().decode()
    assert (tmp_path / "out.tif").read_bytes() == (tmp_path / "plain.tif").read_bytes()
    assert not record.exists() and not partial_paths(tmp_path / "out.tif")[0].exists()
    xr.testing.assert_identical(
        xr.open_dataset(tmp_path / "out_shifts.nc").load(),
        xr.open_dataset(tmp_path / "plain_shifts.nc").load(),
    )


def test_to_nwb_of_a_result_read_back_from_netcdf(tmp_path, movie):
    pynwb = pytest.importorskip("pynwb")
    res = xnormcorre.rigid(movie, max_shifts=5)
    res.drop_vars("corrected").to_netcdf(tmp_path / "shifts.nc")
    back = xr.open_dataset(tmp_path / "shifts.nc").load()  # attributes come back as NumPy values
    assert any(isinstance(v, np.generic) for v in back.attrs.values())
    corrected = xnormcorre.apply_shifts(movie, back, border=back.attrs["border"])
    xnormcorre.to_nwb(
        back.assign(corrected=corrected), tmp_path / "s.nwb", movie=movie, rate=30.0, progress=False
    )
    with pynwb.NWBHDF5IO(tmp_path / "s.nwb", "r") as io:
        ophys = io.read().processing["ophys"]
        table = ophys["CorrectedImageStack_parameters"].to_dataframe().set_index("parameter")["value"]
        data = ophys["MotionCorrection"]["CorrectedImageStack"].corrected.data[:]
        np.testing.assert_array_equal(data.transpose(0, 2, 1), res.corrected.values)
    assert table["max_shifts"] == "[5, 5]"
    assert table["batch_size"] == str(res.attrs["batch_size"])


@pytest.mark.slow
def test_cli_apply_writes_nwb(tif, tmp_path):
    first = cli(["correct", str(tif), "-o", "out.tif", "--chunk", "30", "-q"], tmp_path)
    assert first.returncode == 0, first.stderr
    run = cli(["apply", "out_shifts.nc", str(tif), "-o", "again.nwb", "--fps", "15", "-q"], tmp_path)
    assert run.returncode == 0, run.stderr
    pynwb = pytest.importorskip("pynwb")
    with pynwb.NWBHDF5IO(tmp_path / "again.nwb", "r") as io:
        corrected = io.read().processing["ophys"]["MotionCorrection"]["CorrectedImageStack"].corrected
        np.testing.assert_array_equal(
            corrected.data[:].transpose(0, 2, 1), tifffile.imread(tmp_path / "out.tif")
        )
        assert float(corrected.rate) == 15.0
