"""Every output option and location of ``correct`` / ``apply`` is checked before any compute:
the registration is replaced by a function that fails, so a check made only after it shows
up as that failure instead of the expected one-line error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

import xnormcorre
from xnormcorre.cli import main


@pytest.fixture
def data(tmp_path):
    src = tmp_path / "m.tif"
    frames = np.random.default_rng(0).normal(size=(10, 32, 32)) * 100 + 1000
    tifffile.imwrite(src, frames.astype(np.uint16))
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    return tmp_path


@pytest.fixture
def no_compute(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the registration started before the options were checked")

    for name in ("rigid", "pwrigid", "apply_shifts"):
        monkeypatch.setattr(xnormcorre, name, boom)


def _error(argv: list[str], capsys) -> str:
    assert main([*argv, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


CASES = {
    "shifts-only with --qc": (
        ["--shifts-only", "-o", "{d}/s.nc", "--qc"],
        r"--qc does not apply with --shifts-only",
    ),
    "shifts-only with --metrics and --dtype": (
        ["--shifts-only", "-o", "{d}/s.nc", "--metrics", "--dtype", "uint16"],
        r"--metrics, --dtype do not apply with --shifts-only",
    ),
    "shifts-only with --out-dataset": (
        ["--shifts-only", "-o", "{d}/s.nc", "--out-dataset", "x"],
        r"--out-dataset does not apply with --shifts-only",
    ),
    "shifts-only to a .tif name": (
        ["--shifts-only", "-o", "{d}/s.tif"],
        r"OUT is the shifts NetCDF: give it a \.nc or \.nc4 name, got '.*s\.tif'",
    ),
    "shifts-only to an existing folder": (
        ["--shifts-only", "-o", "{d}/results", "--overwrite"],
        r"OUT is the shifts NetCDF: give it a \.nc or \.nc4 name, got '.*results'",
    ),
    "shifts-only to an existing folder named .nc": (
        ["--shifts-only", "-o", "{d}/results.nc", "--overwrite"],
        r"results\.nc' is a folder; it is never replaced, not even with --overwrite",
    ),
    "movie to an existing folder": (
        ["-o", "{d}/results", "--format", "tiff", "--overwrite"],
        r"results' is a folder; it is never replaced, not even with --overwrite",
    ),
    "--shifts to an existing folder": (
        ["-o", "{d}/c.tif", "--shifts", "{d}/results.nc", "--overwrite"],
        r"results\.nc' is a folder; it is never replaced",
    ),
    "--shifts to a .tif name": (
        ["-o", "{d}/c.tif", "--shifts", "{d}/s.tif"],
        r"--shifts is the shifts NetCDF: give it a \.nc or \.nc4 name",
    ),
    "empty --out-dataset": (
        ["-o", "{d}/c.h5", "--out-dataset", ""],
        r"--out-dataset must name an HDF5 dataset, got ''",
    ),
    "--out-dataset '/'": (
        ["-o", "{d}/c.h5", "--out-dataset", "/"],
        r"--out-dataset must name an HDF5 dataset, got '/'",
    ),
    "--out-dataset for a TIFF": (
        ["-o", "{d}/c.tif", "--out-dataset", "movie"],
        r"--out-dataset names the dataset of an HDF5 output; OUT is tiff",
    ),
    "existing QC plot": (
        ["-o", "{d}/c.tif", "--qc"],
        r"c_shifts\.png' exists; pass --overwrite",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_correct_checks_every_output_before_any_compute(data, no_compute, capsys, case):
    argv, message = CASES[case]
    (data / "results.nc").mkdir()
    (data / "c_shifts.png").write_bytes(b"old plot")
    before = sorted(p.name for p in data.rglob("*"))
    argv = ["correct", str(data / "m.tif"), *(a.format(d=data) for a in argv)]
    err = _error(argv, capsys)
    assert re.search(message, err), err
    assert sorted(p.name for p in data.rglob("*")) == before  # nothing written, nothing deleted
    assert (data / "results" / "keep.txt").read_text() == "precious"


def test_apply_checks_the_output_before_reading_the_shifts(data, no_compute, capsys):
    (data / "s.nc").write_bytes(b"not even NetCDF")
    err = _error(
        ["apply", str(data / "s.nc"), str(data / "m.tif"), "-o", str(data / "c.h5"), "--out-dataset", ""],
        capsys,
    )
    assert "--out-dataset must name an HDF5 dataset, got ''" in err
    err = _error(["apply", str(data / "s.nc"), str(data / "m.tif"), "-o", str(data / "results")], capsys)
    assert "cannot tell the output format" in err
    assert (data / "results" / "keep.txt").read_text() == "precious"


@pytest.fixture
def shared_dir():
    """A folder every user may write in, with a read-only subfolder (pytest's tmp folders are
    private to their owner)."""
    d = Path(tempfile.mkdtemp(prefix="xnc-cli-"))
    d.chmod(0o777)
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    frames = np.random.default_rng(0).normal(size=(10, 32, 32)) * 100 + 1000
    tifffile.imwrite(d / "m.tif", frames.astype(np.uint16))
    (d / "m.tif").chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


_AS_NOBODY = """
import os, sys
import concurrent.futures, multiprocessing.pool
import dask, dask.array, h5py, tifffile, xarray
import xnormcorre, xnormcorre.cli, xnormcorre.cli.commands, xnormcorre.io.atomic, xnormcorre.io.writers_hdf5
os.setgid(65534); os.setuid(65534)  # nobody, after the imports (the installed packages may be private)
def boom(*args, **kwargs):
    raise AssertionError("the registration started before the options were checked")
xnormcorre.rigid = boom
sys.exit(xnormcorre.cli.main(sys.argv[1:] + ["--quiet"]))
"""


@pytest.mark.parametrize(
    "where",
    [
        ["-o", "{d}/ro/c.tif"],
        ["-o", "{d}/c.tif", "--shifts", "{d}/ro/s.nc"],
        ["--shifts-only", "-o", "{d}/ro/s.nc"],
    ],
)
def test_non_writable_output_folder_is_refused_before_any_compute(shared_dir, where):
    """As an unprivileged user (root may write anywhere)."""
    argv = ["correct", str(shared_dir / "m.tif"), *(a.format(d=shared_dir) for a in where)]
    if os.geteuid() == 0:
        cmd = [sys.executable, "-c", _AS_NOBODY, *argv]
    else:
        cmd = [sys.executable, "-c", _AS_NOBODY.replace("os.setgid(65534); os.setuid(65534)", "pass"), *argv]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    if "Operation not permitted" in done.stderr:
        pytest.skip("cannot switch to an unprivileged user here")
    assert done.returncode == 1, done.stderr
    assert (
        done.stderr == f"error: {shared_dir / 'ro'}: Permission denied: cannot write in the output folder\n"
    )


@pytest.mark.slow  # one registration (JAX compile) in a subprocess
def test_saturating_dtype_warns_on_the_command_line(tmp_path):
    frames = np.random.default_rng(0).normal(size=(10, 32, 32)) * 100 + 1000
    tifffile.imwrite(tmp_path / "m.tif", frames.astype(np.uint16))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xnormcorre.cli",
            "correct",
            str(tmp_path / "m.tif"),
            "-o",
            str(tmp_path / "c.nc"),
        ]
        + ["--dtype", "uint8", "--max-shifts", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "of the pixels written to" in ln]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("warning: ") and "outside the range of uint8 [0, 255]" in lines[0]
    assert "write float32" in lines[0]
    frac = float(lines[0].split("warning: ")[1].split("%")[0])
    assert frac > 99.0  # the corrected values are ~1000: every pixel saturates


def _shifts_file(path: Path, n: int, h: int, w: int) -> Path:
    import xarray as xr

    ds = xr.Dataset(
        {
            "shifts": (("time", "axis"), np.zeros((n, 2), np.float32)),
            "template": (("y", "x"), np.zeros((h, w), np.float32)),
        },
        coords={"time": np.arange(n), "axis": ["y", "x"]},
        attrs={"method": "rigid", "border": "copy"},
    )
    ds.to_netcdf(path)
    return path


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((20, 32, 64), r"a movie of 48 frames, not 20 and frames of 64x64 px, not 32x64 as IN"),
        ((20, 64, 64), r"a movie of 48 frames, not 20 as IN: they belong to another movie"),
        ((48, 32, 64), r"a movie of frames of 64x64 px, not 32x64 as IN"),
    ],
)
def test_apply_refuses_the_shifts_of_another_movie(tmp_path, no_compute, capsys, shape, message):
    """A 48-frame 64x64 run applied to a 20-frame movie would otherwise use the run's first
    20 shifts (both files' times start at 0)."""
    shifts = _shifts_file(tmp_path / "s.nc", 48, 64, 64)
    tifffile.imwrite(tmp_path / "m.tif", np.zeros(shape, np.uint16))
    err = _error(["apply", str(shifts), str(tmp_path / "m.tif"), "-o", str(tmp_path / "c.tif")], capsys)
    assert re.search(message, err), err
    assert str(shifts) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "s.nc"]


@pytest.mark.slow  # subprocesses that warp frames (JAX compile)
@pytest.mark.parametrize("suffix", [".h5", ".nc", ".tif"])
def test_full_disk_is_one_error_line_on_the_command_line(tmp_path, suffix):
    """On a 1 MiB tmpfs (root only): exit 1 with 'No space left on device' and the path, no
    crash in h5py's cleanup, nothing left on the disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        shifts = _shifts_file(tmp_path / "s.nc", 100, 64, 64)
        frames = np.random.default_rng(0).normal(size=(100, 64, 64)) * 100 + 1000
        tifffile.imwrite(tmp_path / "m.tif", frames.astype(np.uint16))  # 1.6 MB as float32
        target = mnt / f"c{suffix}"
        proc = subprocess.run(
            [sys.executable, "-m", "xnormcorre.cli", "apply", str(shifts), str(tmp_path / "m.tif")]
            + ["-o", str(target), "--quiet"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert proc.returncode == 1, proc.stderr  # not 139 (a crash)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "No space left on device" in proc.stderr and str(target) in proc.stderr
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
