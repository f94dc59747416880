"""The template step's cheaper paths against the kernels they replace."""

from __future__ import annotations

import numpy as np
import pytest

from xnormcorre.engine import config, template, template_sample
from xnormcorre.engine.config import Calibration
from xnormcorre.engine.noise import UNIFORM
from xnormcorre.testing.simulate import simulate_movie


@pytest.fixture(scope="module")
def walk():
    return simulate_movie((64, 64), 40, photons_per_px=5.0, motion="walk", max_shift=3.0, seed=3)


def _params(walk):
    p = config.make_rigid_params((64, 64), max_shifts=(5, 5), batch_size=16)
    return p.calibrated(Calibration(None, UNIFORM, config.scale_for(walk.frames)))


def test_probe_mean_is_the_kernel_mean(walk):
    """The iterations' mean on the noise probe's program equals the mean step's kernel (to rounding)."""
    p = _params(walk)
    tmpl = walk.template.astype(np.float32)
    frames = walk.frames.astype(np.float32)
    mean, shifts, dev = template._probe_mean(p, frames, tmpl, 3, 37)
    ref, ref_shifts, _ = p.mean_registered(frames, tmpl, 3, 37)
    assert dev is None and mean.dtype == np.float32 and np.isfinite(mean).all()
    np.testing.assert_allclose(shifts, ref_shifts, atol=1e-4)
    np.testing.assert_allclose(mean, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_first_pass_gives_the_pass_template_and_the_noise_model(walk):
    """One registration of the sample: the template of a mean pass and the noise model of the probe."""
    p = _params(walk)
    frames = walk.frames.astype(np.float32)
    start = template.nanmedian(frames[:10])
    tmpl, shifts, noise = template_sample._first_pass(frames, start, p, None)
    ref, ref_shifts = template_sample._pass(frames, start, p)
    np.testing.assert_allclose(shifts, ref_shifts, atol=1e-4)
    np.testing.assert_allclose(tmpl, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    probe = template_sample._fit(template_sample._registered(frames, start, p)[1], None)
    assert noise.fitted and probe.fitted
    assert noise.gain == pytest.approx(probe.gain, rel=1e-4)
    assert noise.intercept == pytest.approx(probe.intercept, rel=1e-3, abs=1e-6 * abs(probe.gain))


def test_calibration_is_measured_on_the_movie_alone(walk):
    """The calibration does not depend on a template: the estimate's is ``calibrate``'s, bit
    for bit, and its noise model is the one fitted to the frames registered to the true
    template (gain and variance at the median level to 3 %).  The fit's gain is the
    simulation's 30 counts per photon to 25 % (each bin's lower-quartile variance is low
    by design)."""
    p = config.make_rigid_params((64, 64), max_shifts=(5, 5), batch_size=16)
    frames = walk.frames.astype(np.float32)
    est = template.estimate_template(frames, p, max_frames=30)
    cal = template.calibrate(frames, p)
    assert cal.defects is None and est.calibration.defects is None
    assert cal.noise == est.calibration.noise and cal.scale == est.calibration.scale
    assert cal.noise.fitted and cal.noise.gain == pytest.approx(30.0, rel=0.25)
    true = template_sample._fit(template_sample._registered(frames, walk.template, _params(walk))[1], None)
    assert cal.noise.gain == pytest.approx(true.gain, rel=0.03)
    level = float(np.median(walk.template))  # the variance the weights use, at a typical level
    var = cal.noise.gain * level + cal.noise.intercept
    assert var == pytest.approx(true.gain * level + true.intercept, rel=0.03)


def test_defect_movies_keep_the_kernel_mean(walk, monkeypatch):
    """With sensor defects the iterations use the kernel's mean step (it inpaints the defects)."""
    calls = []
    monkeypatch.setattr(template, "_probe_mean", lambda *a: calls.append(a) or pytest.fail("probe mean"))
    p = config.make_rigid_params((64, 64), max_shifts=(5, 5), batch_size=16)
    mask = np.zeros((64, 64), bool)
    mask[20, 30] = True
    est = template.estimate_template(walk.frames.astype(np.float32), p, defects=mask, max_frames=30)
    assert np.isfinite(est.template).all() and not calls
