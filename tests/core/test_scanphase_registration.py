"""The scan_phase= option of rigid, pwrigid and apply_shifts on a bidirectional movie with motion."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import xarray as xr

import xnormcorre

from .._bidi import bidi_movie

PHASE = 1.4
N, SHAPE = 40, (64, 64)


def _walk(seed: int = 0) -> np.ndarray:
    """A smooth subpixel random walk (y, x) of up to ~3 px."""
    steps = np.random.default_rng(seed).normal(0, 0.5, (N, 2))
    walk = np.cumsum(steps, axis=0)
    return 3.0 * walk / np.abs(walk).max()


@functools.lru_cache(maxsize=4)
def _movies(photons: float = 5.0, seed: int = 20) -> tuple[xr.DataArray, xr.DataArray, np.ndarray]:
    """(combed movie, the same scan without comb, true shifts): same scene, motion and noise."""
    shifts = _walk()
    kw = dict(n_frames=N, shape=SHAPE, photons=photons, seed=seed, shifts=shifts)
    return bidi_movie(PHASE, **kw), bidi_movie(0.0, **kw), shifts


def _shift_rmse(est: np.ndarray, truth: np.ndarray) -> float:
    """RMS error of estimated shifts up to a constant offset (the template's position)."""
    err = (est - est.mean(0)) - (truth - truth.mean(0))
    return float(np.sqrt((err**2).sum(1).mean()))


def test_rigid_auto_recovers_phase_and_shifts():
    combed, clean, truth = _movies()
    res = xnormcorre.rigid(combed, max_shifts=5, scan_phase="auto")
    assert abs(float(res.scan_phase) - PHASE) <= 0.05
    assert res.scan_phase.attrs["units"] == "pixel" and "odd" in res.scan_phase.attrs["comment"]
    assert res.attrs["scan_phase"] == pytest.approx(float(res.scan_phase))
    assert res.attrs["scan_phase_source"] == "estimated"
    ref = xnormcorre.rigid(clean, max_shifts=5)
    rmse, rmse_clean = _shift_rmse(res.shifts.values, truth), _shift_rmse(ref.shifts.values, truth)
    uncorrected = _shift_rmse(xnormcorre.rigid(combed, max_shifts=5).shifts.values, truth)
    assert rmse <= 1.1 * rmse_clean + 0.01, (rmse, rmse_clean, uncorrected)
    assert rmse < 0.1
    # the comb is gone from the corrected mean image
    assert abs(float(xnormcorre.scan_phase(res.corrected))) <= 0.05
    # the option is recorded to run again
    assert xnormcorre.parameters_from_attrs(res.attrs)["scan_phase"] == "auto"


def test_apply_shifts_with_the_runs_phase_is_bit_identical():
    combed, _, _ = _movies()
    per_frame = xnormcorre.scan_phase(combed, window=10)  # a (time,) phase, as for a drifting offset
    res = xnormcorre.rigid(combed, max_shifts=5, scan_phase=per_frame)
    assert res.scan_phase.dims == ("time",) and res.attrs["scan_phase"] == "per frame"
    np.testing.assert_array_equal(res.scan_phase.values, per_frame.values)
    again = xnormcorre.apply_shifts(combed, res, scan_phase=res.scan_phase)
    np.testing.assert_array_equal(again.values, res.corrected.values)
    lazy = xnormcorre.apply_shifts(combed.chunk({"time": 16}), res, scan_phase=res.scan_phase)
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, res.corrected.values)
    # without the phase, the comb stays in
    plain = xnormcorre.apply_shifts(combed, res)
    assert not np.array_equal(plain.values, res.corrected.values)


def test_phase_estimated_on_the_reference_and_applied_to_both():
    combed, _, truth = _movies()
    dim, _, _ = _movies(photons=0.5, seed=21)  # a dim functional channel of the same scan
    res = xnormcorre.rigid(dim, reference=combed, max_shifts=5, scan_phase="auto")
    assert abs(float(res.scan_phase) - PHASE) <= 0.05
    assert _shift_rmse(res.shifts.values, truth) < 0.1
    lazy = xnormcorre.rigid(
        dim.chunk({"time": 20}), reference=combed.chunk({"time": 20}), max_shifts=5, scan_phase=res.scan_phase
    )
    assert lazy.corrected.chunks is not None
    np.testing.assert_array_equal(lazy.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(lazy.corrected.values, res.corrected.values)


def test_pwrigid_scan_phase_and_errors():
    combed, _, _ = _movies()
    res = xnormcorre.pwrigid(combed, max_shifts=5, strides=(32, 32), overlaps=(16, 16), scan_phase=PHASE)
    assert float(res.scan_phase) == PHASE and res.attrs["scan_phase_source"] == "given"
    assert abs(float(xnormcorre.scan_phase(res.corrected))) <= 0.05
    with pytest.raises(ValueError, match="scan_phase must be None, 'auto'"):
        xnormcorre.rigid(combed, scan_phase="on")
    with pytest.raises(TypeError, match="scan_phase must be"):
        xnormcorre.apply_shifts(combed, res, scan_phase=[1.0])
