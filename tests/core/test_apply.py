"""``apply_shifts``: re-applying rigid shifts equals ``rigid(...).corrected`` bit for bit, lazily."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.core import apply as apply_mod


class CountingScheduler:
    """Dask scheduler that counts computes (as xarray's ``raise_if_dask_computes``)."""

    def __init__(self):
        self.computes = 0

    def __call__(self, dsk, keys, **kwargs):
        self.computes += 1
        return dask.get(dsk, keys, **kwargs)


@pytest.fixture(scope="module")
def movie():
    return xnormcorre.datasets.synthetic_movie(n_frames=40, shape=(64, 64), max_shift=3, seed=3)


@pytest.fixture(scope="module")
def results(movie):
    return {b: xnormcorre.rigid(movie, max_shifts=5, border=b) for b in ("copy", "nan", "zero", "min")}


@pytest.mark.parametrize("border", ["copy", "nan", "zero", "min"])
def test_equals_rigid_bit_for_bit(movie, results, border):
    res = results[border]
    again = xnormcorre.apply_shifts(movie, res, border=border)  # min_mov from the result's attrs
    xr.testing.assert_identical(again, res.corrected)
    from_array = xnormcorre.apply_shifts(movie, res.shifts, border=border, min_mov=res.attrs.get("min_mov"))
    np.testing.assert_array_equal(from_array.values, res.corrected.values)
    lazy = xnormcorre.apply_shifts(
        movie.chunk({"time": 7}), res.shifts.values, border=border, min_mov=res.attrs.get("min_mov")
    )
    assert lazy.chunks[0] == (7,) * 5 + (5,)
    np.testing.assert_array_equal(lazy.values, res.corrected.values)
    if border == "nan":
        assert np.isnan(again.values).any()


def test_min_border_fill_value(movie, results):
    res = results["min"]
    out = xnormcorre.apply_shifts(movie, res.shifts, border="min", min_mov=-123.0)
    filled = out.values != res.corrected.values
    assert filled.any()
    assert np.all(out.values[filled] == -123.0)


def test_lazy_on_dask_and_computes_only_selected_chunks(movie, results, monkeypatch):
    res = results["copy"]
    frames: list[int] = []
    orig = apply_mod.apply_rigid_shifts

    def spy(block, shifts, **kw):
        frames.append(len(block))
        return orig(block, shifts, **kw)

    monkeypatch.setattr(apply_mod, "apply_rigid_shifts", spy)
    sched = CountingScheduler()
    with dask.config.set(scheduler=sched):
        lazy = xnormcorre.apply_shifts(movie.chunk({"time": 10}), res.shifts)
    assert sched.computes == 0 and frames == []
    assert isinstance(lazy.data, dask.array.Array)
    part = lazy.isel(time=slice(12, 15)).values
    assert frames == [10]  # the one chunk holding frames 12..14
    np.testing.assert_array_equal(part, res.corrected.values[12:15])


def test_lazy_shifts_of_a_lazy_result_stay_lazy(movie):
    chunked = movie.chunk({"time": 10})
    res = xnormcorre.rigid(chunked, max_shifts=5)
    sched = CountingScheduler()
    with dask.config.set(scheduler=sched):
        again = xnormcorre.apply_shifts(chunked, res)
    assert sched.computes == 0
    np.testing.assert_array_equal(again.values, res.corrected.values)


def test_netcdf_round_trip_of_shifts(movie, results, tmp_path):
    res = results["copy"]
    p = tmp_path / "shifts.nc"
    res.drop_vars("corrected").to_netcdf(p)
    with xr.open_dataset(p) as saved:
        assert saved.sizes["time"] == 40 and "corrected" not in saved
        np.testing.assert_array_equal(saved.shifts.values, res.shifts.values)
        assert saved.shifts.attrs["units"] == "pixel"
        xr.testing.assert_identical(xnormcorre.apply_shifts(movie, saved), res.corrected)
        xr.testing.assert_identical(movie.normcorre.apply_shifts(saved.shifts), res.corrected)


def test_accessor_is_the_function(movie, results):
    res = results["zero"]
    xr.testing.assert_identical(
        movie.normcorre.apply_shifts(res, border="zero"), xnormcorre.apply_shifts(movie, res, border="zero")
    )


def test_time_subset_selects_matching_shifts(movie, results):
    res = results["copy"]
    sub = xnormcorre.apply_shifts(movie.isel(time=slice(10, 20)), res)
    np.testing.assert_array_equal(sub.values, res.corrected.values[10:20])
    np.testing.assert_array_equal(sub.time.values, np.arange(10, 20))


def test_axis_order_and_sign(movie):
    """shift = displacement of content; corrected = frame moved by -shift; axis labels are honoured."""
    tmpl = movie.isel(time=0).values.astype(np.float32)
    frames = np.stack([tmpl, np.roll(tmpl, (2, -3), axis=(0, 1))])  # content moved by (+2, -3)
    sh = xr.DataArray([[0.0, 0.0], [2.0, -3.0]], dims=("time", "axis"), coords={"axis": ["y", "x"]})
    out = xnormcorre.apply_shifts(frames, sh).values
    inner = (slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(out[1][inner], tmpl[inner], rtol=1e-4, atol=1e-2)
    swapped = sh.isel(axis=[1, 0])  # axis = ["x", "y"]: selected back by label
    np.testing.assert_array_equal(xnormcorre.apply_shifts(frames, swapped).values, out)


@pytest.mark.parametrize(
    ("shifts", "error", "match"),
    [
        (xr.DataArray(np.zeros((40, 3)), dims=("time", "foo")), ValueError, "dims"),
        (np.full((40, 2), np.nan), ValueError, "NaN"),
        (np.full((40, 2), 40.0), ValueError, "half the frame"),
        (np.zeros((39, 2)), ValueError, "39 frames but the movie has 40"),
        (np.zeros((40, 3)), ValueError, r"\(n_frames, 2\)"),
        (xr.Dataset({"template": (("y", "x"), np.zeros((64, 64)))}), ValueError, "without a 'shifts'"),
        (
            xr.DataArray(np.zeros((40, 2, 2, 2)), dims=("time", "patch_y", "patch_x", "axis")),
            ValueError,
            "patch-centre coordinate",
        ),
        (
            xr.Dataset({"shifts": (("time", "patch_y", "patch_x", "axis"), np.zeros((40, 2, 2, 2)))}),
            ValueError,
            "patch-centre coordinate",
        ),
        (
            xr.DataArray(np.zeros((40, 2)), dims=("time", "axis"), coords={"axis": ["a", "b"]}),
            ValueError,
            "'y' and 'x'",
        ),
    ],
)
def test_bad_shifts_are_refused(movie, shifts, error, match):
    with pytest.raises(error, match=match):
        xnormcorre.apply_shifts(movie, shifts)


def test_bad_parameters_are_refused(movie, results):
    with pytest.raises(ValueError, match="border"):
        xnormcorre.apply_shifts(movie, results["copy"], border="wrap")
    with pytest.raises(ValueError, match="min_mov"):
        xnormcorre.apply_shifts(movie, results["copy"], border="min", min_mov=float("inf"))
    with pytest.raises(TypeError, match="batch_size"):
        xnormcorre.apply_shifts(movie, results["copy"], batch_size=2.5)
    other = movie.assign_coords(time=movie.time + 1000)
    with pytest.raises(ValueError, match="time coordinates"):
        xnormcorre.apply_shifts(other, results["copy"])


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
def test_issue_snippet(fmt, synthetic_tiff, tmp_path):
    """Every line of the issue's snippet, on a TIFF and on an HDF5 file."""
    src, arr = synthetic_tiff
    if fmt == "hdf5":
        src = xnormcorre.to_hdf5(
            xr.DataArray(arr, dims=("time", "y", "x")), tmp_path / "s.h5", dtype=np.uint16, progress=False
        )
        ds = xr.open_dataset(src, engine="xnormcorre_hdf5", dataset="mov", chunks={"time": 20})
    else:
        ds = xr.open_dataset(src, engine="xnormcorre_tiff", chunks={"time": 20})
    np.testing.assert_array_equal(ds.movie.values, arr)
    movie = xnormcorre.open_movie(src)
    res = movie.normcorre.rigid(max_shifts=(4, 4))
    assert isinstance(res.corrected.data, dask.array.Array)
    res.drop_vars("corrected").to_netcdf(tmp_path / "shifts.nc")
    out = xnormcorre.to_tiff(res.corrected, tmp_path / "corrected.tif", bigtiff=True, progress=False)
    res.corrected.to_zarr(tmp_path / "corrected.zarr", consolidated=False)
    res.to_netcdf(tmp_path / "all.nc")
    shifts = xr.open_dataset(tmp_path / "shifts.nc")
    again = xnormcorre.apply_shifts(movie, shifts)
    corrected = res.corrected.values
    np.testing.assert_array_equal(again.values, corrected)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff
        np.testing.assert_array_equal(tif.asarray(), corrected)
    np.testing.assert_array_equal(
        xr.open_zarr(tmp_path / "corrected.zarr", consolidated=False).corrected.values, corrected
    )
    with xr.open_dataset(tmp_path / "all.nc") as all_nc:
        np.testing.assert_array_equal(all_nc.corrected.values, corrected)
    eager = xnormcorre.rigid(movie.load(), max_shifts=(4, 4))
    np.testing.assert_array_equal(eager.shifts.values, shifts.shifts.values)
    shifts.close()


# ------------------------------------------------------------------ piecewise rigid, Datasets
PW_KW = {"max_shifts": 4, "strides": (24, 24), "overlaps": (12, 12), "max_deviation_rigid": 2}


@pytest.mark.parametrize("border", ["copy", "nan"])
def test_pw_shifts_reapplied_equal_pwrigid(movie, border, tmp_path):
    res = xnormcorre.pwrigid(movie, border=border, **PW_KW)
    again = xnormcorre.apply_shifts(movie, res, border=border)
    np.testing.assert_array_equal(again.values, res.corrected.values)
    path = tmp_path / "pw_shifts.nc"
    res.drop_vars("corrected").to_netcdf(path)
    with xr.open_dataset(path) as saved:
        lazy = movie.chunk({"time": 9}).normcorre.apply_shifts(saved, border=border)
        assert lazy.chunks is not None
        np.testing.assert_array_equal(lazy.values, res.corrected.values)


def test_pw_shift_field_moves_content(movie):
    """A uniform patch-shift field is a rigid shift: same as the rigid applier inside the frame."""
    res = xnormcorre.pwrigid(movie.isel(time=slice(0, 4)), **PW_KW)
    uniform = xr.full_like(res.shifts, 0.0)
    uniform.loc[{"axis": "y"}] = 1.0
    uniform.loc[{"axis": "x"}] = -2.0
    pw = xnormcorre.apply_shifts(movie.isel(time=slice(0, 4)), uniform).values
    rig = xnormcorre.apply_shifts(movie.isel(time=slice(0, 4)), np.tile([[1.0, -2.0]], (4, 1))).values
    inner = (slice(None), slice(4, -4), slice(4, -4))
    np.testing.assert_allclose(pw[inner], rig[inner], rtol=1e-4, atol=1e-3)


def test_dataset_with_channels(movie, results):
    rng = np.random.default_rng(0)
    green = movie.copy(data=movie.values * 0.5 + rng.normal(size=movie.shape).astype(np.float32))
    stacked = xr.concat([movie, green], dim="channel").assign_coords(channel=["red", "green"])
    ds = xr.Dataset({"movie": stacked, "red": movie, "label": ("time", np.arange(movie.sizes["time"]))})
    out = xnormcorre.apply_shifts(ds, results["copy"].shifts)
    assert isinstance(out, xr.Dataset) and out.movie.dims == stacked.dims
    np.testing.assert_array_equal(out.movie.sel(channel="red").values, results["copy"].corrected.values)
    np.testing.assert_array_equal(
        out.movie.sel(channel="green").values, xnormcorre.apply_shifts(green, results["copy"].shifts).values
    )
    np.testing.assert_array_equal(out.red.values, results["copy"].corrected.values)
    np.testing.assert_array_equal(out.label.values, ds.label.values)  # untouched
    with pytest.raises(ValueError, match="without a \\(time, y, x\\) variable"):
        xnormcorre.apply_shifts(xr.Dataset({"label": ds.label}), results["copy"].shifts)
