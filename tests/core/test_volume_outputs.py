"""Volume and multi-plane results ``(time, z, y, x)`` through the writers, the summary and the QC plots."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.io.writers import to_netcdf
from xnormcorre.testing.volume import simulate_volume

SHAPE = (8, 32, 32)


@pytest.fixture(scope="module")
def sim():
    return simulate_volume(SHAPE, 6, max_shift=(1.0, 2.0, 2.0), n_cells=25, os=(2, 2, 2), seed=3)


@pytest.fixture(scope="module")
def planes(vol):
    return vol.normcorre.rigid(max_shifts=(4, 4), planes="independent")


@pytest.mark.parametrize("lazy", [False, True])
def test_to_tiff_writes_an_imagej_hyperstack(tmp_path, res, lazy):
    corrected = res.corrected.chunk({"time": 4}) if lazy else res.corrected
    p = xnormcorre.to_tiff(corrected, tmp_path / "v.tif", progress=False)
    with tifffile.TiffFile(p) as tif:
        assert tif.is_imagej and tif.series[0].axes == "TZYX"
    back = xnormcorre.open_movie(p)
    assert back.dims == ("time", "z", "y", "x")
    np.testing.assert_array_equal(back.values, res.corrected.values)
    # an integer dtype ImageJ cannot read: a shaped TIFF, same layout
    xnormcorre.to_tiff(
        res.corrected.transpose("time", "y", "x", "z"), tmp_path / "i.tif", dtype=np.int16, progress=False
    )
    arr = tifffile.imread(tmp_path / "i.tif")
    assert arr.shape == (6, *SHAPE) and arr.dtype == np.int16
    np.testing.assert_array_equal(arr, np.clip(np.rint(res.corrected.values), -(2**15), 2**15 - 1))


def test_resumable_write_of_a_volume_is_refused(tmp_path, res):
    with pytest.raises(ValueError, match=r"resume=True is not available for a volume or multi-plane movie"):
        xnormcorre.to_tiff(res.corrected, tmp_path / "r.tif", resume=True, progress=False)
    assert not list(tmp_path.iterdir())


def test_to_hdf5_and_netcdf_round_trip(tmp_path, res, planes):
    p = xnormcorre.to_hdf5(res.corrected, tmp_path / "v.h5", progress=False)
    with h5py.File(p) as f:
        assert f["mov"].shape == (6, *SHAPE)
        assert [d.label for d in f["mov"].dims] == ["time", "z", "y", "x"]
        np.testing.assert_array_equal(f["mov"][:], res.corrected.values)
    for name, result in (("volume", res), ("planes", planes)):
        to_netcdf(result, tmp_path / f"{name}.nc", progress=False)
        with xr.open_dataset(tmp_path / f"{name}.nc") as back:
            np.testing.assert_array_equal(back.corrected.values, result.corrected.values)
            np.testing.assert_array_equal(back.shifts.values, result.shifts.values)


def test_summary_is_computed_plane_by_plane(vol, res, planes):
    s = xnormcorre.metrics.summary(vol, res, flow=False)
    assert s.mean_correlation.dims == ("z", "stage") and s.sizes["z"] == SHAPE[0]
    np.testing.assert_array_equal(s.z.values, vol.z.values)
    assert s.attrs["crop"] == [4, 4] and s.attrs["n_frames"] == 6  # in-plane max_shifts
    one = xnormcorre.metrics.summary(vol.isel(z=3), res.corrected.isel(z=3), crop=4, flow=False)
    np.testing.assert_array_equal(s.mean_correlation.isel(z=3).values, one.mean_correlation.values)
    # registration raised the correlation with the mean in most planes
    gain = s.mean_correlation.sel(stage="corrected") - s.mean_correlation.sel(stage="raw")
    assert float((gain > 0).mean()) >= 0.75, gain.values
    p = xnormcorre.metrics.summary(vol, planes, flow=False)
    assert p.crispness.dims == ("z", "stage")
    with pytest.raises(ValueError, match="same number of planes"):
        xnormcorre.metrics.summary(vol, res.corrected.isel(z=slice(0, 4)), flow=False)


def test_qc_plots_of_volumes(vol, res, planes):
    pytest.importorskip("matplotlib")
    from xnormcorre.qc.plot import plot_before_after, plot_shifts

    fig = plot_shifts(res)
    assert [ax.get_ylabel() for ax in fig.axes] == ["z shift [plane]", "y shift [pixel]", "x shift [pixel]"]
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), res.shifts.sel(axis="z").values)
    fig = plot_shifts(planes)
    assert len(fig.axes) == 2 and sum(ln.get_gid() == "plane" for ln in fig.axes[0].lines) == SHAPE[0]
    fig = plot_before_after(vol, res)
    assert "maximum projection along z" in fig._suptitle.get_text()
    np.testing.assert_allclose(
        fig.axes[1].images[0].get_array(), res.corrected.max("z").mean("time").values, rtol=1e-6
    )
    fig = plot_before_after(vol.chunk({"time": 3}), res, plane=2)
    np.testing.assert_allclose(
        fig.axes[0].images[0].get_array(), vol.isel(z=2).mean("time").values, rtol=1e-6
    )
    with pytest.raises(ValueError, match="plane must be an integer"):
        plot_before_after(vol, res, plane=8)
