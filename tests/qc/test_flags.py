"""Quality-control flags (anchors.md §d item 13): at_max_shift, low_correlation, patch_jump."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

import xnormcorre
from xnormcorre.qc import quality_flags

FLAGS = ("at_max_shift", "low_correlation")


@pytest.fixture(scope="module")
def clean_movie() -> xr.DataArray:
    return xnormcorre.datasets.synthetic_movie(n_frames=40, shape=(64, 64), max_shift=2, seed=3)


def _check_flag_var(var: xr.DataArray, meaning: str) -> None:
    assert var.dtype == np.int8
    assert set(np.unique(var.values)) <= {0, 1}
    assert var.attrs["units"] == "1" and var.attrs["long_name"]
    assert var.attrs["flag_values"] == [0, 1]
    assert var.attrs["flag_meanings"] == f"ok {meaning}"
    for v in var.attrs.values():
        assert isinstance(v, (str, int, float, list))


def test_clean_movie_raises_no_flag(clean_movie):
    res = xnormcorre.rigid(clean_movie, max_shifts=5)
    for name in FLAGS:
        assert name in res
        _check_flag_var(res[name], name)
        assert res[name].dims == ("time",)
        assert int(res[name].sum()) == 0, name


def test_frame_beyond_max_shifts_is_flagged(clean_movie):
    movie = clean_movie.copy()
    # 1 px beyond the bound: the restricted peak sits on the bound (far beyond it, the
    # window holds no trace of the true peak and the estimate is meaningless)
    movie[15] = ndimage.shift(clean_movie.values[15], (6.0, 2.0), order=3, mode="nearest")
    res = xnormcorre.rigid(movie, max_shifts=5)
    assert float(res.shifts[15, 0]) == pytest.approx(5.0, abs=0.05)  # clipped at the bound
    assert np.flatnonzero(res.at_max_shift.values).tolist() == [15]
    assert "max_shifts = [5, 5]" in res.at_max_shift.attrs["comment"]


def test_noise_frame_has_low_correlation(clean_movie):
    movie = clean_movie.copy()
    rng = np.random.default_rng(0)
    movie[30] = rng.normal(float(clean_movie.mean()), float(clean_movie.std()), size=(64, 64))
    res = xnormcorre.rigid(movie, max_shifts=5)
    assert np.flatnonzero(res.low_correlation.values).tolist() == [30]
    assert float(res.correlation[30]) < 0.2


def test_netcdf_round_trip_of_flags(clean_movie, tmp_path):
    res = xnormcorre.rigid(clean_movie.isel(time=slice(0, 12)), max_shifts=5)
    path = tmp_path / "flags.nc"
    res.to_netcdf(path)
    with xr.open_dataset(path) as back:
        for name in FLAGS:
            xr.testing.assert_identical(back[name].load(), res[name])
            assert back[name].dtype == np.int8


def _rigid_ds(shifts, corr) -> xr.Dataset:
    return xr.Dataset(
        {
            "shifts": (("time", "axis"), np.asarray(shifts, float)),
            "correlation": ("time", np.asarray(corr, float)),
        },
        coords={"axis": ["y", "x"], "time": np.arange(len(corr))},
    )


def test_at_max_shift_threshold_is_half_pixel_below_bound():
    ds = _rigid_ds([[5.49, 0.0], [5.5, 0.0], [0.0, -2.4], [0.0, 2.51], [0.0, 3.0], [np.nan, 0]], [0.9] * 6)
    flags = quality_flags(ds, max_shifts=(6, 3))
    assert flags.at_max_shift.values.tolist() == [0, 1, 0, 1, 1, 0]
    assert quality_flags(ds, max_shifts=6).at_max_shift.values.tolist() == [0, 1, 0, 0, 0, 0]


def test_low_correlation_rules():
    rng = np.random.default_rng(1)
    corr = 0.9 + 0.01 * rng.standard_normal(50)
    corr[[7, 20]] = [0.5, np.nan]
    ds = _rigid_ds(np.zeros((50, 2)), corr)
    assert np.flatnonzero(quality_flags(ds, max_shifts=5).low_correlation.values).tolist() == [7, 20]
    # a dip of 0.03 is many MADs here, but below the 0.05 floor of the robust spread
    corr2 = np.full(50, 0.9)
    corr2[::2] += 0.001
    corr2[3] = 0.87
    assert int(quality_flags(_rigid_ds(np.zeros((50, 2)), corr2), max_shifts=5).low_correlation.sum()) == 0
    # an absolute threshold
    flags = quality_flags(ds, max_shifts=5, corr_threshold=0.9)
    np.testing.assert_array_equal(flags.low_correlation.values, ~(corr >= 0.9))
    assert "corr_threshold = 0.9" in flags.low_correlation.attrs["comment"]
    # k: a smaller k flags more
    assert int(quality_flags(ds, max_shifts=5, k=1.0).low_correlation.sum()) > 2


def _pw_ds(s: np.ndarray, rigid: np.ndarray | None = None) -> xr.Dataset:
    t, py, px, _ = s.shape
    ds = xr.Dataset(
        {"shifts": (("time", "patch_y", "patch_x", "axis"), s)},
        coords={
            "axis": ["y", "x"],
            "patch_y": 16.0 + 32 * np.arange(py),
            "patch_x": 16.0 + 32 * np.arange(px),
        },
    )
    if rigid is not None:
        ds["rigid_shifts"] = (("time", "axis"), rigid)
    ds["correlation"] = (("time", "patch_y", "patch_x"), np.full((t, py, px), 0.8))
    return ds


def test_patch_jump_flags_only_the_jumping_patch():
    t, py, px = 6, 4, 5
    yy, xx = np.meshgrid(np.arange(py), np.arange(px), indexing="ij")
    smooth = np.stack([0.3 * yy, -0.3 * xx], -1)  # a smooth field, 0.3 px per patch
    s = np.broadcast_to(smooth, (t, py, px, 2)).copy() + np.arange(t)[:, None, None, None] * 0.5
    rigid = s.mean(axis=(1, 2))
    s[2, 1, 3] += [2.0, -1.0]  # one patch jumps at frame 2
    s[4, 0, 0] += [0.0, 1.5]  # a corner patch at frame 4
    flags = quality_flags(_pw_ds(s, rigid), max_shifts=10)
    _check_flag_var(flags.patch_jump, "patch_jump")
    assert flags.patch_jump.dims == ("time", "patch_y", "patch_x")
    assert np.argwhere(flags.patch_jump.values).tolist() == [[2, 1, 3], [4, 0, 0]]
    assert "low_correlation" in flags and int(flags.low_correlation.sum()) == 0  # averaged over patches
    # at_max_shift uses the rigid shifts for piecewise results
    rigid_hi = rigid.copy()
    rigid_hi[5, 0] = 9.6
    assert quality_flags(_pw_ds(s, rigid_hi), max_shifts=10).at_max_shift.values.tolist() == [0] * 5 + [1]
    # a smooth but curved field: not flagged at 1 px, flagged at a strict threshold
    curved = s + (0.6 * ((yy - 1.5) / 1.5) ** 2)[None, :, :, None]
    assert np.argwhere(quality_flags(_pw_ds(curved, rigid), max_shifts=10).patch_jump.values).tolist() == [
        [2, 1, 3],
        [4, 0, 0],
    ]
    assert int(quality_flags(_pw_ds(curved, rigid), max_shifts=10, jump_threshold=0.2).patch_jump.sum()) > 2
    no_rigid = quality_flags(_pw_ds(s), max_shifts=10)
    assert np.argwhere(no_rigid.patch_jump.values).tolist() == [[2, 1, 3], [4, 0, 0]]


def test_single_patch_is_compared_with_rigid():
    s = np.zeros((3, 1, 1, 2))
    s[1, 0, 0] = [1.5, 0.0]
    flags = quality_flags(_pw_ds(s, np.zeros((3, 2))), max_shifts=5)
    assert flags.patch_jump.values.ravel().tolist() == [0, 1, 0]


def test_flags_lazy_for_dask_and_equal_to_eager():
    rng = np.random.default_rng(2)
    s = rng.normal(scale=0.2, size=(20, 3, 3, 2))
    s[5, 1, 1] += 3
    ds = _pw_ds(s, s.mean(axis=(1, 2)))
    ds["correlation"] = ("time", 0.9 + 0.01 * rng.standard_normal(20))
    ds["correlation"][9] = 0.1
    eager = quality_flags(ds, max_shifts=4)
    lazy = quality_flags(ds.chunk({"time": 6}), max_shifts=4)
    for name in ("at_max_shift", "low_correlation", "patch_jump"):
        assert lazy[name].chunks is not None, name
    xr.testing.assert_identical(lazy.compute(), eager)
    assert np.flatnonzero(eager.low_correlation.values).tolist() == [9]
    assert np.argwhere(eager.patch_jump.values).tolist() == [[5, 1, 1]]


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"max_shifts": 0}, ValueError, "max_shifts"),
        ({"max_shifts": 2.5}, TypeError, "max_shifts"),
        ({"max_shifts": 5, "corr_threshold": 1.5}, ValueError, "corr_threshold"),
        ({"max_shifts": 5, "corr_threshold": "low"}, TypeError, "corr_threshold"),
        ({"max_shifts": 5, "k": 0}, ValueError, "k"),
        ({"max_shifts": 5, "jump_threshold": -1}, ValueError, "jump_threshold"),
    ],
)
def test_bad_parameters(kw, exc, match):
    with pytest.raises(exc, match=match):
        quality_flags(_rigid_ds(np.zeros((3, 2)), [0.9] * 3), **kw)


def test_bad_dataset():
    with pytest.raises(TypeError, match="ds"):
        quality_flags(xr.DataArray(np.zeros(3)), max_shifts=5)
    with pytest.raises(ValueError, match="shifts"):
        quality_flags(xr.Dataset({"correlation": ("time", [0.9])}), max_shifts=5)
    with pytest.raises(ValueError, match="axis"):
        quality_flags(xr.Dataset({"shifts": (("time", "c"), np.zeros((3, 3)))}), max_shifts=5)
