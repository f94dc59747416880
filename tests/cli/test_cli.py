"""The ``xnormcorre`` command line, run as subprocesses on small synthetic TIFF/HDF5 movies.

Every subprocess pays the JAX import (and most a compilation), so independent runs are
started together (a few at a time) by module-scoped fixtures, and the tests check their
outputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre

T, H, W = 40, 64, 64
_PARALLEL = 4


def _cmd(argv: list[str], *, no_matplotlib: bool = False) -> list[str]:
    if no_matplotlib:  # the CLI as if matplotlib were not installed
        code = (
            "import sys; sys.modules['matplotlib'] = None; from xnormcorre.cli import main; "
            "sys.exit(main(sys.argv[1:]))"
        )
        return [sys.executable, "-c", code, *argv]
    return [sys.executable, "-m", "xnormcorre.cli", *argv]


def run_cli(argv: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(_cmd(argv, **kw), cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def run_many(argvs: list[list[str]], cwd: Path, no_matplotlib=()) -> list[subprocess.CompletedProcess]:
    """Run several CLI invocations concurrently (at most ``_PARALLEL`` at a time), in order.

    The invocations whose index is in ``no_matplotlib`` run as if matplotlib were missing.
    """
    with ThreadPoolExecutor(_PARALLEL) as pool:
        futures = [
            pool.submit(run_cli, a, cwd, no_matplotlib=i in no_matplotlib) for i, a in enumerate(argvs)
        ]
        return [f.result() for f in futures]


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def _clean_error(proc: subprocess.CompletedProcess, expect: str, argv) -> None:
    """Exit status != 0, exactly one line on stderr, no traceback."""
    msg = f"{argv}: exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode != 0, msg
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, msg
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, msg
    assert "error: " in lines[0], msg
    assert expect.lower() in lines[0].lower(), msg


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name or p.name.endswith(".old"))


# --------------------------------------------------------------------------- inputs
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """m.tif (rigid motion), m.h5 with datasets 'mov' and 'red' (non-rigid motion), and broken files."""
    d = tmp_path_factory.mktemp("cli_data")
    rigid = xnormcorre.datasets.synthetic_movie(n_frames=T, shape=(H, W), max_shift=3, dtype="uint16", seed=1)
    tifffile.imwrite(d / "m.tif", rigid.values)
    nonrigid = xnormcorre.datasets.synthetic_movie(
        n_frames=T, shape=(H, W), max_shift=2, nonrigid=1.5, dtype="uint16", seed=2
    )
    with h5py.File(d / "m.h5", "w") as f:
        f["mov"] = nonrigid.values
        f["red"] = nonrigid.values
    (d / "bad.txt").write_text("not a movie")
    # a valid TIFF whose frame 30 cannot be decoded: opens fine, fails mid-way when read
    noise = np.random.default_rng(0).integers(0, 1000, (T, H, W)).astype(np.uint16)
    tifffile.imwrite(d / "corrupt.tif", noise, compression="zlib")
    with tifffile.TiffFile(d / "corrupt.tif") as tif:
        page = tif.pages[30]
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    with open(d / "corrupt.tif", "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * count)
    zero = xr.Dataset(
        {"shifts": (("time", "axis"), np.zeros((T, 2), np.float32))}, coords={"axis": ["y", "x"]}
    )
    zero.to_netcdf(d / "zero_shifts.nc")
    zero.isel(time=slice(0, 30)).to_netcdf(d / "short_shifts.nc")
    return d


@pytest.fixture(scope="module")
def runs(data: Path, tmp_path_factory):
    """The successful `correct` runs, started together: {name: (process, output folder)}."""
    out = tmp_path_factory.mktemp("cli_out")
    (out / "ref.zarr").mkdir()  # an old output (a zarr store), replaced whole with --overwrite
    (out / "ref.zarr" / ".zgroup").write_text('{"zarr_format": 2}')
    (out / "ref.zarr" / "stale-file").write_text("from a previous run")
    jobs = {
        "rigid_tiff": ["correct", str(data / "m.tif"), "-o", str(out / "corrected.tif"), "--max-shifts", "5"],
        "pw_hdf5": [
            "correct",
            str(data / "m.h5"),
            "--dataset",
            "mov",
            "-o",
            str(out / "pw.h5"),
            "--pw-rigid",
            "--max-shifts",
            "4",
            "--strides",
            "32",
            "--overlaps",
            "16",
            "--chunk",
            "16",
            "--qc",
            "-q",
        ],
        "zarr_reference": [
            "correct",
            str(data / "m.h5"),
            "--dataset",
            "mov",
            "--reference",
            "red",
            "-o",
            str(out / "ref.zarr"),
            "--max-shifts",
            "5",
            "--overwrite",
            "-q",
        ],
        "netcdf_same_dtype": [
            "correct",
            str(data / "m.tif"),
            "-o",
            str(out / "movie.nc"),
            "--dtype",
            "same",
            "--max-shifts",
            "5",
            "--metrics",
            "--qc",  # run without matplotlib: a note, no plot
            "-q",
        ],
        "shifts_only": [
            "correct",
            str(data / "m.tif"),
            "--shifts-only",
            "-o",
            str(out / "only.nc"),
            "--max-shifts",
            "5",
            "-q",
        ],
    }
    procs = run_many(list(jobs.values()), out, no_matplotlib={list(jobs).index("netcdf_same_dtype")})
    return dict(zip(jobs, procs, strict=True)), out


# --------------------------------------------------------------------------- help, info
def test_help_and_version(tmp_path):
    argvs = [["--help"], ["--version"], *([c, "--help"] for c in ("demo", "correct", "apply", "info"))]
    top, version, demo, correct, apply, info = (_ok(p) for p in run_many(argvs, tmp_path))
    for cmd in ("demo", "correct", "apply", "info"):
        assert cmd in top.stdout
    assert version.stdout.strip() == f"xnormcorre {xnormcorre.__version__}"
    assert "--overwrite" in demo.stdout and "demo_rigid.nc" in demo.stdout
    for opt in (
        "--pw-rigid",
        "--max-shifts",
        "--strides",
        "--overlaps",
        "--max-deviation-rigid",
        "--refine-patches",
        "--reference",
        "--format",
        "--shifts-only",
        "--overwrite",
        "--chunk",
        "--dataset",
        "pip install zarr",
    ):
        assert opt in correct.stdout, opt
    assert "SHIFTS.nc" in apply.stdout and "-o OUT" in apply.stdout
    assert "without" in info.stdout and "reading" in info.stdout


def test_info_reads_no_pixels(data: Path, runs):
    _, out = runs
    argvs = [
        ["info", "m.tif"],
        ["info", "m.h5", "--dataset", "red", "--chunk", "16"],
        ["info", "corrupt.tif"],  # frame 30 cannot be decoded: info never reads it
        ["info", str(out / "corrected_shifts.nc")],
    ]
    tif, h5, corrupt, nc = (_ok(p) for p in run_many(argvs, data))
    assert "40 x 64 x 64" in tif.stdout and "uint16" in tif.stdout and "xnormcorre_tiff" in tif.stdout
    assert "xnormcorre_hdf5" in h5.stdout and "/red" in h5.stdout and "16 frames (3 chunks)" in h5.stdout
    assert "40 x 64 x 64" in corrupt.stdout
    assert "shifts (time, axis)" in nc.stdout and "rigid" in nc.stdout


# --------------------------------------------------------------------------- correct, apply
def test_correct_rigid_tiff_round_trip(data: Path, runs):
    procs, out = runs
    proc = _ok(procs["rigid_tiff"])
    assert str(out / "corrected.tif") in proc.stdout and str(out / "corrected_shifts.nc") in proc.stdout
    assert "%|" in proc.stderr  # progress bars
    movie = xnormcorre.open_movie(data / "m.tif")
    ref = xnormcorre.rigid(movie, max_shifts=5).load()
    written = tifffile.imread(out / "corrected.tif")
    assert written.dtype == np.float32
    np.testing.assert_array_equal(written, ref.corrected.values)
    with xr.open_dataset(out / "corrected_shifts.nc") as shifts:
        assert "corrected" not in shifts
        assert shifts.shifts.dims == ("time", "axis")
        np.testing.assert_array_equal(shifts.shifts.values, ref.shifts.values)
        assert shifts.attrs["method"] == "rigid" and list(shifts.attrs["max_shifts"]) == [5, 5]
    assert _leftovers(out) == []

    # apply the saved shifts again: the same movie, bit for bit
    again = _ok(run_cli(["apply", "corrected_shifts.nc", str(data / "m.tif"), "-o", "again.tif", "-q"], out))
    assert "again.tif" in again.stdout
    np.testing.assert_array_equal(tifffile.imread(out / "again.tif"), written)


def test_correct_pwrigid_hdf5(data: Path, runs):
    procs, out = runs
    _ok(procs["pw_hdf5"])
    movie = xnormcorre.open_movie(data / "m.h5", dataset="mov")
    ref = xnormcorre.pwrigid(movie, max_shifts=4, strides=32, overlaps=16).load()
    with h5py.File(out / "pw.h5", "r") as f:
        np.testing.assert_array_equal(f["mov"][:], ref.corrected.values)
    with xr.open_dataset(out / "pw_shifts.nc") as shifts:
        assert shifts.shifts.dims == ("time", "patch_y", "patch_x", "axis")
        np.testing.assert_array_equal(shifts.shifts.values, ref.shifts.values)
        assert "rigid_shifts" in shifts and "patch_jump" in shifts
    for name in ("pw_before_after.png", "pw_shifts.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_correct_zarr_with_reference_channel(data: Path, runs):
    procs, out = runs
    _ok(procs["zarr_reference"])
    movie = xnormcorre.open_movie(data / "m.h5", dataset="mov")
    ref = xnormcorre.rigid(movie, max_shifts=5).load()  # 'red' holds the same frames: same shifts
    assert not (out / "ref.zarr" / "stale-file").exists()  # --overwrite replaced the store whole
    with xr.open_zarr(out / "ref.zarr") as z:
        np.testing.assert_array_equal(z.corrected.values, ref.corrected.values)
        assert z.attrs["method"] == "rigid"
    assert _leftovers(out) == []
    with xr.open_dataset(out / "ref_shifts.nc") as shifts:
        assert shifts.attrs["shifts_estimated_on"].startswith("reference")


def test_correct_netcdf_dtype_and_shifts_only(data: Path, runs):
    procs, out = runs
    nc = _ok(procs["netcdf_same_dtype"])
    assert "before/after" in nc.stdout and "->" in nc.stdout
    notes = [line for line in nc.stdout.splitlines() if "matplotlib" in line]
    assert len(notes) == 1 and notes[0].startswith("note:")
    assert not list(out.glob("movie*.png"))
    with xr.open_dataset(out / "movie.nc") as ds:
        assert ds.corrected.dtype == np.uint16 and ds.corrected.shape == (T, H, W)
    assert (out / "movie_shifts.nc").is_file()
    _ok(procs["shifts_only"])
    assert not (out / "only_shifts.nc").exists()
    with xr.open_dataset(out / "only.nc") as only, xr.open_dataset(out / "movie_shifts.nc") as full:
        assert "corrected" not in only
        np.testing.assert_array_equal(only.shifts.values, full.shifts.values)


def test_demo_writes_results(tmp_path):
    proc = _ok(run_cli(["demo", "-o", "d", "--frames", "30", "--size", "64", "-q"], tmp_path))
    for name in ("demo_rigid.nc", "demo_corrected.tif", "demo_before_after.png", "demo_shifts.png"):
        assert (tmp_path / "d" / name).is_file(), name
        assert name in proc.stdout
    assert "crispness of mean image: raw" in proc.stdout
    assert "mean correlation with mean image: raw" in proc.stdout
    assert tifffile.imread(tmp_path / "d" / "demo_corrected.tif").shape == (30, 64, 64)
    with xr.open_dataset(tmp_path / "d" / "demo_rigid.nc") as ds:
        assert ds.shifts.shape == (30, 2) and "corrected" not in ds


# --------------------------------------------------------------------------- errors
def test_errors_are_one_line_and_leave_nothing(data: Path, tmp_path):
    work = tmp_path
    for name in ("m.tif", "m.h5", "bad.txt", "corrupt.tif", "zero_shifts.nc", "short_shifts.nc"):
        os.link(data / name, work / name)
    (work / "exists.tif").write_bytes(b"keep me")
    (work / "demo_out").mkdir()
    (work / "demo_out" / "demo_rigid.nc").write_bytes(b"keep me too")
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    cases = [
        (["correct", "missing.tif", "-o", "o.tif"], "not found"),
        (["correct", "m.tif", "-o", "exists.tif"], "--overwrite"),
        (["correct", "m.tif", "-o", "o.tif", "--max-shifts", "40"], "max_shifts"),
        (["correct", "m.tif", "-o", "o.tif", "--max-shifts", "1", "2", "3"], "--max-shifts takes 1 or 2"),
        (["correct", "m.tif", "-o", "o.xyz"], "--format"),
        (["correct", "bad.txt", "-o", "o.tif"], "neither a TIFF nor an HDF5"),
        (["correct", "m.tif", "-o", "nodir/o.tif"], "does not exist"),
        (
            ["correct", "m.tif", "-o", "o.tif", "--pw-rigid", "--strides", "64", "--overlaps", "16"],
            "patch size",
        ),
        (["correct", "m.tif", "-o", "o.tif", "--strides", "32"], "--pw-rigid only"),
        (["correct", "m.h5", "-o", "o.tif"], "--dataset"),
        (["correct", "m.tif", "-o", "o.tif", "--reference", "nope"], "--reference"),
        (["correct", "m.tif", "-o", "m.tif", "--overwrite"], "one of the inputs"),
        (["correct", "m.tif", "-o", "o.tif", "--chunk", "0"], "--chunk"),  # argparse: exit 2
        (["apply", "m.tif", "m.tif", "-o", "o.tif"], "NetCDF"),
        (["apply", "short_shifts.nc", "m.tif", "-o", "o.tif"], "frames"),
        (
            ["apply", "zero_shifts.nc", "corrupt.tif", "-o", "o.tif", "-q"],
            "decompress",
        ),  # fails while writing
        (["demo", "-o", "demo_out"], "--overwrite"),
    ]
    procs = run_many([argv for argv, _ in cases], work)
    for (argv, expect), proc in zip(cases, procs, strict=True):
        _clean_error(proc, expect, argv)
    assert procs[12].returncode == 2  # usage error
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before  # no output, no temporary
    assert (work / "exists.tif").read_bytes() == b"keep me"
    assert (work / "demo_out" / "demo_rigid.nc").read_bytes() == b"keep me too"
