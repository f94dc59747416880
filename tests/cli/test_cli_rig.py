"""The command line on a two-channel, bidirectionally scanned ImageJ hyperstack, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import xarray as xr

from .._bidi import bidi_movie
from .test_cli import _clean_error, _ok, run_many

PHASE, T = 1.4, 40


def _write_rig_file(path: Path) -> np.ndarray:
    """A (time, channel, y, x) ImageJ hyperstack at 30 frames/s: channel 0 bright (structural),
    channel 1 dim (functional), same scene motion, odd lines displaced by PHASE.  Returns the motion."""
    t = np.arange(T)
    shifts = np.stack([2.0 * np.sin(t / 6), 1.5 * np.cos(t / 9)], axis=1)
    kw = dict(n_frames=T, shape=(64, 64), shifts=shifts)
    bright = bidi_movie(PHASE, photons=5.0, seed=20, **kw).values
    dim = bidi_movie(PHASE, photons=0.5, seed=21, **kw).values
    stack = np.stack([bright, dim], axis=1).astype(np.uint16)
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TCYX", "finterval": 1 / 30})
    return shifts


def test_two_channel_workflow(tmp_path):
    truth = _write_rig_file(tmp_path / "rig.tif")
    correct = ["correct", "rig.tif", "--channel", "1", "--reference-channel", "0", "--scan-phase", "auto"]
    info4, info1, run, no_channel, bad_name = run_many(
        [
            ["info", "rig.tif"],
            ["info", "rig.tif", "--channel", "1"],
            [*correct, "-o", "out.tif", "-q"],
            ["correct", "rig.tif", "-o", "x.tif"],
            ["correct", "rig.tif", "--channel", "red", "-o", "y.tif"],
        ],
        tmp_path,
    )
    # info on a 4-D file: the channels, the frame rate from the metadata
    out = _ok(info4).stdout
    assert "40 x 2 x 64 x 64 (time, channel, y, x)" in out and "channels:  2" in out
    assert "30 frames/s" in out
    out = _ok(info1).stdout
    assert "40 x 64 x 64 (time, y, x)" in out and "channel:   1" in out
    _clean_error(no_channel, "--channel", no_channel.args)
    _clean_error(bad_name, "channel='red'", bad_name.args)
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()

    # correct: the phase estimated on the structural channel, the shifts from it, applied to channel 1
    assert "scan phase:" in _ok(run).stdout
    with xr.open_dataset(tmp_path / "out_shifts.nc") as ds:
        assert abs(float(ds.scan_phase) - PHASE) <= 0.05
        assert ds.attrs["scan_phase_source"] == "estimated"
        est = ds.shifts.values
    err = (est - est.mean(0)) - (truth - truth.mean(0))
    assert float(np.sqrt((err**2).sum(1).mean())) < 0.1
    corrected = tifffile.imread(tmp_path / "out.tif")
    assert corrected.shape == (T, 64, 64)

    # apply re-applies the run's scan phase and shifts bit for bit; --scan-phase none does not
    again, plain = run_many(
        [
            ["apply", "out_shifts.nc", "rig.tif", "--channel", "1", "-o", "again.tif", "-q"],
            [
                "apply",
                "out_shifts.nc",
                "rig.tif",
                "--channel",
                "1",
                "--scan-phase",
                "none",
                "-o",
                "p.tif",
                "-q",
            ],
        ],
        tmp_path,
    )
    _ok(again)
    _ok(plain)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "again.tif"), corrected)
    assert not np.array_equal(tifffile.imread(tmp_path / "p.tif"), corrected)
