"""``xnormcorre correct`` on an ImageJ TZYX hyperstack: 3-D rigid registration end to end."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.cli import main
from xnormcorre.testing.volume import simulate_volume

SHAPE = (8, 32, 32)


@pytest.fixture(scope="module")
def volume_tif(tmp_path_factory):
    sim = simulate_volume(SHAPE, 6, max_shift=(1.0, 2.0, 2.0), n_cells=25, os=(2, 2, 2), seed=3)
    p = tmp_path_factory.mktemp("vol") / "vol.tif"
    tifffile.imwrite(p, sim.frames.astype(np.float32), imagej=True, metadata={"axes": "TZYX"})
    return p, sim


def test_correct_a_tzyx_tiff(volume_tif, tmp_path, capsys):
    p, sim = volume_tif
    out = tmp_path / "out.tif"
    argv = [
        "correct",
        str(p),
        "-o",
        str(out),
        "--max-shifts",
        "2",
        "4",
        "4",
        "--chunk",
        "4",
        "--metrics",
        "-q",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "corrected 6 volumes of 8x32x32 px" in printed and "rigid shifts: z [" in printed
    expected = xnormcorre.rigid(sim.frames.astype(np.float32), max_shifts=(2, 4, 4))
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TZYX"
        np.testing.assert_array_equal(tif.asarray(), expected.corrected.values)
    with xr.open_dataset(tmp_path / "out_shifts.nc") as saved:
        assert saved.shifts.dims == ("time", "axis") and saved.axis.values.tolist() == ["z", "y", "x"]
        assert list(saved.attrs["max_shifts"]) == [2, 4, 4]
        np.testing.assert_array_equal(saved.shifts.values, expected.shifts.values)
        np.testing.assert_array_equal(saved.at_max_shift.values, expected.at_max_shift.values)
    # the saved shifts applied to the movie again: the same corrected volumes
    applied = tmp_path / "applied.tif"
    assert main(["apply", str(tmp_path / "out_shifts.nc"), str(p), "-o", str(applied), "-q"]) == 0
    assert "to 6 volumes of 8x32x32 px" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(applied), expected.corrected.values)


def test_max_shifts_takes_three_values_for_a_volume(volume_tif, tmp_path, capsys):
    p, _ = volume_tif
    assert main(["correct", str(p), "-o", str(tmp_path / "a.tif"), "--max-shifts", "4", "4", "-q"]) != 0
    assert "--max-shifts takes 3 integers (Z Y X) for a volume (8 planes along 'z'), got 2: 4 4" in (
        capsys.readouterr().err
    )
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((4, 32, 32), np.float32), photometric="minisblack")
    assert (
        main(["correct", str(flat), "-o", str(tmp_path / "b.tif"), "--max-shifts", "2", "4", "4", "-q"]) != 0
    )
    assert "3 (Z Y X) only for a volume" in capsys.readouterr().err


def test_correct_a_volume_piecewise_rigid_and_apply(volume_tif, tmp_path, capsys):
    """--pw-rigid on a TZYX hyperstack: 3-D patches (--strides/--overlaps Z Y X), the same
    numbers as xnormcorre.pwrigid, and the saved patch shifts applied again give the same volumes."""
    p, sim = volume_tif
    out = tmp_path / "pw.tif"
    grid = ["--strides", "4", "16", "16", "--overlaps", "2", "8", "8", "--max-deviation-rigid", "1"]
    assert (
        main(["correct", str(p), "-o", str(out), "--pw-rigid", "--max-shifts", "2", "4", "4", *grid, "-q"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "pwrigid: corrected 6 volumes of 8x32x32 px" in printed and "patch at max deviation" in printed
    expected = xnormcorre.pwrigid(
        sim.frames.astype(np.float32),
        max_shifts=(2, 4, 4),
        strides=(4, 16, 16),
        overlaps=(2, 8, 8),
        max_deviation_rigid=1,
    )
    np.testing.assert_array_equal(tifffile.imread(out), expected.corrected.values)
    with xr.open_dataset(tmp_path / "pw_shifts.nc") as saved:
        assert saved.shifts.dims == ("time", "patch_z", "patch_y", "patch_x", "axis")
        np.testing.assert_array_equal(saved.shifts.values, expected.shifts.values)
        np.testing.assert_array_equal(
            saved.patch_at_max_deviation.values, expected.patch_at_max_deviation.values
        )
    applied = tmp_path / "applied.tif"
    assert main(["apply", str(tmp_path / "pw_shifts.nc"), str(p), "-o", str(applied), "-q"]) == 0
    np.testing.assert_array_equal(tifffile.imread(applied), expected.corrected.values)
    assert main(
        ["correct", str(p), "-o", str(tmp_path / "x.tif"), "--pw-rigid", "--max-shifts", "2", "4", "4", "-q"]
    )
    assert "--strides takes 3 integers (Z Y X) for 3-D piecewise-rigid registration of a volume" in (
        capsys.readouterr().err
    )


def test_planes_independent_registers_each_plane_in_2d(volume_tif, tmp_path, capsys):
    p, sim = volume_tif
    out = tmp_path / "planes.tif"
    argv = ["correct", str(p), "-o", str(out), "--planes", "independent", "--max-shifts", "4", "4", "-q"]
    assert main(argv) == 0
    expected = xnormcorre.rigid(sim.frames.astype(np.float32), max_shifts=(4, 4), planes="independent")
    np.testing.assert_array_equal(tifffile.imread(out), expected.corrected.values)
    with xr.open_dataset(tmp_path / "planes_shifts.nc") as saved:
        assert saved.shifts.dims == ("time", "z", "axis") and saved.attrs["planes"] == "independent"
        np.testing.assert_array_equal(saved.shifts.values, expected.shifts.values)
    capsys.readouterr()
    bad = [
        "correct",
        str(p),
        "-o",
        str(tmp_path / "b.tif"),
        "--planes",
        "independent",
        "--max-shifts",
        "2",
        "4",
        "4",
    ]
    assert main([*bad, "-q"]) != 0
    assert "--max-shifts takes 1 or 2 integers (Y [X]) with --planes independent" in capsys.readouterr().err
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((4, 32, 32), np.float32), photometric="minisblack")
    assert main(["correct", str(flat), "-o", str(tmp_path / "c.tif"), "--planes", "volume", "-q"]) != 0
    assert "--planes volume applies to a movie with a plane dim" in capsys.readouterr().err
