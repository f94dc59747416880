"""Multi-plane movies (time, z, y, x) with planes="independent": each plane its own 2-D run."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xnormcorre
from xnormcorre.core.planes import plane_result
from xnormcorre.io.writers import to_netcdf

T, H, W = 12, 48, 48


@pytest.fixture(scope="module")
def vol():
    """Three planes with different (known) motion and content, a plane coordinate in um."""
    planes = [
        xnormcorre.datasets.synthetic_movie(n_frames=T, shape=(H, W), max_shift=2, seed=s, as_dataset=True)
        for s in (0, 1, 2)
    ]
    movie = xr.concat([p.movie for p in planes], dim="z").transpose("time", "z", "y", "x")
    true = np.stack(
        [np.stack([p.true_shift_y.values, p.true_shift_x.values], -1) for p in planes], axis=1
    )  # (time, z, 2)
    return movie.drop_vars(["true_shift_y", "true_shift_x"], errors="ignore").assign_coords(
        z=[0.0, 15.0, 30.0]
    ), true


@pytest.fixture(scope="module")
def res(vol):
    return vol[0].normcorre.rigid(planes="independent", max_shifts=4)


def test_rigid_independent_equals_per_plane_loop(vol, res):
    movie, true = vol
    assert res.shifts.dims == ("time", "z", "axis")
    assert res.corrected.dims == ("time", "z", "y", "x")
    assert res.template.dims == ("z", "y", "x")
    assert res.correlation.dims == ("time", "z")
    np.testing.assert_array_equal(res.z.values, [0.0, 15.0, 30.0])
    assert res.attrs["planes"] == "independent" and res.attrs["plane_dim"] == "z"
    for i in range(3):
        one = xnormcorre.rigid(movie.isel(z=i), max_shifts=4)
        for name, var in one.data_vars.items():
            np.testing.assert_array_equal(res[name].isel(z=i).values, var.values, err_msg=name)
        # each plane's own run attributes come back
        for key, value in one.attrs.items():
            assert plane_result(res, i).attrs[key] == value, key
        err = res.shifts.isel(z=i).values - true[:, i]
        assert np.abs(err - np.median(err, 0)).max() < 0.3


def test_pwrigid_independent_equals_per_plane_loop(vol):
    movie, _ = vol
    kw = dict(max_shifts=4, strides=(24, 24), overlaps=(8, 8))
    res = movie.normcorre.pwrigid(planes="independent", **kw)
    assert res.shifts.dims == ("time", "z", "patch_y", "patch_x", "axis")
    assert res.rigid_shifts.dims == ("time", "z", "axis")
    one = xnormcorre.pwrigid(movie.isel(z=2), **kw)
    for name, var in one.data_vars.items():
        np.testing.assert_array_equal(res[name].isel(z=2).values, var.values, err_msg=name)
    again = xnormcorre.apply_shifts(movie, res)
    np.testing.assert_array_equal(again.values, res.corrected.values)


def test_lazy_equals_eager_and_stays_lazy(vol, res):
    movie, _ = vol
    lazy = movie.chunk({"time": 5}).normcorre.rigid(planes="independent", max_shifts=4)
    assert lazy.corrected.chunks is not None
    np.testing.assert_array_equal(lazy.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(lazy.corrected.values, res.corrected.values)


def test_apply_shifts_and_netcdf_round_trip(vol, res, tmp_path):
    movie, _ = vol
    np.testing.assert_array_equal(xnormcorre.apply_shifts(movie, res).values, res.corrected.values)
    np.testing.assert_array_equal(xnormcorre.apply_shifts(movie, res.shifts).values, res.corrected.values)
    path = tmp_path / "shifts.nc"
    to_netcdf(res.drop_vars("corrected"), path)
    back = xr.open_dataset(path)
    np.testing.assert_array_equal(back.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(xnormcorre.apply_shifts(movie, back).values, res.corrected.values)
    # CaImAn's sign, plane by plane
    caiman = -res.shifts
    np.testing.assert_array_equal(
        xnormcorre.apply_shifts(movie, caiman, convention="caiman").values, res.corrected.values
    )


def test_other_plane_dim_name_template_and_numpy(vol, res):
    movie, _ = vol
    renamed = movie.rename(z="plane")
    out = renamed.normcorre.rigid(
        planes="independent", plane_dim="plane", max_shifts=4, template=res.template.values
    )
    assert out.shifts.dims == ("time", "plane", "axis")
    for i in range(3):
        one = xnormcorre.rigid(movie.isel(z=i), max_shifts=4, template=res.template.isel(z=i).values)
        np.testing.assert_array_equal(out.shifts.isel(plane=i).values, one.shifts.values)
    arr = xnormcorre.rigid(movie.values, planes="independent", max_shifts=4)
    np.testing.assert_array_equal(arr.shifts.values, res.shifts.values)


def test_bad_planes_input(vol):
    movie, _ = vol
    with pytest.raises(ValueError, match="planes must be"):
        xnormcorre.rigid(movie, planes="stack")
    with pytest.raises(ValueError, match="plane dim 'depth'"):
        xnormcorre.rigid(movie, planes="independent", plane_dim="depth")
    with pytest.raises(ValueError, match="planes='independent'"):
        xnormcorre.pwrigid(movie)  # a volume: 3-D piecewise-rigid registration is not available
    with pytest.raises(ValueError, match="template has 2 planes"):
        xnormcorre.rigid(movie, planes="independent", template=np.zeros((2, H, W), np.float32))


def test_reference_per_plane(vol):
    """A (time, z, y, x) reference is split per plane: shifts from it, applied to the movie."""
    movie, _ = vol
    ref = movie * 2.0 + 5.0
    out = movie.normcorre.rigid(planes="independent", reference=ref, max_shifts=4)
    one = xnormcorre.rigid(movie.isel(z=1), reference=ref.isel(z=1), max_shifts=4)
    np.testing.assert_array_equal(out.shifts.isel(z=1).values, one.shifts.values)
    np.testing.assert_array_equal(out.corrected.isel(z=1).values, one.corrected.values)


@pytest.mark.parametrize("planes", ["independent", "volume"])
@pytest.mark.parametrize("method", ["rigid", "pwrigid"])
def test_store_is_refused_for_plane_movies_before_any_work(vol, tmp_path, planes, method):
    with pytest.raises(ValueError, match="store= is not available yet for multi-plane or volume movies"):
        getattr(vol[0].normcorre, method)(planes=planes, store=tmp_path / "run.zarr")
    assert list(tmp_path.iterdir()) == []


def test_run_warnings_point_at_the_callers_line(vol):
    """A suspect run's warning names the user's line, not a line inside the package, for
    frames and volumes alike (the package's own frames between them vary in depth)."""
    movie = vol[0]
    for call in (
        lambda: xnormcorre.rigid(movie.isel(z=0), max_shifts=1),
        lambda: movie.normcorre.rigid(planes="independent", max_shifts=1),
        lambda: movie.normcorre.rigid(max_shifts=(1, 1, 1)),
    ):
        with pytest.warns(xnormcorre.RegistrationWarning) as rec:
            call()
        assert {w.filename for w in rec} == {__file__}
