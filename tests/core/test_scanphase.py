"""Bidirectional scan phase: estimation accuracy, correction, time windows, laziness, errors."""

from __future__ import annotations

import functools

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xnormcorre
from xnormcorre.core.scanphase import phase_attrs, resolve_scan_phase
from xnormcorre.engine import scanphase as esp

from .._bidi import bidi_movie

OFFSETS = (-2.2, -0.6, 0.3, 1.4)


@functools.lru_cache(maxsize=8)
def _movie(phase: float) -> xr.DataArray:
    """The 40 x 128 x 128 test movie for one offset (rendered once per session)."""
    return bidi_movie(phase, seed=1)


# --------------------------------------------------------------------------- estimation
@pytest.mark.parametrize("phase", OFFSETS)
def test_offset_recovered_within_005_px(phase):
    movie = _movie(phase)
    est = xnormcorre.scan_phase(movie)
    assert abs(float(est) - phase) <= 0.05
    assert est.attrs["units"] == "pixel" and "odd" in est.attrs["comment"]
    assert est.attrs["correlation"] > 0.9


def test_zero_offset_estimates_zero():
    for seed in (2, 3):
        assert abs(float(xnormcorre.scan_phase(bidi_movie(0.0, seed=seed)))) <= 0.03


@pytest.mark.parametrize("shape", [(127, 96), (63, 40)])
def test_odd_row_count_and_small_frames(shape):
    phase = 1.4
    est = float(xnormcorre.scan_phase(bidi_movie(phase, shape=shape, n_frames=60, photons=10.0, seed=4)))
    assert abs(est - phase) <= 0.05


def test_comb_gone_after_correction():
    """Correcting with the estimate leaves <= 0.05 px between odd and even lines."""
    for phase in OFFSETS:
        est = xnormcorre.scan_phase(_movie(phase))
        # the comb left in the corrected mean image, measured without noise
        clean = bidi_movie(phase, n_frames=1, seed=1, noise=False)
        residual = float(xnormcorre.scan_phase(xnormcorre.correct_scan_phase(clean, est)))
        assert abs(residual) <= 0.05
        # and the corrected odd lines match an unshifted scan of the same scene
        truth = bidi_movie(0.0, n_frames=1, seed=1, noise=False).values[0, 1::2, 8:-8]
        before = clean.values[0, 1::2, 8:-8]
        after = xnormcorre.correct_scan_phase(clean, est).values[0, 1::2, 8:-8]
        assert np.abs(after - truth).mean() < 0.1 * np.abs(before - truth).mean()


def test_sign_convention_matches_the_shift_convention():
    """Odd lines displaced by +p (content at x appears at x + p): phase = +p, correction moves them back."""
    frame = np.zeros((8, 40), np.float32)
    frame[:, 20] = 1.0
    frame[1::2] = np.roll(frame[1::2], 2, axis=1)  # odd lines' content at x = 22
    assert xnormcorre.correct_scan_phase(frame[None], 2.0).values[0, 1, 20] == pytest.approx(1.0)


def test_drift_recovered_in_window_mode():
    n = 240
    truth = 0.3 + np.arange(n) / (n - 1)  # 1 px of drift over the movie
    movie = bidi_movie(truth, n_frames=n, shape=(96, 96), photons=6.0, seed=6)
    est = xnormcorre.scan_phase(movie, window=30)
    assert est.dims == ("time",) and est.sizes["time"] == n
    assert np.abs(est.values - truth).max() <= 0.05
    assert len(est.attrs["window_phase"]) == 8 and est.attrs["window"] == 30
    centres = [
        (a + b - 1) / 2 for a, b in zip(est.attrs["window_start"], est.attrs["window_stop"], strict=True)
    ]
    assert np.abs(np.array(est.attrs["window_phase"]) - (0.3 + np.array(centres) / (n - 1))).max() <= 0.05
    # a single value for the same movie is the average offset
    assert abs(float(xnormcorre.scan_phase(movie)) - truth.mean()) <= 0.05
    # correcting per frame removes the drifting comb
    fixed = xnormcorre.correct_scan_phase(movie, est)
    assert abs(float(xnormcorre.scan_phase(fixed, n_frames=None))) <= 0.05


def test_median_smoothing_rejects_one_bad_window():
    phases = np.array([0.5, 0.52, 4.0, 0.56, 0.58])
    assert np.allclose(esp.smooth_window_phases(phases, 3)[2], 0.56)
    assert np.array_equal(esp.smooth_window_phases(phases, 1), phases)


# --------------------------------------------------------------------------- correction
def test_correction_is_lazy_and_covers_every_channel():
    phase = 1.4
    a = bidi_movie(phase, n_frames=12, shape=(48, 64), photons=5.0, seed=7)
    b = bidi_movie(phase, n_frames=12, shape=(48, 64), photons=5.0, seed=8)
    both = xr.concat([a, b], dim="channel").transpose("time", "channel", "y", "x")
    both = both.assign_coords(channel=[0, 1], y=np.arange(48), x=np.arange(64))
    lazy = both.chunk({"time": 5})
    with dask.config.set(scheduler=_forbid_compute):
        fixed = xnormcorre.correct_scan_phase(lazy, phase)
        per_frame = xnormcorre.correct_scan_phase(lazy, xr.DataArray(np.full(12, phase), dims="time"))
    assert isinstance(fixed.data, da.Array) and fixed.dims == ("time", "channel", "y", "x")
    assert fixed.dtype == np.float32 and fixed.chunks[0] == (5, 5, 2)
    eager = xnormcorre.correct_scan_phase(both, phase)
    np.testing.assert_array_equal(fixed.values, eager.values)
    np.testing.assert_array_equal(per_frame.values, eager.values)
    for c, single in enumerate((a, b)):
        np.testing.assert_array_equal(
            eager.isel(channel=c).values, xnormcorre.correct_scan_phase(single, phase).values
        )
    np.testing.assert_array_equal(eager.values[:, :, 0::2], both.values[:, :, 0::2])  # even lines untouched
    assert "scan_phase_correction" in fixed.attrs
    # the estimate on a two-channel movie averages the channels (they share the scan)
    assert abs(float(xnormcorre.scan_phase(both)) - phase) <= 0.05


def _forbid_compute(dsk, keys, **kwargs):
    raise AssertionError("dask computed while building a lazy correction")


def test_crop_starting_on_an_odd_line_keeps_the_parity():
    phase = -0.6
    movie = bidi_movie(phase, n_frames=30, shape=(96, 96), seed=9)
    movie = movie.assign_coords(y=np.arange(96), x=np.arange(96))
    crop = movie.isel(y=slice(1, None))
    assert abs(float(xnormcorre.scan_phase(crop)) - phase) <= 0.05
    np.testing.assert_array_equal(
        xnormcorre.correct_scan_phase(crop, phase).values,
        xnormcorre.correct_scan_phase(movie, phase).values[:, 1:],
    )
    with pytest.raises(ValueError, match="consecutive scan lines"):
        xnormcorre.scan_phase(movie.isel(y=slice(None, None, 2)))


def test_no_wrap_around_edges_replicated():
    ramp = np.tile(np.arange(32, dtype=np.float32), (3, 6, 1))
    out = esp.shift_odd_rows(ramp, 3.0)
    np.testing.assert_allclose(out[:, 1::2, -4:], 31.0, atol=1e-5)  # edge value, not the left edge
    out = esp.shift_odd_rows(ramp, -3.0)
    np.testing.assert_allclose(out[:, 1::2, :4], 0.0, atol=1e-5)
    np.testing.assert_allclose(out[:, 1::2, 10], 7.0, atol=1e-5)


def test_resolve_scan_phase_for_the_registration_functions():
    movie = bidi_movie(1.4, n_frames=20, shape=(64, 64), photons=5.0, seed=10)
    same, none = resolve_scan_phase(movie, None)
    assert same is movie and none is None and phase_attrs(None) == {}
    fixed, phase = resolve_scan_phase(movie, "auto")
    assert abs(float(phase) - 1.4) <= 0.05 and phase.attrs["source"] == "estimated"
    attrs = phase_attrs(phase)
    assert attrs["scan_phase"] == pytest.approx(float(phase)) and attrs["scan_phase_source"] == "estimated"
    np.testing.assert_array_equal(fixed.values, xnormcorre.correct_scan_phase(movie, phase).values)
    given, p2 = resolve_scan_phase(movie, phase)  # e.g. estimated on another channel
    assert p2.attrs["source"] == "given"
    np.testing.assert_array_equal(given.values, fixed.values)
    _, p3 = resolve_scan_phase(movie, "auto", window=10)
    assert p3.dims == ("time",) and phase_attrs(p3)["scan_phase_window"] == 10
    with pytest.raises(ValueError, match="'auto'"):
        resolve_scan_phase(movie, "automatic")
    with pytest.raises(TypeError, match="scan_phase must be"):
        resolve_scan_phase(movie, True)


# --------------------------------------------------------------------------- errors
def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least 3 rows and 24 columns"):
        xnormcorre.scan_phase(np.zeros((5, 2, 64)))
    with pytest.raises(ValueError, match="at least 3 rows and 24 columns"):
        xnormcorre.scan_phase(np.zeros((5, 16, 20)))
    with pytest.raises(ValueError, match="4 values for a movie of 5 frames"):
        xnormcorre.correct_scan_phase(np.zeros((5, 8, 32)), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        xnormcorre.correct_scan_phase(np.zeros((5, 8, 32)), float("nan"))
    with pytest.raises(ValueError, match="smooth must be an odd"):
        xnormcorre.scan_phase(np.zeros((10, 8, 32)), window=5, smooth=2)
    with pytest.raises(ValueError, match="window= needs"):
        xnormcorre.scan_phase(np.zeros((8, 32)), window=5)
    with pytest.warns(RuntimeWarning, match="no structure"):
        assert float(xnormcorre.scan_phase(np.ones((4, 16, 32)))) == 0.0
    with pytest.warns(RuntimeWarning, match="edge of the search range") as rec:
        xnormcorre.scan_phase(bidi_movie(4.0, n_frames=4, shape=(32, 64), photons=50.0, seed=11), max_phase=3)
    assert rec[0].filename == __file__
