"""Piecewise-rigid registration: accuracy against a known non-rigid field, labels, grid."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import xnormcorre
from xnormcorre import metrics
from xnormcorre.testing import shift_rmse

PW = {"max_shifts": (6, 6), "strides": (48, 48), "overlaps": (24, 24), "max_deviation_rigid": 3}


def _true_patch_shifts(ds: xr.Dataset, res: xr.Dataset) -> np.ndarray:
    """True field averaged over each patch: (time, patch_y, patch_x, axis)."""
    f = ds.true_field.values
    rows = []
    for a, b in zip(res.patch_y_start.values, res.patch_y_stop.values, strict=True):
        rows.append(
            np.stack(
                [
                    f[:, a:b, c:d].mean((1, 2))
                    for c, d in zip(res.patch_x_start.values, res.patch_x_stop.values, strict=True)
                ],
                axis=1,
            )
        )
    return np.stack(rows, axis=1)


@pytest.fixture(scope="module")
def nonrigid():
    ds = xnormcorre.datasets.synthetic_movie(200, (192, 192), 3, nonrigid=2.0, seed=0, as_dataset=True)
    res = ds.movie.normcorre.pwrigid(upsample_factor_grid=4, **PW)
    return ds, res


def test_patch_rmse_on_nonrigid_movie(nonrigid):
    ds, res = nonrigid
    truth = _true_patch_shifts(ds, res)
    d = res.shifts.values - truth
    d -= np.median(d.reshape(-1, 2), axis=0)  # the estimated template's constant offset
    rmse = float(np.sqrt((d**2).sum(-1).mean()))
    assert rmse <= 0.2, rmse
    # pw-rigid is crisper than rigid on a non-rigid movie
    rig = ds.movie.normcorre.rigid(max_shifts=6)
    assert metrics.crispness(res.corrected, crop=10) > metrics.crispness(rig.corrected, crop=10)


def test_pw_template_is_centred_on_the_mean_deformation(nonrigid):
    """The pw template is deformed to the frames' mean local geometry: every patch's
    shifts deviate from the rigid shifts by ~0 on average (0.10 px without it)."""
    _, res = nonrigid
    dev = (res.shifts - res.rigid_shifts).mean("time")
    assert float(abs(dev).max()) < 0.03, dev.values


def test_snippet_labels(nonrigid):
    ds, res = nonrigid
    assert res.shifts.dims == ("time", "patch_y", "patch_x", "axis")
    assert res.rigid_shifts.dims == ("time", "axis")
    assert res.corrected.dims == ("time", "y", "x") and res.template.dims == ("y", "x")
    np.testing.assert_allclose(res.patch_y.values, [35.5, 83.5, 131.5, 155.5])
    sel = res.shifts.sel(patch_y=80, patch_x=150, method="nearest")
    np.testing.assert_array_equal(sel.values, res.shifts.values[:, 1, 3])
    for name in (
        "shifts",
        "rigid_shifts",
        "corrected",
        "template",
        "correlation",
        "patch_y",
        "patch_y_start",
    ):
        assert {"long_name", "units"} <= set(res[name].attrs), name
    assert res.attrs["method"] == "pwrigid" and res.attrs["strides"] == [48, 48]
    assert np.isfinite(res.corrected.values).all()
    assert res.patch_jump.dims == ("time", "patch_y", "patch_x") and res.at_max_shift.dims == ("time",)
    assert int(res.patch_jump.sum()) == 0  # a smooth 2-px field: no patch flagged
    # rigid shifts track the frame-averaged true displacement (rigid walk + mean of the field)
    assert shift_rmse(res.rigid_shifts, ds.true_field.mean(("y", "x"))) < 0.3


def test_uniform_motion_gives_rigid_patch_shifts():
    movie = xnormcorre.datasets.synthetic_movie(40, (128, 128), 4, seed=11, photons=10)
    res = movie.normcorre.pwrigid(max_shifts=6, strides=(48, 48), overlaps=(24, 24), max_deviation_rigid=2)
    dev = res.shifts - res.rigid_shifts
    assert float(np.sqrt((dev**2).sum("axis").mean())) < 0.1
    truth = np.stack([movie.true_shift_y, movie.true_shift_x], 1)[:, None, None, :]
    d = res.shifts.values - truth
    d -= np.median(d.reshape(-1, 2), 0)
    assert float(np.sqrt((d**2).sum(-1).mean())) < 0.1


def test_edge_patches_are_not_biased_by_rigid_motion():
    """Edge patches are cut at the rigidly displaced position even where it leaves the
    frame: a cut clamped to the frame biased them towards the centre (up to 0.06 px on
    average over this movie, against < 0.02 px for inner patches)."""
    ds = xnormcorre.datasets.synthetic_movie(60, (128, 128), 5.0, seed=4, as_dataset=True)
    res = xnormcorre.pwrigid(ds.movie, max_shifts=7, strides=32, overlaps=16, max_deviation_rigid=2)
    err = res.shifts.values - ds.true_shifts.values[:, None, None, :]
    err -= np.median(err.reshape(-1, 2), axis=0)
    per_patch = np.abs(err.mean(axis=0)).max()  # the per-patch constant part of the error
    assert per_patch < 0.035, per_patch


def test_static_clean_movie_comes_back_unchanged():
    """No seams, no drift: a static scene is returned (almost) bit for bit."""
    ds = xnormcorre.datasets.synthetic_movie(
        12, (96, 96), 0, motion="none", seed=4, n_neurons=0, as_dataset=True
    )
    clean = ds.clean
    kw = {"max_shifts": 4, "strides": (32, 32), "overlaps": (16, 16), "max_deviation_rigid": 2}
    res = clean.normcorre.pwrigid(**kw)
    rng = float(clean.max() - clean.min())
    assert float(np.abs(res.shifts).max()) < 0.02
    assert float(np.abs(res.corrected - clean).max()) < 0.005 * rng
    # with calcium activity (frames differ, the scene does not move) the change stays small
    active = xnormcorre.datasets.synthetic_movie(
        12, (96, 96), 0, motion="none", seed=4, as_dataset=True
    ).clean
    res = active.normcorre.pwrigid(**kw)
    assert float(np.abs(res.shifts).max()) < 0.06
    assert float(np.abs(res.corrected - active).max()) < 0.02 * float(active.max() - active.min())


def test_accessor_function_netcdf_dask(tmp_path):
    movie = xnormcorre.datasets.synthetic_movie(20, (80, 96), 2, seed=1)
    kw = {
        "max_shifts": 4,
        "strides": (32, 40),
        "overlaps": (16, 16),
        "max_deviation_rigid": 2,
        "batch_size": 8,
    }
    res = movie.normcorre.pwrigid(**kw)
    xr.testing.assert_identical(res, xnormcorre.pwrigid(movie, **kw))
    lazy = xnormcorre.pwrigid(movie.chunk({"time": 6}), **kw)
    assert lazy.corrected.chunks is not None
    xr.testing.assert_identical(lazy.compute(), res)
    path = tmp_path / "pw.nc"
    res.to_netcdf(path)
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(back.load(), res)
    again = xnormcorre.pwrigid(movie, **xnormcorre.parameters_from_attrs(res.attrs))
    xr.testing.assert_identical(again, res)


def test_jnormcorre_patch_bounds_match_shift_order():
    movie = xnormcorre.datasets.synthetic_movie(4, (96, 80), 1, seed=2)
    res = movie.normcorre.pwrigid(max_shifts=3, strides=(40, 32), overlaps=(16, 16), max_deviation_rigid=1)
    start, end = xnormcorre.get_patch_start_and_end_coords(96, 80, 40, 32, 16, 16)
    flat = res.shifts.stack(patch=("patch_y", "patch_x"))
    assert flat.sizes["patch"] == len(start)
    ys = flat.patch_y_start.values if "patch_y_start" in flat.coords else None
    centres_y = (start[:, 0] + end[:, 0] - 1) / 2
    centres_x = (start[:, 1] + end[:, 1] - 1) / 2
    np.testing.assert_allclose(flat.patch_y.values, centres_y)
    np.testing.assert_allclose(flat.patch_x.values, centres_x)
    assert ys is None or np.array_equal(ys, start[:, 0])


@given(
    n=st.integers(20, 300),
    stride=st.integers(1, 80),
    overlap=st.integers(0, 79),
)
def test_patch_grid_covers_frame(n, stride, overlap):
    if stride + overlap > n:  # overlaps >= strides is accepted (as CaImAn/jnormcorre)
        with pytest.raises(ValueError, match="larger than the frame"):
            xnormcorre.patch_grid((n, n), stride, overlap)
        return
    g = xnormcorre.patch_grid((n, n), stride, overlap)
    starts, stops = g.patch_y_start.values, g.patch_y_stop.values
    assert starts[0] == 0 and stops[-1] == n
    assert np.all(stops - starts == stride + overlap)
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= stride)
    np.testing.assert_allclose(g.patch_y.values, starts + (stride + overlap - 1) / 2)


@given(
    case=st.sampled_from(
        [((64, 64), (24, 24), (12, 12)), ((72, 56), (32, 20), (16, 10)), ((65, 77), (40, 40), (8, 8))]
    ),
    seed=st.integers(0, 100),
)
def test_pwrigid_any_frame_size(case, seed):
    """Non-square, odd sizes, edge patches that do not fit the grid: all frames corrected."""
    shape, strides, overlaps = case
    movie = xnormcorre.datasets.synthetic_movie(4, shape, 1.5, seed=seed, motion="jitter")
    res = xnormcorre.pwrigid(
        movie, max_shifts=3, strides=strides, overlaps=overlaps, max_deviation_rigid=1, batch_size=4
    )
    assert res.corrected.shape == movie.shape
    assert np.isfinite(res.corrected.values).all()
    assert float(np.abs(res.shifts - res.rigid_shifts).max()) <= 1.0 + 1e-5


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"strides": (40, 40), "overlaps": (40, 10)}, "overlaps"),
        ({"strides": (64, 64), "overlaps": (8, 8)}, "larger than the frame"),
        ({"strides": 0, "overlaps": 0}, "strides"),
        ({"max_deviation_rigid": -1}, "max_deviation_rigid"),
        (
            {"strides": (16, 16), "overlaps": (8, 8), "max_shifts": 6, "max_deviation_rigid": 11},
            "half the patch",
        ),
        ({"upsample_factor_grid": 0}, "upsample_factor_grid"),
        ({"niter_els": -1}, "niter_els"),
    ],
)
def test_bad_pw_parameters(kw, match):
    movie = np.ones((3, 64, 64), np.float32)
    base = {"max_shifts": 3, "strides": (24, 24), "overlaps": (8, 8)}
    with pytest.raises(ValueError, match=match):
        xnormcorre.pwrigid(movie, **{**base, **kw})


@pytest.mark.slow
def test_real_movie_pw_at_least_as_crisp_as_rigid(neurofinder_path):
    movie = xr.DataArray(tifffile.imread(neurofinder_path), dims=("time", "y", "x"))
    rig = movie.normcorre.rigid(max_shifts=(10, 10))
    pw = movie.normcorre.pwrigid(
        max_shifts=(10, 10), strides=(48, 48), overlaps=(24, 24), max_deviation_rigid=3
    )
    c_raw = metrics.crispness(movie, crop=14)
    c_rig = metrics.crispness(rig.corrected, crop=14)
    c_pw = metrics.crispness(pw.corrected, crop=14)
    assert c_rig >= c_raw
    assert c_pw >= c_rig, (c_raw, c_rig, c_pw)


@pytest.fixture(scope="module")
def rigid_motion_runs():
    """A rigidly moving movie with shot noise, registered to its true template with the
    patch refinement by default (off), explicitly off, and on."""
    from xnormcorre.testing.simulate import simulate_movie

    sim = simulate_movie((96, 96), 40, max_shift=2.0, photons_per_px=5.0, with_gradient=True, seed=1)
    kw = dict(template=sim.template, max_shifts=5, strides=(32, 32), overlaps=(16, 16))
    runs = {None: xnormcorre.pwrigid(sim.frames, **kw)}
    runs.update({rp: xnormcorre.pwrigid(sim.frames, refine_patches=rp, **kw) for rp in (False, True)})
    return sim, runs


def _patch_truth(sim, res):
    yb = list(zip(res.patch_y_start.values, res.patch_y_stop.values, strict=True))
    xb = list(zip(res.patch_x_start.values, res.patch_x_stop.values, strict=True))
    est = res.shifts.transpose("time", "patch_y", "patch_x", "axis").values.astype(np.float64)
    return est, sim.patch_shifts(yb, xb), yb, xb


def test_refine_patches_is_off_by_default_and_recorded(rigid_motion_runs):
    _, runs = rigid_motion_runs
    for name in ("shifts", "rigid_shifts", "corrected", "correlation"):
        np.testing.assert_array_equal(runs[None][name].values, runs[False][name].values)
    assert not np.array_equal(runs[True].shifts.values, runs[False].shifts.values)
    # the rigid step is not touched by the patch refinement
    np.testing.assert_array_equal(runs[True].rigid_shifts.values, runs[False].rigid_shifts.values)
    assert xnormcorre.parameters_from_attrs(runs[None].attrs)["refine_patches"] in (False, 0)
    assert xnormcorre.parameters_from_attrs(runs[True].attrs)["refine_patches"] in (True, 1)


def test_refine_patches_lowers_patch_rmse_under_rigid_motion(rigid_motion_runs):
    sim, runs = rigid_motion_runs
    rmse = {}
    for rp in (False, True):
        est, truth, _, _ = _patch_truth(sim, runs[rp])
        rmse[rp] = float(np.sqrt(np.mean((est - truth) ** 2)))
    assert rmse[True] < 0.07 and rmse[True] / rmse[False] < 0.7, rmse


def test_patch_shifts_near_the_cramer_rao_bound(rigid_motion_runs):
    """With ``refine_patches`` each patch is refined as the rigid estimate (noise-weighted
    Gauss-Newton against the template patch): on a rigidly moving movie every patch shares
    the frame's shift and its error approaches the patch's Cramér-Rao bound (correlation
    peak alone: efficiency about 0.16)."""
    from xnormcorre.testing.crlb import crlb_patches, efficiency

    sim, runs = rigid_motion_runs
    eff = {}
    for rp in (False, True):
        est, truth, yb, xb = _patch_truth(sim, runs[rp])
        bound = crlb_patches(
            sim.clean,
            yb,
            xb,
            gain=sim.gain,
            read_noise=sim.read_noise,
            offset=sim.offset,
            gradient=sim.gradient,
        )
        eff[rp] = efficiency(est, truth, bound)
    assert np.median(eff[True]) >= 0.6 and eff[True].min() >= 0.4, eff[True].round(2)
    assert np.median(eff[False]) < 0.4, eff[False].round(2)
    # within rigid ± max_deviation_rigid (default 3) whatever the refinement did
    est = runs[True].shifts.values
    dev = np.abs(est - runs[True].rigid_shifts.values[:, None, None, :])
    assert dev.max() <= 3 + 1e-5


def test_corrector_reproduces_refined_patches(rigid_motion_runs):
    sim, runs = rigid_motion_runs
    corr = xnormcorre.Corrector.from_result(runs[True])
    assert corr.parameters["refine_patches"] is True
    out = corr.correct(sim.frames)
    np.testing.assert_array_equal(out.shifts.values, runs[True].shifts.values)
    # single-frame path: the same kernels on a batch of one frame
    one = corr.shift(np.asarray(sim.frames[5]))
    np.testing.assert_allclose(one, runs[True].shifts.values[5], atol=1e-4)


def test_refine_patches_must_be_bool():
    with pytest.raises(TypeError, match="refine_patches must be True or False"):
        xnormcorre.pwrigid(
            np.ones((3, 64, 64), np.float32), max_shifts=3, strides=24, overlaps=8, refine_patches="yes"
        )
