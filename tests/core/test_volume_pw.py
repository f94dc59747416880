"""3-D piecewise-rigid registration of volumetric movies (time, z, y, x): patches along z too."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xnormcorre
from xnormcorre.io.writers import to_netcdf
from xnormcorre.testing.volume import simulate_deformed_volume

SHAPE = (8, 48, 48)
KW = dict(max_shifts=(2, 4, 4), strides=(4, 16, 16), overlaps=(2, 8, 8), max_deviation_rigid=(1, 3, 3))


@pytest.fixture(scope="module")
def sim():
    return simulate_deformed_volume(
        SHAPE, 8, max_shift=(1.0, 2.0, 2.0), deformation=(0.5, 1.0, 1.0), n_cells=120, os=(2, 2, 2), seed=3
    )


@pytest.fixture(scope="module")
def res(vol, sim):
    """Piecewise rigid (overrides the rigid ``res`` of the conftest)."""
    return vol.normcorre.pwrigid(template=sim.template, **KW)


def _truth(res, sim):
    starts = [res[f"patch_{d}_start"].values for d in "zyx"]
    size = [int(res[f"patch_{d}_stop"][0] - res[f"patch_{d}_start"][0]) for d in "zyx"]
    return sim.patch_displacement(starts, size)


def test_patch_shifts_recover_a_smooth_3d_deformation(vol, sim, res):
    """Pixel-integrated volumes (Poisson + read noise) under a smooth 3-D deformation: the patch
    shifts are the true mean displacement of each patch within 0.1 plane/px RMSE per axis (measured
    0.06, 0.05, 0.04), and the corrected volumes match the template better than rigid correction."""
    assert res.shifts.dims == ("time", "patch_z", "patch_y", "patch_x", "axis")
    assert res.shifts.shape == (8, 2, 3, 3, 3) and list(res.axis.values) == ["z", "y", "x"]
    np.testing.assert_array_equal(res.patch_z.values, [2.5, 4.5])  # patch centres, planes
    np.testing.assert_array_equal(res.patch_y_start.values, [0, 16, 24])
    assert res.rigid_shifts.dims == ("time", "axis") and res.corrected.dims == ("time", "z", "y", "x")
    for name in ("corrected", "template", "correlation", "shifts", "rigid_shifts", "patch_at_max_deviation"):
        assert "long_name" in res[name].attrs and "units" in res[name].attrs
    assert res.attrs["method"] == "pwrigid" and res.attrs["planes"] == "volume"
    assert res.attrs["strides"] == [4, 16, 16] and res.attrs["max_deviation_rigid"] == [1, 3, 3]
    assert res.attrs["qc_verdict"] == "ok" and int(res.patch_at_max_deviation.sum()) == 0
    err = res.shifts.values - _truth(res, sim)
    rmse = np.sqrt((err**2).mean(axis=(0, 1, 2, 3)))
    assert rmse.max() <= 0.1, rmse
    rigid = vol.normcorre.rigid(template=sim.template, max_shifts=(2, 4, 4))
    assert float(res.correlation.mean()) > float(rigid.correlation.mean()) + 0.02
    # patch shifts stay within rigid ± max_deviation_rigid
    dev = np.abs(res.shifts - res.rigid_shifts).max(("time", "patch_z", "patch_y", "patch_x")).values
    assert (dev <= np.array([1, 3, 3]) + 1e-5).all(), dev


def test_lazy_equals_eager_apply_shifts_and_netcdf(tmp_path, vol, sim, res):
    lazy = vol.chunk({"time": 3}).normcorre.pwrigid(template=sim.template, **KW)
    assert lazy.corrected.chunks is not None
    np.testing.assert_array_equal(lazy.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(lazy.corrected.values, res.corrected.values)
    np.testing.assert_array_equal(xnormcorre.apply_shifts(vol, res).values, res.corrected.values)
    p = to_netcdf(res, tmp_path / "pw.nc", progress=False)
    with xr.open_dataset(p) as back:
        np.testing.assert_array_equal(back.shifts.values, res.shifts.values)
        np.testing.assert_array_equal(back.patch_z_stop.values, res.patch_z_stop.values)
        again = xnormcorre.apply_shifts(vol.chunk({"time": 4}), back.shifts.load())
    assert again.chunks is not None
    np.testing.assert_array_equal(again.values, res.corrected.values)
    with pytest.raises(ValueError, match="belong to another movie"):
        xnormcorre.apply_shifts(vol.isel(x=slice(0, 40)), res.shifts)


def test_reference_channel(vol, sim, res):
    other = (vol * 0.5 + 10.0).rename("green")
    out = other.normcorre.pwrigid(template=sim.template, reference=vol, **KW)
    np.testing.assert_array_equal(out.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(out.corrected.values, xnormcorre.apply_shifts(other, res).values)
    assert out.attrs["shifts_estimated_on"] == "reference (movie)"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(strides=(16, 16)), r"strides must be an integer or have 3 entries \('z', 'y', 'x'\)"),
        (dict(overlaps=(2, 8, 8, 8)), r"overlaps must be an integer or have 3 entries"),
        (dict(max_deviation_rigid=(3, 3)), r"max_deviation_rigid must be an integer or have 3 entries"),
        (
            dict(strides=(8, 16, 16)),
            r"strides \+ overlaps = 10 along 'z' is larger than the volume \(8 planes\)",
        ),
        (
            dict(max_deviation_rigid=(2, 3, 3)),
            r"max_deviation_rigid \+ 1 must be smaller than half the patch",
        ),
        (dict(overlaps=(4, 8, 8)), r"overlaps must be smaller than strides along 'z'"),
        (dict(max_shifts=(4, 4)), r"max_shifts must have 3 entries"),
    ],
)
def test_bad_grid_names_the_parameter(vol, kw, match):
    with pytest.raises(ValueError, match=match):
        vol.normcorre.pwrigid(**{**KW, **kw})


def test_upsample_factor_grid_warns_and_has_no_effect(vol, sim, res):
    with pytest.warns(UserWarning, match="upsample_factor_grid=16 has no effect") as rec:
        again = vol.normcorre.pwrigid(template=sim.template, upsample_factor_grid=16, **KW)
    assert rec[0].filename == __file__
    np.testing.assert_array_equal(again.shifts.values, res.shifts.values)


@pytest.mark.slow
def test_estimated_template_and_timing(vol, sim):
    """Template estimated (rigid passes, then a piecewise-rigid pass): patch RMSE <= 0.15 after
    removing the template's own offset (the median error per patch)."""
    out = vol.normcorre.pwrigid(**KW)
    assert out.attrs["template_source"] == "estimated"
    err = out.shifts.values - _truth(out, sim)
    err -= np.median(err, axis=0)
    rmse = np.sqrt((err**2).mean(axis=(0, 1, 2, 3)))
    assert rmse.max() <= 0.15, rmse
