"""``apply_shifts`` refuses what it cannot apply correctly: lazy NaN or huge shifts, corrupt
attributes, shifts of another movie; it aligns labels by name, never by position."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xnormcorre

T, H, W = 24, 64, 64


@pytest.fixture(scope="module")
def movie():
    return xnormcorre.datasets.synthetic_movie(n_frames=T, shape=(H, W), max_shift=2, seed=5)


@pytest.fixture(scope="module")
def rigid(movie):
    return xnormcorre.rigid(movie, max_shifts=4)


@pytest.fixture(scope="module")
def pw(movie):
    return xnormcorre.pwrigid(movie, max_shifts=4, strides=(24, 24), overlaps=(8, 8), max_deviation_rigid=1)


def _saved(res, tmp_path, edit=None):
    ds = res.drop_vars("corrected")
    if edit is not None:
        ds = edit(ds)
    p = tmp_path / "shifts.nc"
    ds.to_netcdf(p)
    return xr.open_dataset(p, chunks={})  # dask-backed, as read back lazily


@pytest.mark.parametrize(
    ("value", "match"),
    [(np.nan, "NaN or Inf values \\(first at frame 9\\)"), (200.0, "half the frame.*frame 9 has")],
)
def test_lazy_rigid_shifts_are_checked(rigid, movie, tmp_path, value, match):
    def edit(ds):
        sh = ds.shifts.values.copy()
        sh[9, 1] = value
        return ds.assign(shifts=(ds.shifts.dims, sh, ds.shifts.attrs))

    shifts = _saved(rigid, tmp_path, edit)
    assert shifts.shifts.chunks is not None
    out = xnormcorre.apply_shifts(movie.chunk({"time": 5}), shifts)
    np.testing.assert_array_equal(out.isel(time=slice(0, 5)).values, rigid.corrected.values[:5])
    with pytest.raises(ValueError, match=match):
        out.compute()


@pytest.mark.parametrize("value", [np.nan, 200.0])
def test_lazy_pw_shifts_are_checked(pw, movie, tmp_path, value):
    def edit(ds):
        sh = ds.shifts.values.copy()
        sh[7, 1, 0, 0] = value
        return ds.assign(shifts=(ds.shifts.dims, sh, ds.shifts.attrs))

    out = xnormcorre.apply_shifts(movie, _saved(pw, tmp_path, edit))
    with pytest.raises(ValueError, match="frame 7"):
        out.compute()


@pytest.mark.parametrize(
    ("attr", "value", "border", "match"),
    [
        ("batch_size", -3, "copy", "batch_size \\(attribute of the shifts\\) must be an integer >= 1"),
        ("batch_size", 0, "copy", "batch_size \\(attribute of the shifts\\)"),
        ("min_mov", np.nan, "min", "min_mov \\(attribute of the shifts\\) must be finite"),
    ],
)
def test_attributes_read_from_a_shifts_file_are_validated(rigid, movie, tmp_path, attr, value, border, match):
    shifts = _saved(rigid, tmp_path, lambda ds: ds.assign_attrs({attr: value}))
    with pytest.raises(ValueError, match=match):
        xnormcorre.apply_shifts(movie, shifts, border=border).compute()


def test_pw_shifts_of_a_smaller_movie_are_refused(pw):
    big = xnormcorre.datasets.synthetic_movie(n_frames=T, shape=(200, 200), max_shift=2, seed=1)
    for shifts in (pw.drop_vars("corrected"), pw.shifts):  # Dataset (y/x sizes) and DataArray (patch bounds)
        with pytest.raises(ValueError, match="frames of 64x64 px but the movie's frames are 200x200"):
            xnormcorre.apply_shifts(big, shifts)


def test_rigid_shifts_of_a_larger_movie_are_refused(rigid):
    small = xnormcorre.datasets.synthetic_movie(n_frames=T, shape=(32, 32), max_shift=1, seed=1)
    with pytest.raises(ValueError, match="frames of 64x64 px but the movie's frames are 32x32"):
        xnormcorre.apply_shifts(small, rigid.drop_vars("corrected"))
    few = xnormcorre.datasets.synthetic_movie(n_frames=10, shape=(32, 64), max_shift=1, seed=1)
    with pytest.raises(ValueError, match="frames of 64x64 px but the movie's frames are 32x64"):
        xnormcorre.apply_shifts(few, rigid.drop_vars("corrected"))
    # the shifts alone (a DataArray, also read back from NetCDF) carry their frame size
    assert rigid.shifts.attrs["frame_size"] == [H, W]
    for shifts in (rigid.shifts, rigid.shifts.copy(data=rigid.shifts.values * 0).chunk({"time": 5})):
        with pytest.raises(ValueError, match="frames of 64x64 px but the movie's frames are 32x32"):
            xnormcorre.apply_shifts(small, shifts)
    # a bare array only needs the same number of frames
    out = xnormcorre.apply_shifts(small, np.zeros((T, 2), np.float32))
    np.testing.assert_allclose(out.values, small.values, atol=1e-3)


def test_descending_patch_coordinates_are_aligned_by_label(pw, movie):
    flipped = pw.shifts.isel(patch_y=slice(None, None, -1), patch_x=slice(None, None, -1))
    assert flipped.patch_y.values[0] > flipped.patch_y.values[-1]
    out = xnormcorre.apply_shifts(movie, flipped)
    np.testing.assert_array_equal(out.values, xnormcorre.apply_shifts(movie, pw.shifts).values)


def test_time_labels_in_another_order_are_aligned_by_label(rigid, movie):
    order = np.random.default_rng(0).permutation(T)
    out = xnormcorre.apply_shifts(movie, rigid.shifts.isel(time=order))
    np.testing.assert_array_equal(out.values, rigid.corrected.values)


def test_duplicated_time_labels_are_refused(rigid, movie):
    shifts = rigid.shifts.assign_coords(time=np.zeros(T, int))
    with pytest.raises(ValueError, match="duplicated labels"):
        xnormcorre.apply_shifts(movie, shifts)


def test_template_with_dims_x_y_is_used_by_name(movie):
    rect = movie.isel(x=slice(0, 48))  # 64 x 48 frames: a transposed template cannot pass by accident
    tmpl = rect.mean("time")
    a = xnormcorre.rigid(rect, max_shifts=4, template=tmpl)
    b = xnormcorre.rigid(rect, max_shifts=4, template=tmpl.transpose("x", "y"))
    np.testing.assert_array_equal(a.shifts.values, b.shifts.values)


def test_reference_with_time_labels_in_another_order_is_aligned_by_label(movie):
    ref = movie + 1.0
    order = np.random.default_rng(1).permutation(T)
    a = xnormcorre.rigid(movie, max_shifts=4, reference=ref)
    b = xnormcorre.rigid(movie, max_shifts=4, reference=ref.isel(time=order))
    np.testing.assert_array_equal(a.shifts.values, b.shifts.values)
    other = ref.assign_coords(time=ref.time.values + 1000)
    with pytest.raises(ValueError, match="different 'time' labels"):
        xnormcorre.rigid(movie, max_shifts=4, reference=other)


def test_movie_with_duplicated_time_labels_is_not_matched_by_label(rigid, movie):
    """Selecting by label would give two frames the shift of one: refused."""
    dup = movie.assign_coords(time=np.r_[0, 0, np.arange(2, T)])
    with pytest.raises(ValueError, match="movie's time coordinate has duplicated labels"):
        xnormcorre.apply_shifts(dup, rigid.shifts)
    fixed = dup.assign_coords(time=rigid.shifts.time)  # the remedy the message names
    np.testing.assert_array_equal(xnormcorre.apply_shifts(fixed, rigid.shifts).values, rigid.corrected.values)
