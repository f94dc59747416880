"""Estimate on one stack, apply to another: two channels, 1-photon high-pass, map_frames."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

import xnormcorre
from xnormcorre.engine.filters import highpass_kernel
from xnormcorre.qc.diagnose import RegistrationWarning
from xnormcorre.testing import shift_rmse


@pytest.fixture(scope="module")
def two_channels():
    """Channel A: the structural movie; channel B: the same moving scene, ~40x fewer photons."""
    ds = xnormcorre.datasets.synthetic_movie(120, (96, 96), 4, seed=21, as_dataset=True)
    rng = np.random.default_rng(0)
    dim = rng.poisson(np.clip(ds.clean.values - 90, 0, None) * 0.01) / 0.01
    b = xr.DataArray(dim.astype(np.float32), dims=ds.movie.dims, coords=ds.movie.coords, name="green")
    a = ds.movie.rename("red")
    return ds, a, b


def test_transfer_from_bright_channel_corrects_dim_channel(two_channels):
    ds, red, green = two_channels
    alone = green.normcorre.rigid(max_shifts=6)
    moved = green.normcorre.rigid(reference=red, max_shifts=6)
    err_alone = shift_rmse(alone.shifts, ds.true_shifts)
    err_transfer = shift_rmse(moved.shifts, ds.true_shifts)
    assert err_alone > 0.3, err_alone  # B is too dim to register by itself ...
    assert err_transfer <= 0.12, err_transfer  # ... but A's shifts correct it
    ref = red.normcorre.rigid(max_shifts=6)
    np.testing.assert_allclose(moved.shifts.values, ref.shifts.values, atol=1e-4)
    np.testing.assert_array_equal(moved.template.values, ref.template.values)
    again = xnormcorre.rigid(green, template=ref.template, max_shifts=6, reference=red)
    np.testing.assert_array_equal(again.shifts.values, ref.shifts.values)
    assert moved.attrs["shifts_estimated_on"] == "reference (red)"
    # channels of one DataArray: the channel label names the reference (both share a name)
    both = xr.concat([red, green.rename("red")], dim="channel").assign_coords(channel=["red", "green"])
    by_label = both.sel(channel="green").normcorre.rigid(reference=both.sel(channel="red"), max_shifts=6)
    assert by_label.attrs["shifts_estimated_on"] == "reference (channel red)"
    np.testing.assert_array_equal(by_label.shifts.values, moved.shifts.values)
    # the dim channel is moved by the bright channel's shifts
    direct = xnormcorre.rigid(green, template=ref.template, max_shifts=6)
    assert direct.attrs["shifts_estimated_on"] == "movie"
    assert moved.corrected.shape == green.shape


def test_transfer_pwrigid(two_channels):
    ds, red, green = two_channels
    kw = {"max_shifts": 6, "strides": (32, 32), "overlaps": (16, 16), "max_deviation_rigid": 2}
    on_red = red.normcorre.pwrigid(**kw)
    moved = green.normcorre.pwrigid(reference=red, **kw)
    np.testing.assert_array_equal(moved.shifts.values, on_red.shifts.values)
    assert shift_rmse(moved.rigid_shifts, ds.true_shifts) <= 0.1
    with pytest.warns(RegistrationWarning, match="edge of their search window"):  # too dim alone
        alone = green.normcorre.pwrigid(**kw)
    assert shift_rmse(alone.rigid_shifts, ds.true_shifts) > shift_rmse(moved.rigid_shifts, ds.true_shifts)


@pytest.mark.parametrize("method", ["rigid", "pwrigid"])
def test_reference_equal_to_movie_is_plain_correction(small_movie, method):
    kw = {"max_shifts": 4}
    if method == "pwrigid":
        kw.update(strides=(24, 24), overlaps=(12, 12), max_deviation_rigid=2)
    fn = getattr(xnormcorre, method)
    plain = fn(small_movie, **kw)
    transferred = fn(small_movie, reference=small_movie, **kw)
    xr.testing.assert_allclose(transferred.corrected, plain.corrected, atol=1e-3)
    np.testing.assert_array_equal(transferred.shifts.values, plain.shifts.values)


def test_transfer_lazy_matches_eager(two_channels):
    _, red, green = two_channels
    eager = green.normcorre.rigid(reference=red, max_shifts=6, batch_size=16)
    lazy = green.chunk({"time": 25}).normcorre.rigid(
        reference=red.chunk({"time": 40}), max_shifts=6, batch_size=16
    )
    assert lazy.corrected.chunks is not None
    xr.testing.assert_identical(lazy.compute(), eager)


def _one_photon_movie():
    """Cells on a strong background that does NOT move (vignetting) and flickers."""
    ds = xnormcorre.datasets.synthetic_movie(80, (96, 96), 4, seed=8, as_dataset=True, photons=20)
    yy, xx = np.mgrid[0:96, 0:96]
    vignette = 600 * np.exp(-((yy - 40) ** 2 + (xx - 55) ** 2) / (2 * 30.0**2))
    flicker = 1 + 0.2 * np.sin(np.arange(80) / 3.0)
    movie = ds.movie + (flicker[:, None, None] * vignette).astype(np.float32)
    return ds, movie


def test_highpass_estimate_beats_raw_on_one_photon_like_movie():
    ds, movie = _one_photon_movie()
    raw = movie.normcorre.rigid(max_shifts=6, phase_corr=False)
    hp = movie.normcorre.rigid(reference=xnormcorre.highpass(movie, sigma=3), max_shifts=6, phase_corr=False)
    e_raw, e_hp = shift_rmse(raw.shifts, ds.true_shifts), shift_rmse(hp.shifts, ds.true_shifts)
    assert e_hp < e_raw, (e_hp, e_raw)
    assert e_hp <= 0.15, e_hp
    assert hp.attrs["shifts_estimated_on"] == "reference (high-passed movie (gSig_filt = [3.0, 3.0]))"
    # shifts estimated on the filtered movie are applied to the raw one (background kept)
    assert float(hp.corrected.mean()) == pytest.approx(float(movie.mean()), rel=0.05)


def test_highpass_matches_scipy_reference():
    movie = xnormcorre.datasets.synthetic_movie(5, (40, 48), 2, seed=3)
    out = xnormcorre.highpass(movie, sigma=2.5, batch_size=4)
    k = highpass_kernel((2.5, 2.5))
    ref = np.stack([ndimage.correlate(f.astype(np.float64), k, mode="reflect") for f in movie.values])
    np.testing.assert_allclose(out.values, ref, atol=1e-3 * np.abs(ref).max())
    assert out.dims == movie.dims and out.attrs["highpass_sigma"] == [2.5, 2.5]
    assert abs(float(k.sum())) < 1e-6


def test_map_frames_is_lazy_and_batched():
    movie = xnormcorre.datasets.synthetic_movie(30, (32, 32), 2, seed=1).chunk({"time": 10})
    sizes = []

    def fn(batch):
        sizes.append(batch.shape[0])
        return batch * 2.0

    with dask.config.set(scheduler="synchronous"):
        out = xnormcorre.map_frames(movie, fn, batch_size=4)
        assert out.chunks is not None
        n_probe = len(sizes)
        vals = out.values
    np.testing.assert_allclose(vals, movie.values * 2.0, rtol=1e-6)
    assert max(sizes[n_probe:]) <= 4 and sum(sizes[n_probe:]) == 30
    hp = xnormcorre.highpass(movie, sigma=2)
    assert hp.chunks is not None


def test_bad_reference_and_filters():
    movie = xnormcorre.datasets.synthetic_movie(6, (32, 32), 1, seed=1)
    with pytest.raises(ValueError, match="reference must have the movie's sizes"):
        xnormcorre.rigid(movie, reference=movie.isel(time=slice(0, 5)), max_shifts=3)
    with pytest.raises(ValueError, match="reference"):
        xnormcorre.pwrigid(movie, reference=movie.isel(x=slice(0, 30)), max_shifts=3, strides=16, overlaps=8)
    with pytest.raises(ValueError, match="sigma"):
        xnormcorre.highpass(movie, sigma=0)
    with pytest.raises(TypeError, match="callable"):
        xnormcorre.map_frames(movie, "not a function")
    with pytest.raises(ValueError, match="shape"):
        xnormcorre.map_frames(movie, lambda b: b[:, :10]).values  # noqa: B018
