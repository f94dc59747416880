"""Trustworthy shifts on data this project did not render: the subpixel refinement at the
statistical limit, sensor defects, multi-position movies, and the run diagnostics.

Movies come from the independent generator :mod:`xnormcorre.testing.simulate` (an
oversampled scene moved by spline interpolation, integrated to pixels, Poisson photons
times a gain plus read noise), scored against the Cramér-Rao bound of
:mod:`xnormcorre.testing.crlb`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xnormcorre
from xnormcorre.qc.diagnose import RegistrationWarning
from xnormcorre.testing.crlb import crlb, efficiency, rmse
from xnormcorre.testing.simulate import add_defects, simulate_movie

SHAPE = (96, 96)


@pytest.fixture(scope="module")
def walk():
    """150 frames of 96², walk <= 4 px, 5 photons/px."""
    return simulate_movie(SHAPE, 150, photons_per_px=5.0, max_shift=4.0, seed=3)


@pytest.fixture(scope="module")
def walk_result(walk):
    return xnormcorre.rigid(walk.frames, max_shifts=6)


def test_efficiency_near_the_cramer_rao_bound(walk, walk_result):
    bound = crlb(walk.clean, gain=walk.gain, read_noise=walk.read_noise, offset=walk.offset, stencil=5)
    eff = efficiency(walk_result.shifts.values, walk.shifts, bound.rmse)
    # the old estimator (phase correlation + Gaussian peak fit) reached 0.15-0.3 here
    assert eff >= 0.75, (eff, bound.rmse, rmse(walk_result.shifts.values, walk.shifts))
    assert walk_result.attrs["noise_model"] == "poisson-gaussian"
    assert walk_result.attrs["qc_verdict"] == "ok"
    assert walk_result.attrs["n_defects"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("photons", [1.0, 5.0, 20.0])
def test_efficiency_at_three_photon_levels(photons):
    sim = simulate_movie((128, 128), 300, photons_per_px=photons, max_shift=5.0, seed=0)
    bound = crlb(sim.clean, gain=sim.gain, read_noise=sim.read_noise, offset=sim.offset, stencil=5)
    res = xnormcorre.rigid(sim.frames, max_shifts=6)
    assert efficiency(res.shifts.values, sim.shifts, bound.rmse) >= 0.8


@pytest.mark.parametrize("kind", ["hot", "dead", "stuck", "line"])
def test_sensor_defects_are_left_out(walk, walk_result, kind):
    frames, mask = add_defects(walk.frames, fraction=0.005, kind=kind, seed=1)
    res = xnormcorre.rigid(frames, max_shifts=6)
    clean = rmse(walk_result.shifts.values, walk.shifts)
    assert rmse(res.shifts.values, walk.shifts) <= 1.2 * clean
    found = res.defect_mask.values.astype(bool)
    assert found[mask].mean() >= 0.9
    # the corrected movie keeps the defect pixels' values (moved with the frame)
    assert np.isfinite(res.corrected.values).all()


def test_one_hot_pixel_does_not_lock_the_shifts(walk, walk_result):
    frames = walk.frames.copy()
    frames[:, 40, 50] = 2 * walk.frames.max()
    res = xnormcorre.rigid(frames, max_shifts=6)
    assert rmse(res.shifts.values, walk.shifts) <= 1.2 * rmse(walk_result.shifts.values, walk.shifts)
    assert res.defect_mask.values[40, 50] == 1
    assert res.defect_mask.attrs["units"] == "1"


@pytest.mark.parametrize(
    ("motion", "separation"),
    [("two_position", 9.0), ("alternating", 9.0), ("three_position", 6.0)],
)
def test_multi_position_movies_converge_to_one_position(motion, separation):
    sim = simulate_movie(
        (128, 128), 60, photons_per_px=5.0, motion=motion, separation=separation, angle=0.0, seed=4
    )
    res = xnormcorre.rigid(sim.frames, max_shifts=7)
    assert rmse(res.shifts.values, sim.shifts) <= 0.1
    assert res.attrs["qc_verdict"] == "ok"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("motion", ["alternating", "two_position"])
def test_positions_further_apart_than_max_shifts_are_bridged(motion, seed):
    """Two positions 12 px apart with max_shifts=7: out of reach of a template at either,
    in reach of one midway (seed 1 of the alternating movie ended 8 px off, with no
    warning, before the first template was placed midway)."""
    sim = simulate_movie(
        (128, 128), 100, motion=motion, separation=12.0, max_shift=12.0, angle=0.0, seed=seed
    )
    res = xnormcorre.rigid(sim.frames, max_shifts=7)
    assert rmse(res.shifts.values, sim.shifts) <= 0.1
    assert res.attrs["qc_verdict"] == "ok"


def test_bridge_finds_the_displacement_between_two_medians():
    from xnormcorre.engine.template_sample import displacement

    sim = simulate_movie((128, 128), 40, motion="two_position", separation=12.0, angle=0.0, seed=3)
    x = sim.shifts[:, 1]
    a, b = np.median(sim.frames[x < x.mean()], 0), np.median(sim.frames[x > x.mean()], 0)
    d = displacement(a, b, (13, 13))
    true = np.median(sim.shifts[x > x.mean()], 0) - np.median(sim.shifts[x < x.mean()], 0)
    np.testing.assert_allclose(d, true, atol=0.5 + 1e-9)


def test_motion_beyond_the_search_range_warns():
    sim = simulate_movie(SHAPE, 60, photons_per_px=5.0, motion="walk", max_shift=8.0, seed=5)
    with pytest.warns(RegistrationWarning, match="search bound"):
        res = xnormcorre.rigid(sim.frames, max_shifts=2)
    assert res.attrs["qc_verdict"] == "suspect"
    assert "increase max_shifts" in res.attrs["qc_warnings"]


def test_no_warning_on_clean_real_movie(neurofinder_path):
    import tifffile

    movie = tifffile.imread(neurofinder_path)[:80]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegistrationWarning)
        res = xnormcorre.rigid(movie, max_shifts=8)
    assert res.attrs["qc_verdict"] == "ok"
    assert int(res.defect_mask.sum()) <= 16


def test_pwrigid_rigid_step_is_rigid(walk, walk_result):
    tmpl = walk_result.template
    pw = xnormcorre.pwrigid(walk.frames, max_shifts=6, strides=(32, 32), overlaps=(16, 16), template=tmpl)
    rig = xnormcorre.rigid(walk.frames, max_shifts=6, template=tmpl)
    np.testing.assert_array_equal(pw.rigid_shifts.values, rig.shifts.values)


def test_corrected_stays_within_the_input_range(walk):
    frames = walk.frames[:20]
    res = xnormcorre.rigid(frames, max_shifts=6, template=walk.template)
    lo = frames.min(axis=(1, 2))[:, None, None]
    hi = frames.max(axis=(1, 2))[:, None, None]
    c = res.corrected.values
    assert ((c >= lo) & (c <= hi)).all()
    raw = xnormcorre.rigid(frames, max_shifts=6, template=walk.template, clip=False).corrected.values
    assert ((raw < lo) | (raw > hi)).any()  # Fourier interpolation rings beyond the data
    np.testing.assert_array_equal(np.clip(raw, lo, hi), c)
    again = xnormcorre.apply_shifts(frames, res)
    np.testing.assert_array_equal(again.values, c)


def test_scale_invariance(walk):
    frames = walk.frames[:30].astype(np.float64)
    tmpl = walk.template
    base = xnormcorre.rigid(frames, max_shifts=6, template=tmpl).shifts.values
    # a power of two is exact: the same bits
    pow2 = xnormcorre.rigid(frames * 2.0**40, max_shifts=6, template=tmpl * 2.0**40).shifts.values
    np.testing.assert_array_equal(pow2, base)
    huge = xnormcorre.rigid(frames * 3e12, max_shifts=6, template=tmpl * 3e12).shifts.values
    np.testing.assert_allclose(huge, base, atol=2e-3)


def test_pwrigid_accepts_jnormcorre_configurations():
    # jnormcorre's own test grid: large max_shifts relative to the patches, overlaps >= strides
    sim = simulate_movie((95, 85), 12, photons_per_px=20.0, max_shift=3.0, seed=6)
    res = xnormcorre.pwrigid(sim.frames, max_shifts=(41, 41), strides=(30, 30), overlaps=(30, 30))
    assert res.shifts.shape[0] == 12
    assert rmse(res.rigid_shifts.values, sim.shifts) < 0.3


def test_upsample_factor_grid_warns_that_it_has_no_effect(walk):
    kw = dict(max_shifts=6, strides=(32, 32), overlaps=(16, 16), template=walk.template)
    with pytest.warns(UserWarning, match="upsample_factor_grid=16 has no effect") as rec:
        res = xnormcorre.pwrigid(walk.frames[:8], upsample_factor_grid=16, **kw)
    assert rec[0].filename == __file__  # the user's line, not the package's
    np.testing.assert_array_equal(res.shifts.values, xnormcorre.pwrigid(walk.frames[:8], **kw).shifts.values)
