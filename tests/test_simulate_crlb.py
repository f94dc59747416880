"""The independent movie simulator and the Cramér-Rao tools (NumPy/SciPy only, no JAX)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from xnormcorre.testing.crlb import crlb, crlb_patches, efficiency, fisher_information, rmse, shift_errors
from xnormcorre.testing.simulate import add_defects, camera, simulate_movie, trajectory

INNER = (slice(7, -7), slice(7, -7))


# ------------------------------------------------------------------ simulator: geometry


def test_integer_shift_is_exact_translation_of_template():
    """frame(r) = template(r - s): an integer shift reproduces the template's pixels exactly."""
    shifts = np.array([[0.0, 0.0], [2.0, -3.0], [-1.0, 4.0]])
    sim = simulate_movie((40, 48), 3, shifts=shifts, seed=1)
    np.testing.assert_array_equal(sim.clean[0], sim.template)
    for t in (1, 2):
        expected = np.roll(sim.template, shifts[t].astype(int), axis=(0, 1))
        np.testing.assert_allclose(sim.clean[t][INNER], expected[INNER], rtol=1e-6)
        # and it is scipy.ndimage.shift's convention
        via_scipy = ndimage.shift(sim.template.astype(np.float64), shifts[t], order=3)
        np.testing.assert_allclose(sim.clean[t][INNER], via_scipy[INNER], rtol=1e-5)


def test_subpixel_shift_matches_scipy_shift_sign():
    s = np.array([1.3, -0.6])
    sim = simulate_movie((40, 48), 2, shifts=np.array([[0.0, 0.0], s]), seed=1)
    tmpl = sim.template.astype(np.float64)
    frame = sim.clean[1].astype(np.float64)
    scale = tmpl[INNER].std()
    err_same = np.sqrt(np.mean((frame - ndimage.shift(tmpl, s, order=3))[INNER] ** 2)) / scale
    err_opposite = np.sqrt(np.mean((frame - ndimage.shift(tmpl, -s, order=3))[INNER] ** 2)) / scale
    assert err_same < 0.02  # pixel-level interpolation of the template vs sub-pixel rendering
    assert err_opposite > 0.5


def test_content_enters_from_outside_the_field_of_view():
    sim = simulate_movie((40, 48), 2, shifts=np.array([[0.0, 0.0], [0.0, -4.0]]), seed=2)
    frame = sim.clean[1].astype(np.float64)
    tmpl = sim.template.astype(np.float64)
    np.testing.assert_allclose(frame[:, :-4], tmpl[:, 4:], rtol=1e-6)
    # the 4 columns that entered on the right are new scene, not a copy/wrap of the template
    new = frame[:, -4:]
    assert np.abs(new - tmpl[:, -1:]).mean() > 0.1 * tmpl.std()
    assert np.abs(new - tmpl[:, :4]).mean() > 0.1 * tmpl.std()


def test_gradient_is_the_derivative_of_the_rendering():
    """SimulatedMovie.gradient = d clean / d r; the derivative with respect to the shift is its negative."""
    h = 0.01
    base = np.array([0.4, -0.7])
    shifts = np.array([base, base + [h, 0], base - [h, 0], base + [0, h], base - [0, h]])
    sim = simulate_movie((40, 48), 5, shifts=shifts, seed=1, with_gradient=True)
    clean = sim.clean.astype(np.float64)
    for axis, (plus, minus) in enumerate(((1, 2), (3, 4))):
        d_ds = (clean[plus] - clean[minus]) / (2 * h)
        g = sim.gradient[0, axis]
        assert np.linalg.norm(-d_ds - g) / np.linalg.norm(g) < 0.003


# ------------------------------------------------------------------ simulator: camera, motion


def test_camera_photon_transfer_and_exposure():
    sim = simulate_movie((16, 16), 400, motion="none", photons_per_px=5.0, seed=3)
    assert abs((sim.clean - sim.offset).mean() / sim.gain - 5.0) < 1e-4
    mu = sim.clean[0].astype(np.float64)
    np.testing.assert_allclose(sim.clean, np.broadcast_to(sim.clean[0], sim.clean.shape))
    mean, var = sim.frames.mean(0, dtype=np.float64), sim.frames.var(0, ddof=1, dtype=np.float64)
    assert np.abs(mean - mu).max() < 5 * np.sqrt(var.max() / 400)
    slope, intercept = np.polyfit(mu.ravel(), var.ravel(), 1)  # photon-transfer curve
    assert slope == pytest.approx(sim.gain, rel=0.1)
    assert intercept == pytest.approx(
        sim.read_noise**2 - sim.gain * sim.offset, abs=0.15 * sim.gain * mu.mean()
    )
    bright = sim.expose(20.0, seed=4)
    assert (bright.clean - bright.offset).mean() / bright.gain == pytest.approx(20.0, rel=1e-5)
    np.testing.assert_allclose(
        (bright.clean - bright.offset) / 4, sim.clean - sim.offset, rtol=1e-5, atol=1e-3
    )
    assert not np.array_equal(bright.frames, sim.frames)


def test_camera_function():
    adu = camera(np.full((300, 300), 3.0), gain=10.0, offset=50.0, read_noise=2.0, rng=1)
    assert adu.dtype == np.float32
    assert adu.mean() == pytest.approx(80.0, rel=0.01)
    assert adu.var() == pytest.approx(10.0**2 * 3.0 + 4.0, rel=0.03)
    with pytest.raises(ValueError, match="photons"):
        camera(np.full((2, 2), -1.0))


def test_motion_models():
    walk = trajectory(500, "walk", max_shift=3.0, seed=0)
    assert np.abs(walk).max() <= 3.0
    assert np.ptp(walk, axis=0).min() > 3.0  # it explores the range
    assert np.abs(np.diff(walk, axis=0)).max() < 1.0  # smoothly

    two = trajectory(61, "two_position", separation=9.0, seed=1)
    pos, counts = np.unique(two, axis=0, return_counts=True)
    assert len(pos) == 2 and sorted(counts) == [30, 31]
    assert np.linalg.norm(pos[0] - pos[1]) == pytest.approx(9.0)
    assert (np.diff(two, axis=0) != 0).any(axis=1).sum() == 1  # contiguous blocks

    alt = trajectory(40, "alternating", separation=12.0, seed=1)
    np.testing.assert_array_equal(alt[::2], np.broadcast_to(alt[0], (20, 2)))
    np.testing.assert_array_equal(alt[1::2], np.broadcast_to(alt[1], (20, 2)))
    assert np.linalg.norm(alt[0] - alt[1]) == pytest.approx(12.0)

    three = trajectory(90, "three_position", separation=6.0, seed=2)
    pos, counts = np.unique(three, axis=0, return_counts=True)
    assert len(pos) == 3 and counts.tolist() == [30, 30, 30]
    d = [np.linalg.norm(pos[i] - pos[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    np.testing.assert_allclose(d, 6.0)

    jumps = trajectory(100, "jumps", max_shift=4.0, n_positions=3, seed=3)
    assert len(np.unique(jumps, axis=0)) <= 3 and np.abs(jumps).max() <= 4.0
    np.testing.assert_array_equal(trajectory(5, "none"), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="motion must be one of"):
        trajectory(5, "spin")


def test_nonrigid_field_and_patch_shifts():
    sim = simulate_movie((64, 64), 4, max_shift=2.0, nonrigid=1.5, nonrigid_scale=48, seed=4)
    assert sim.field.shape == (4, 2, 64, 64)
    np.testing.assert_allclose(sim.field.mean(axis=(2, 3)), sim.shifts, atol=1e-4)
    nr = sim.field - sim.shifts[:, :, None, None]
    assert 0.7 < np.abs(nr).max() <= 1.5 + 1e-6  # peak amplitude (estimated on pixel centres)
    bounds = [(0, 32), (32, 64)]
    ps = sim.patch_shifts(bounds, bounds)
    assert ps.shape == (4, 2, 2, 2)
    np.testing.assert_allclose(ps[:, 1, 0], sim.field[:, :, 32:, :32].mean(axis=(2, 3)), rtol=1e-6)
    # the content is displaced by the local field: least squares on a small clean patch recovers it
    sim = simulate_movie((64, 64), 3, max_shift=1.0, nonrigid=1.5, nonrigid_scale=128, seed=4)
    t = 2
    nr = np.linalg.norm(sim.field[t] - sim.shifts[t][:, None, None], axis=0)
    nr[:14] = nr[-14:] = 0
    nr[:, :14] = nr[:, -14:] = 0
    cy, cx = np.unravel_index(np.argmax(nr), nr.shape)  # where the deformation is largest
    win = (slice(cy - 6, cy + 6), slice(cx - 6, cx + 6))
    local = sim.field[t][(slice(None), *win)].mean(axis=(1, 2))
    spread = np.abs(sim.field[t][(slice(None), *win)] - local[:, None, None]).max()
    assert np.linalg.norm(local - sim.shifts[t]) > 0.5 and spread < 0.4
    tmpl = sim.template.astype(np.float64)
    frame = sim.clean[t].astype(np.float64)
    weight = 1.0 / (sim.gain * (frame[win] - sim.offset) + sim.read_noise**2)

    def cost(s):
        return np.sum(weight * (ndimage.shift(tmpl, s, order=3)[win] - frame[win]) ** 2)

    from scipy.optimize import minimize

    est = minimize(cost, sim.shifts[t], method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-10}).x
    assert np.linalg.norm(est - local) < 0.1 < 0.5 < np.linalg.norm(est - sim.shifts[t])
    # a weighted fit weights the field by each pixel's Fisher information, not uniformly
    fisher = sim.patch_shifts([(cy - 6, cy + 6)], [(cx - 6, cx + 6)], weighting="fisher")[t, 0, 0]
    np.testing.assert_allclose(
        sim.patch_shifts([(cy - 6, cy + 6)], [(cx - 6, cx + 6)])[t, 0, 0], local, rtol=1e-6
    )
    assert np.linalg.norm(est - fisher) < min(0.02, np.linalg.norm(est - local) / 2)


def test_activity_and_template():
    sim = simulate_movie((48, 48), 60, motion="none", activity=1.0, seed=5)
    assert sim.activity.shape[0] == 60 and sim.activity.max() > 0.5
    # the template is the time average of the (static-position) clean frames
    np.testing.assert_allclose(sim.template, sim.clean.mean(0), rtol=1e-4)
    assert sim.clean.std(0).max() > 0.05 * sim.clean.mean()


def test_same_seed_same_bits_and_validation():
    a = simulate_movie((24, 24), 5, seed=7, activity=0.5, nonrigid=0.5)
    b = simulate_movie((24, 24), 5, seed=7, activity=0.5, nonrigid=0.5)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.field, b.field)
    c = simulate_movie((24, 24), 5, seed=8)
    assert not np.array_equal(a.shifts, c.shifts)
    with pytest.raises(ValueError, match="photons_per_px must be > 0"):
        simulate_movie((24, 24), 2, photons_per_px=0)
    with pytest.raises(ValueError, match=r"shifts must be a finite \(n_frames, 2\)"):
        simulate_movie((24, 24), 2, shifts=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape must be >= 8"):
        simulate_movie((4, 24), 2)


@pytest.mark.parametrize("kind", ["hot", "dead", "stuck", "line"])
def test_defects_are_static_in_sensor_coordinates(kind):
    sim = simulate_movie((40, 40), 6, max_shift=3.0, seed=6)
    bad, mask = add_defects(sim.frames, 0.01, kind, seed=1)
    assert bad.shape == sim.frames.shape and mask.shape == (40, 40)
    np.testing.assert_array_equal(bad[:, ~mask], sim.frames[:, ~mask])  # nothing else touched
    diff = bad[:, mask] - sim.frames[:, mask]
    if kind == "line":
        assert mask.all(axis=1).sum() == mask.any(axis=1).sum() == 1  # whole rows (1 % of 40 -> 1)
    else:
        assert mask.sum() == 16
    if kind in ("hot", "line"):
        np.testing.assert_allclose(diff, sim.frames.max(), rtol=1e-6)
    elif kind == "dead":
        assert (bad[:, mask] == 0).all()
    else:  # stuck: constant in time, per-pixel level inside the movie's range
        assert (bad[:, mask] == bad[:1, mask]).all()
        assert len(np.unique(bad[0, mask])) == mask.sum()
        assert sim.frames.min() <= bad[:, mask].min() and bad[:, mask].max() <= sim.frames.max()
    with pytest.raises(ValueError, match="kind must be one of"):
        add_defects(sim.frames, 0.01, "warm")


# ------------------------------------------------------------------ Cramér-Rao bound


def _blobs(shape, centres, amps, width, shift=(0.0, 0.0)):
    """Sum of Gaussian spots (photons) and its exact gradient, content displaced by `shift`."""
    y, x = np.indices(shape, dtype=np.float64)
    lam = np.zeros(shape)
    gy = np.zeros(shape)
    gx = np.zeros(shape)
    for (cy, cx), a in zip(centres, amps, strict=True):
        dy, dx = y - cy - shift[0], x - cx - shift[1]
        g = a * np.exp(-(dy**2 + dx**2) / (2 * width**2))
        lam += g
        gy -= g * dy / width**2
        gx -= g * dx / width**2
    return lam, np.stack([gy, gx])


def test_crlb_closed_form_gaussian_spot_read_noise_only():
    amp, sigma = 50.0, 2.0
    for width in (3.0, 5.0):
        lam, grad = _blobs((64, 64), [(32.0, 31.5)], [amp], width)
        mu = 100.0 + lam
        closed = 2 * sigma / (amp * np.sqrt(np.pi))  # sqrt(trace(I^-1)), I = pi A^2 / (2 sigma^2) per axis
        exact = crlb(mu, gain=0.0, read_noise=sigma, offset=100.0, gradient=grad[None])
        assert exact.rmse == pytest.approx(closed, rel=1e-3)
        assert crlb(mu, gain=0.0, read_noise=sigma, offset=100.0).rmse == pytest.approx(closed, rel=0.03)
        assert crlb(mu, gain=0.0, read_noise=sigma, offset=100.0, stencil=5).rmse == pytest.approx(
            closed, rel=0.005
        )
        np.testing.assert_allclose(
            exact.fisher[0], np.pi * amp**2 / (2 * sigma**2) * np.eye(2), rtol=1e-3, atol=1e-9
        )


def test_crlb_poisson_gaussian_variance_model():
    gain, offset, rn = 30.0, 100.0, 10.0
    lam, grad = _blobs((40, 40), [(15.0, 18.0), (25.0, 22.0)], [12.0, 8.0], 2.5)
    lam += 2.0
    mu = offset + gain * lam
    var = gain**2 * lam + rn**2  # ADU^2: gain * (mu - offset) + rn^2
    gy, gx = gain * grad
    expected = np.array(
        [[np.sum(gy * gy / var), np.sum(gy * gx / var)], [np.sum(gx * gy / var), np.sum(gx * gx / var)]]
    )
    info = fisher_information(mu, gain=gain, read_noise=rn, offset=offset, gradient=gain * grad[None])
    np.testing.assert_allclose(info[0], expected, rtol=1e-12)
    b = crlb(mu, gain=gain, read_noise=rn, offset=offset)
    assert b.rmse == pytest.approx(np.sqrt(np.trace(np.linalg.inv(expected))), rel=0.05)
    # variance floored at read_noise^2 below the offset
    low = crlb(mu - 2 * gain * lam.max(), gain=gain, read_noise=rn, offset=offset)
    assert low.rmse == pytest.approx(crlb(mu, gain=0.0, read_noise=rn).rmse, rel=1e-12)
    with pytest.raises(ValueError, match="cannot both be 0"):
        crlb(mu, gain=0.0, read_noise=0.0)


def test_crlb_patches_tile_the_frame():
    sim = simulate_movie((48, 64), 3, max_shift=2.0, seed=9)
    kw = dict(gain=sim.gain, read_noise=sim.read_noise, offset=sim.offset)
    whole = crlb(sim.clean, **kw)
    parts = crlb_patches(sim.clean, [(0, 20), (20, 48)], [(0, 32), (32, 64)], **kw)
    assert parts.fisher.shape == (3, 2, 2, 2, 2) and parts.rmse.shape == (2, 2)
    np.testing.assert_allclose(parts.fisher.sum(axis=(1, 2)), whole.fisher, rtol=1e-10)
    assert (parts.rmse > whole.rmse).all()
    assert float(whole) == whole.rmse


def test_efficient_estimator_reaches_the_bound():
    """Monte Carlo: weighted Gauss-Newton with the known model attains efficiency ~1."""
    gain, offset, rn = 30.0, 100.0, 10.0
    shape, centres, amps, width = (24, 24), [(9.0, 10.0), (15.0, 14.0), (12.0, 5.5)], [10.0, 6.0, 8.0], 2.0
    rng = np.random.default_rng(0)
    n = 300
    true = rng.uniform(-1.0, 1.0, (n, 2))

    def model(s):
        lam, grad = _blobs(shape, centres, amps, width, s)
        return offset + gain * (lam + 2.0), gain * grad

    clean = np.empty((n, *shape))
    grads = np.empty((n, 2, *shape))
    for k in range(n):
        clean[k], grads[k] = model(true[k])
    frames = camera((clean - offset) / gain, gain=gain, offset=offset, read_noise=rn, rng=rng).astype(
        np.float64
    )
    est = np.zeros((n, 2))
    for k in range(n):
        s = np.zeros(2)
        for _ in range(8):  # Gauss-Newton, weights from the model (not from the noisy frame)
            mu, g = model(s)
            w = 1.0 / (gain * (mu - offset) + rn**2)
            jac = -g.reshape(2, -1)  # d mu / d s
            r = (frames[k] - mu).ravel()
            s = s + np.linalg.solve((jac * w.ravel()) @ jac.T, (jac * w.ravel()) @ r)
        est[k] = s
    bound = crlb(clean, gain=gain, read_noise=rn, offset=offset, gradient=grads)
    eff = efficiency(est, true, bound)
    assert 0.85 < eff < 1.15, eff
    # the central-difference bound of the same movie agrees within a few %
    assert crlb(clean, gain=gain, read_noise=rn, offset=offset).rmse == pytest.approx(bound.rmse, rel=0.06)
    # an estimator that ignores half the data is not efficient
    assert efficiency(est + rng.normal(0, bound.rmse, est.shape), true, bound) < 0.5


def test_efficiency_and_rmse_remove_the_constant_offset():
    rng = np.random.default_rng(1)
    true = rng.uniform(-3, 3, (2000, 2))
    noise = rng.normal(0, 0.05, true.shape)
    est = true + np.array([0.4, -1.1]) + noise
    assert rmse(est, true) == pytest.approx(0.05 * np.sqrt(2), rel=0.05)
    assert rmse(est, true, remove_offset=False) > 1.0
    assert efficiency(est, true, 0.05 * np.sqrt(2)) == pytest.approx(1.0, rel=0.05)
    np.testing.assert_allclose(shift_errors(est, true).mean(0), 0.0, atol=1e-12)
    # per patch: (T, ny, nx, 2) with a bound per patch
    est_p = np.broadcast_to(est[:, None, None], (2000, 2, 3, 2))
    true_p = np.broadcast_to(true[:, None, None], (2000, 2, 3, 2))
    eff_p = efficiency(est_p, true_p, np.full((2, 3), 0.1))
    assert eff_p.shape == (2, 3)
    np.testing.assert_allclose(eff_p, 0.1**2 / np.mean(np.sum(shift_errors(est, true) ** 2, -1)))
    with pytest.raises(ValueError, match="estimated and true"):
        efficiency(est, true[:10], 0.1)
