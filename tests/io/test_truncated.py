"""Truncated or unreadable movie files fail at open, naming the file and the cause."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre

FRAMES = (np.random.default_rng(0).random((20, 32, 32)) * 1000).astype(np.uint16)


@pytest.mark.parametrize("compression", ["zlib", None])
@pytest.mark.parametrize("imagej", [False, True])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_tiff_is_refused_at_open(tmp_path, compression, imagej, keep):
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, FRAMES, compression=compression, imagej=imagej)
    whole = xnormcorre.open_movie(p)
    np.testing.assert_array_equal(whole.values, FRAMES)
    whole.close()
    os.truncate(p, int(os.path.getsize(p) * keep))
    try:
        movie = xnormcorre.open_movie(p)
    except ValueError as exc:
        assert "truncated" in str(exc) and str(p) in str(exc)
        return
    # only an uncompressed ImageJ file cut in its trailing page directories still holds every frame
    assert (compression, imagej, keep) == (None, True, 0.97)
    np.testing.assert_array_equal(movie.values, FRAMES)
    movie.close()


def test_truncated_tiff_in_a_list_names_that_file(tmp_path):
    good, bad = tmp_path / "a1.tif", tmp_path / "a2.tif"
    tifffile.imwrite(good, FRAMES, compression="zlib")
    tifffile.imwrite(bad, FRAMES, compression="zlib")
    os.truncate(bad, os.path.getsize(bad) // 2)
    with pytest.raises(ValueError, match="a2.tif' is truncated"):
        xr.open_dataset([good, bad], engine="xnormcorre_tiff")


@pytest.fixture
def open_dir():
    """A folder every user may enter (pytest's own tmp folders are private to their owner)."""
    d = Path(tempfile.mkdtemp(prefix="xnc-perm-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unreadable_file_says_permission_denied(open_dir):
    """As an unprivileged user (root reads every file): 'Permission denied', not 'not a TIFF'."""
    p = open_dir / "m.tif"
    tifffile.imwrite(p, FRAMES)
    os.chmod(p, 0o200)
    if os.geteuid() != 0:
        with pytest.raises(PermissionError, match="Permission denied"):
            xnormcorre.open_movie(p)
        return
    code = (
        "import os, sys, h5py, tifffile, xnormcorre, xnormcorre.io.tiff, xnormcorre.io.hdf5\n"
        "os.setgid(65534); os.setuid(65534)  # nobody, after the imports (the stdlib may be private)\n"
        "try:\n    xnormcorre.open_movie(sys.argv[1])\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(p)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if "PermissionError" not in done.stdout and "Operation not permitted" in done.stderr:
        pytest.skip("cannot switch to an unprivileged user here")
    assert done.stdout.startswith("PermissionError"), done.stdout + done.stderr
    assert "Permission denied" in done.stdout and str(p) in done.stdout
