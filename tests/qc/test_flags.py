"""Quality-control flags (anchors.md §d item 13): at_max_shift, low_correlation, patch_jump."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

import xnormcorre
from xnormcorre.qc import quality_flags
from xnormcorre.qc.diagnose import RegistrationWarning

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
    with pytest.warns(RegistrationWarning, match=r"2\.5 % of the frames reached the search bound"):
        res = xnormcorre.rigid(movie, max_shifts=5)
    assert float(res.shifts[15, 0]) == pytest.approx(5.0, abs=0.05)  # clipped at the bound
    assert np.flatnonzero(res.at_max_shift.values).tolist() == [15]
    assert "max_shifts = [5, 5]" in res.at_max_shift.attrs["comment"]


def test_noise_frame_has_low_correlation(clean_movie):
    movie = clean_movie.copy()
    rng = np.random.default_rng(0)
    movie[30] = rng.normal(float(clean_movie.mean()), float(clean_movie.std()), size=(64, 64))
    # the noise frame's shift lands anywhere in the search window, here on its bound
    with pytest.warns(RegistrationWarning, match="search bound"):
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
    assert "patch_at_max_deviation" not in flags  # max_deviation_rigid unknown
    # at_max_shift uses the rigid shifts for piecewise results
    rigid_hi = rigid.copy()
    rigid_hi[5, 0] = 9.6
    assert quality_flags(_pw_ds(s, rigid_hi), max_shifts=10).at_max_shift.values.tolist() == [0] * 5 + [1]
    # a curved (non-affine) but steady field is a deformation, not a jump: even a strict
    # threshold flags only the jumps
    curved = s + (0.6 * ((yy - 1.5) / 1.5) ** 2)[None, :, :, None]
    for thr in (1.0, 0.2):
        flags = quality_flags(_pw_ds(curved, rigid), max_shifts=10, jump_threshold=thr)
        assert np.argwhere(flags.patch_jump.values).tolist() == [[2, 1, 3], [4, 0, 0]]
    # a curvature that appears in one frame: flagged at a strict threshold, not at 1 px
    bent = s.copy()
    bent[3] += (0.6 * ((yy - 1.5) / 1.5) ** 2)[:, :, None]
    assert np.argwhere(quality_flags(_pw_ds(bent, rigid), max_shifts=10).patch_jump.values).tolist() == [
        [2, 1, 3],
        [4, 0, 0],
    ]
    strict = quality_flags(_pw_ds(bent, rigid), max_shifts=10, jump_threshold=0.2).patch_jump
    assert int(strict.sel(time=3).sum()) >= 4 and int(strict.sum()) == int(strict.sel(time=3).sum()) + 2
    no_rigid = quality_flags(_pw_ds(s), max_shifts=10)
    assert np.argwhere(no_rigid.patch_jump.values).tolist() == [[2, 1, 3], [4, 0, 0]]


def test_patch_jump_threshold_follows_each_patch_noise():
    """A patch with little content (0.45 px estimation noise) is not flagged for its noise,
    which the fixed 1 px rule did in ~7 % of frames; jumps beyond 6 sigma of each patch are."""
    rng = np.random.default_rng(5)
    t, py, px = 300, 4, 4
    rigid = np.cumsum(rng.normal(scale=0.3, size=(t, 2)), axis=0)
    noise = np.full((py, px), 0.08)
    noise[2, 1] = 0.45
    s = rigid[:, None, None, :] + rng.normal(size=(t, py, px, 2)) * noise[None, :, :, None]
    old_rule_hits = np.sqrt(((s[:, 2, 1] - rigid) ** 2).sum(-1)) > 1.0
    assert old_rule_hits.mean() > 0.03  # what the fixed 1 px threshold would flag
    assert int(quality_flags(_pw_ds(s, rigid), max_shifts=10).patch_jump.sum()) == 0
    planted = {
        (40, 2, 1): [4.0, 0.0],
        (41, 0, 3): [0.0, -1.5],
        (200, 3, 3): [1.2, 1.2],
        (250, 2, 1): [-3, -3],
    }
    for (ti, i, j), d in planted.items():
        s[ti, i, j] += d
    flags = quality_flags(_pw_ds(s, rigid), max_shifts=10)
    assert sorted(map(tuple, np.argwhere(flags.patch_jump.values).tolist())) == sorted(planted)
    assert "max(1 px, 6 * sigma)" in flags.patch_jump.attrs["comment"]
    # jump_k sets the multiple of each patch's own spread
    assert int(quality_flags(_pw_ds(s, rigid), max_shifts=10, jump_k=2.0).patch_jump.sum()) > len(planted)


def test_patch_at_max_deviation():
    rng = np.random.default_rng(6)
    t = 10
    rigid = rng.normal(size=(t, 2))
    s = rigid[:, None, None, :] + rng.normal(scale=0.1, size=(t, 3, 3, 2))
    s[1, 0, 0, 0] = rigid[1, 0] + 3.0  # on the edge of the window
    s[2, 1, 1, 1] = rigid[2, 1] - 2.96  # within 0.05 px of it
    s[3, 2, 2, 0] = rigid[3, 0] + 2.9  # inside
    s[4, 0, 2, 1] = rigid[4, 1] + 2.0  # at the edge along x for max_deviation_rigid = (3, 2)
    ds = _pw_ds(s, rigid)
    flags = quality_flags(ds, max_shifts=8, max_deviation_rigid=3)
    _check_flag_var(flags.patch_at_max_deviation, "patch_at_max_deviation")
    assert flags.patch_at_max_deviation.dims == ("time", "patch_y", "patch_x")
    assert np.argwhere(flags.patch_at_max_deviation.values).tolist() == [[1, 0, 0], [2, 1, 1]]
    assert "max_deviation_rigid = [3, 3]" in flags.patch_at_max_deviation.attrs["comment"]
    hits = quality_flags(ds, max_shifts=8, max_deviation_rigid=(3, 2)).patch_at_max_deviation.values
    assert np.argwhere(hits).tolist() == [[1, 0, 0], [2, 1, 1], [4, 0, 2]]
    # max_deviation_rigid = 0 along an axis: patches equal the rigid shift there, never flagged
    assert np.argwhere(
        quality_flags(ds, max_shifts=8, max_deviation_rigid=(3, 0)).patch_at_max_deviation.values
    ).tolist() == [[1, 0, 0]]
    # from the result's attributes: flat, or the parameters JSON
    ds.attrs["max_deviation_rigid"] = [3, 3]
    xr.testing.assert_identical(quality_flags(ds, max_shifts=8), flags)
    ds.attrs = {"parameters": '{"max_deviation_rigid": [3, 3], "max_shifts": [8, 8]}'}
    xr.testing.assert_identical(quality_flags(ds, max_shifts=8), flags)
    # without rigid shifts there is no window to compare with
    assert "patch_at_max_deviation" not in quality_flags(_pw_ds(s), max_shifts=8, max_deviation_rigid=3)
    with pytest.raises(ValueError, match="max_deviation_rigid"):
        quality_flags(ds, max_shifts=8, max_deviation_rigid=-1)


def test_single_patch_is_compared_with_rigid():
    s = np.zeros((3, 1, 1, 2))
    s[1, 0, 0] = [1.5, 0.0]
    flags = quality_flags(_pw_ds(s, np.zeros((3, 2))), max_shifts=5)
    assert flags.patch_jump.values.ravel().tolist() == [0, 1, 0]


def test_small_grid_is_compared_with_rigid():
    """2 x 2 patches: an affine field (3 coefficients) would spread one patch's jump over
    all four; the rigid shift is the reference instead."""
    rng = np.random.default_rng(7)
    rigid = rng.normal(size=(30, 2))
    s = rigid[:, None, None, :] + rng.normal(scale=0.05, size=(30, 2, 2, 2))
    s[12, 1, 0] += [1.5, 0.0]
    flags = quality_flags(_pw_ds(s, rigid), max_shifts=5)
    assert np.argwhere(flags.patch_jump.values).tolist() == [[12, 1, 0]]
    assert "reference = the rigid shift" in flags.patch_jump.attrs["comment"]


def test_flags_lazy_for_dask_and_equal_to_eager():
    rng = np.random.default_rng(2)
    s = rng.normal(scale=0.2, size=(20, 3, 3, 2))
    s[5, 1, 1] += 3
    rigid = s.mean(axis=(1, 2))
    s[11, 0, 2] = rigid[11] + [0.0, 2.0]
    ds = _pw_ds(s, rigid)
    ds["correlation"] = ("time", 0.9 + 0.01 * rng.standard_normal(20))
    ds["correlation"][9] = 0.1
    eager = quality_flags(ds, max_shifts=4, max_deviation_rigid=2)
    lazy = quality_flags(ds.chunk({"time": 6}), max_shifts=4, max_deviation_rigid=2)
    for name in ("at_max_shift", "low_correlation", "patch_jump", "patch_at_max_deviation"):
        assert lazy[name].chunks is not None, name
    xr.testing.assert_identical(lazy.compute(), eager)
    assert np.flatnonzero(eager.low_correlation.values).tolist() == [9]
    assert np.argwhere(eager.patch_jump.values).tolist() == [[5, 1, 1], [11, 0, 2]]
    assert np.argwhere(eager.patch_at_max_deviation.values).tolist() == [[5, 1, 1], [11, 0, 2]]


def test_planted_patch_jumps_in_a_registered_movie():
    """End to end: content of a region displaced by 3 px in frames 10, 30, 45 and replaced
    by noise in frames 20, 50; the flags fire there and nowhere else."""
    movie = xnormcorre.datasets.synthetic_movie(n_frames=60, shape=(96, 96), max_shift=2, seed=11)
    bad = movie.copy()
    rng = np.random.default_rng(0)
    displaced, noisy = [10, 30, 45], [20, 50]
    for t in displaced:
        moved = ndimage.shift(movie.values[t], (0, 3.0), order=3, mode="nearest")
        bad.values[t, 36:76, 36:76] = moved[36:76, 36:76]
    for t in noisy:
        v = movie.values[t]
        bad.values[t, 0:40, 56:96] = rng.normal(float(v.mean()), float(v.std()), size=(40, 40))
    res = xnormcorre.pwrigid(bad, max_shifts=4, strides=(24, 24), overlaps=(16, 16), max_deviation_rigid=3)
    res = res.drop_vars("corrected").load()
    flags = quality_flags(res, max_shifts=4)  # max_deviation_rigid from the result's attributes
    jump = flags.patch_jump.values.astype(bool)
    assert np.flatnonzero(jump.any((1, 2))).tolist() == sorted(displaced + noisy)
    # patch (1, 1) (centre 43.5, 43.5) lies in the displaced region, (0, 3) in the noise
    assert all(jump[t, 1, 1] for t in displaced)
    assert all(jump[t, 0, 3] for t in noisy)
    dx = (res.shifts - res.rigid_shifts).sel(axis="x").values
    assert np.all(dx[displaced, 1, 1] > 2.0)  # the estimate followed the displaced content
    at_limit = flags.patch_at_max_deviation.values.astype(bool)
    assert set(np.flatnonzero(at_limit.any((1, 2))).tolist()) <= set(noisy)


@pytest.mark.slow
def test_real_movie_patch_flags_are_rare_and_catch_planted_jumps(neurofinder_path):
    """Real two-photon movie (480 x 256 x 256, 4 x 4 patches): the patch flags fire on few
    frames, and a 3 px jump planted in any 20 patch estimates is always flagged."""
    movie = xnormcorre.open_movie(neurofinder_path)
    res = xnormcorre.pwrigid(movie, max_shifts=8, strides=(64, 64), overlaps=(32, 32))
    res = res.drop_vars("corrected").load()
    flags = quality_flags(res, max_shifts=8)
    n = res.sizes["time"]
    jump = flags.patch_jump.values.astype(bool)
    assert jump.any((1, 2)).sum() <= 0.02 * n  # measured: 4 of 480 frames (the 1 px rule: 7)
    assert int(flags.patch_at_max_deviation.sum()) == 0
    s0 = res.shifts.transpose("time", "patch_y", "patch_x", "axis").values
    for seed in range(3):
        rng = np.random.default_rng(seed)
        flat = rng.choice(jump.size, 20, replace=False)
        where = np.unravel_index(flat, jump.shape)
        angle = rng.uniform(0, 2 * np.pi, 20)
        s = s0.copy()
        s[where] += 3.0 * np.stack([np.cos(angle), np.sin(angle)], -1)
        planted = quality_flags(res.assign(shifts=(res.shifts.dims, s)), max_shifts=8).patch_jump.values
        assert planted[where].all()  # recall 100 %
        collateral = planted.astype(bool) & ~jump
        collateral[where] = False
        # nothing else newly flagged, but for the odd estimate near its threshold: 20 planted
        # jumps shift the patches' robust statistics over time and the fitted field of their
        # frames (measured: 0-1 of the 7,660 other estimates)
        assert int(collateral.sum()) <= 2


@pytest.mark.slow
def test_real_movie_small_patches_flag_failed_estimates(neurofinder_path):
    """48 px patches on the real movie: many patch estimates fail (the patch has too little
    content).  The flagged estimates are the failures: the patch's own shift matches the
    template patch worse than the plain rigid shift in most of them (measured 88 %),
    against about half of the unflagged ones (estimates within noise of the rigid shift)."""
    movie = xnormcorre.open_movie(neurofinder_path)
    res = xnormcorre.pwrigid(movie, max_shifts=8, strides=(32, 32), overlaps=(16, 16))
    res = res.drop_vars("corrected").load()
    flags = quality_flags(res, max_shifts=8)
    frames = movie.values.astype(np.float64)
    tmpl = res.template.values.astype(np.float64)
    s = res.shifts.transpose("time", "patch_y", "patch_x", "axis").values.astype(np.float64)
    r = res.rigid_shifts.values.astype(np.float64)

    def patch_match(t, i, j, shift):
        win = (
            slice(int(res.patch_y_start[i]) + 4, int(res.patch_y_stop[i]) - 4),
            slice(int(res.patch_x_start[j]) + 4, int(res.patch_x_stop[j]) - 4),
        )
        a = ndimage.shift(frames[t], -shift, order=3, mode="nearest")[win]
        return np.corrcoef(a.ravel(), tmpl[win].ravel())[0, 1]

    def better_than_rigid(cells):
        return np.mean([patch_match(t, i, j, s[t, i, j]) > patch_match(t, i, j, r[t]) for t, i, j in cells])

    rng = np.random.default_rng(0)
    flagged = np.argwhere(flags.patch_jump.values)
    ok = np.argwhere(flags.patch_jump.values == 0)
    assert len(flagged) > 50
    assert better_than_rigid(flagged[rng.choice(len(flagged), 50, replace=False)]) < 0.3
    # good estimates sit within noise of the rigid shift: about half do better
    assert better_than_rigid(ok[rng.choice(len(ok), 50, replace=False)]) > 0.35
    assert int(flags.patch_at_max_deviation.sum()) > 100  # the failures that sit at the window edge


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"max_shifts": 0}, ValueError, "max_shifts"),
        ({"max_shifts": 2.5}, TypeError, "max_shifts"),
        ({"max_shifts": 5, "corr_threshold": 1.5}, ValueError, "corr_threshold"),
        ({"max_shifts": 5, "corr_threshold": "low"}, TypeError, "corr_threshold"),
        ({"max_shifts": 5, "k": 0}, ValueError, "k"),
        ({"max_shifts": 5, "jump_threshold": -1}, ValueError, "jump_threshold"),
        ({"max_shifts": 5, "jump_k": 0}, ValueError, "jump_k"),
        ({"max_shifts": 5, "max_deviation_rigid": (1, 2, 3)}, ValueError, "max_deviation_rigid"),
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
