"""The n-dimensional numeric steps (volumes) against their 2-D forms: the same maths."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xnormcorre.engine.borders import apply_border, apply_border_nd, border_limits, border_limits_nd
from xnormcorre.engine.config import gaussian_weight
from xnormcorre.engine.estimate import estimate_shift, estimate_shift_nd
from xnormcorre.engine.fourier import dft_at, dft_at_nd, fourier_shift, fourier_shift_nd, fourier_shift_np
from xnormcorre.engine.refine import gradient
from xnormcorre.engine.volume_estimate import gauss_newton_nd


def _image(shape, seed=0):
    from scipy import ndimage

    return ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 1.5).astype(np.float32)


def test_dft_and_fourier_shift_nd_match_2d():
    img = _image((24, 30))
    p = jnp.fft.rfft2(jnp.asarray(img))
    ry = jnp.asarray(np.linspace(-2, 2, 7, dtype=np.float32))
    rx = jnp.asarray(np.linspace(-3, 1, 5, dtype=np.float32))
    origin = (jnp.float32(0.3), jnp.float32(-1.2))
    a = np.asarray(dft_at(p, ry, rx, 24, 30, origin))
    b = np.asarray(dft_at_nd(p, (ry, rx), (24, 30), origin))
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3 * np.abs(a).max())
    s = (jnp.float32(1.3), jnp.float32(-0.7))
    np.testing.assert_allclose(
        np.asarray(fourier_shift_nd(p, s, (24, 30))), np.asarray(fourier_shift(p, *s, (24, 30))), atol=1e-5
    )


def test_fourier_shift_nd_moves_a_volume():
    """Moves by -shift: a volume displaced by +s (integer, exact) comes back."""
    vol = _image((8, 16, 12))
    s = (2, -3, 5)
    displaced = np.roll(vol, s, axis=(0, 1, 2))
    spec = jnp.fft.rfftn(jnp.asarray(displaced))
    back = fourier_shift_nd(spec, tuple(jnp.float32(v) for v in s), vol.shape)
    np.testing.assert_allclose(np.asarray(back), vol, atol=1e-5)


def test_estimate_shift_nd_matches_2d_and_recovers_3d():
    img = _image((48, 48), seed=1)
    frame = fourier_shift_np(img, (1.37, -2.61)).astype(np.float32)
    weight = jnp.asarray(gaussian_weight((48, 48), 1.15))
    es, ts = jnp.fft.rfft2(jnp.asarray(frame)), jnp.fft.rfft2(jnp.asarray(img - img.mean()))
    kw = dict(radius=(4, 4), upsample_factor=10, whiten=True, peak_fit=True)
    two = np.asarray(estimate_shift(es, ts, weight, (48, 48), **kw))
    nd = np.asarray(estimate_shift_nd(es, ts, weight, (48, 48), **kw))
    np.testing.assert_allclose(nd, two, atol=2e-3)
    np.testing.assert_allclose(nd, [1.37, -2.61], atol=0.05)
    # three axes, integer search (upsample_factor=1) and subpixel
    vol = _image((12, 32, 32), seed=2)
    k = np.meshgrid(*[np.fft.fftfreq(n) for n in vol.shape], indexing="ij")
    s = np.array([1.4, -2.2, 0.6])
    moved = np.fft.ifftn(
        np.fft.fftn(vol) * np.exp(-2j * np.pi * sum(ki * si for ki, si in zip(k, s, strict=True)))
    ).real
    k2 = sum(
        g**2 for g in np.meshgrid(*[np.fft.fftfreq(n) for n in (12, 32)], np.fft.rfftfreq(32), indexing="ij")
    )
    w3 = jnp.asarray(np.exp(-2 * np.pi**2 * 1.15**2 * k2).astype(np.float32))
    es3 = jnp.fft.rfftn(jnp.asarray(moved.astype(np.float32)))
    ts3 = jnp.fft.rfftn(jnp.asarray(vol - vol.mean()))
    sub = np.asarray(
        estimate_shift_nd(es3, ts3, w3, vol.shape, radius=(3, 4, 4), upsample_factor=20, whiten=True)
    )
    np.testing.assert_allclose(sub, s, atol=0.06)
    whole = np.asarray(
        estimate_shift_nd(es3, ts3, w3, vol.shape, radius=(3, 4, 4), upsample_factor=1, whiten=True)
    )
    np.testing.assert_array_equal(whole, np.round(s))


def test_borders_nd_match_2d():
    img = jnp.asarray(_image((20, 24), seed=3))
    for dy, dx in ((1.3, -2.2), (-0.4, 0.0), (0.0, 3.7)):
        sh = jnp.asarray([dy, dx], jnp.float32)
        lo, hi = border_limits_nd(sh, (20, 24))
        ly, hy, lx, hx = border_limits(jnp.float32(dy), jnp.float32(dx), 20, 24)
        assert [int(v) for v in lo] == [int(ly), int(lx)] and [int(v) for v in hi] == [int(hy), int(hx)]
        for border in ("copy", "nan", "zero", "min"):
            a, va = apply_border(img, jnp.float32(dy), jnp.float32(dx), border, jnp.float32(-1.0))
            b, vb = apply_border_nd(img, sh, border, jnp.float32(-1.0))
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
            np.testing.assert_array_equal(np.asarray(vb), np.asarray(va))


def test_gauss_newton_nd_step():
    vol = _image((10, 24, 24), seed=4).astype(np.float64) * 100 + 10
    s = np.array([0.2, -0.3, 0.15])
    k = np.meshgrid(*[np.fft.fftfreq(n) for n in vol.shape], indexing="ij")
    moved = np.fft.ifftn(
        np.fft.fftn(vol) * np.exp(-2j * np.pi * sum(ki * si for ki, si in zip(k, s, strict=True)))
    ).real
    grads = jnp.asarray(np.stack(gradient(vol)).astype(np.float32))
    lo = jnp.zeros(3, jnp.int32)
    hi = jnp.asarray([9, 23, 23], jnp.int32)
    step = np.asarray(
        gauss_newton_nd(jnp.asarray(moved, jnp.float32), jnp.asarray(vol, jnp.float32), grads, lo, hi)
    )
    np.testing.assert_allclose(step, s, atol=0.03)


def test_warp_nd_and_dense_field_nd_match_2d():
    """The n-D Keys cubic warp and dense field are the 2-D ones for two axes (same sums, same order)."""
    from xnormcorre.engine.patches import interp_matrix
    from xnormcorre.engine.warp import dense_field, warp
    from xnormcorre.engine.warp_nd import dense_field_nd, warp_nd

    img = jnp.asarray(_image((20, 24), seed=4))
    wy = jnp.asarray(interp_matrix(20, np.array([5.5, 14.5])))
    wx = jnp.asarray(interp_matrix(24, np.array([4.0, 12.0, 19.0])))
    ps = jnp.asarray(np.random.default_rng(5).uniform(-2, 2, (2, 3, 2)).astype(np.float32))
    fy, fx = dense_field(ps, wy, wx)
    gy, gx = dense_field_nd(ps, (wy, wx))
    np.testing.assert_allclose(np.asarray(gy), np.asarray(fy), atol=1e-6)
    np.testing.assert_allclose(np.asarray(gx), np.asarray(fx), atol=1e-6)
    for border in ("copy", "nan"):
        a, va = warp(img, fy, fx, border, jnp.float32(0.0), True)
        b, vb = warp_nd(img, (fy, fx), border, jnp.float32(0.0), True)
        np.testing.assert_array_equal(np.asarray(vb), np.asarray(va))
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6, equal_nan=True)


def test_warp_nd_moves_a_volume_by_minus_the_field():
    """A constant subpixel field on a smooth volume: Keys cubic equals the Fourier shift inside."""
    from scipy import ndimage

    from xnormcorre.engine.warp_nd import warp_nd

    vol = ndimage.gaussian_filter(np.random.default_rng(6).random((10, 16, 16)), 3.0, mode="wrap")
    vol = vol.astype(np.float32)
    s = (0.4, -1.3, 0.7)
    out, valid = warp_nd(jnp.asarray(vol), tuple(jnp.full(vol.shape, v, jnp.float32) for v in s), "nan", 0.0)
    ref = np.asarray(
        fourier_shift_nd(jnp.fft.rfftn(jnp.asarray(vol)), tuple(jnp.float32(v) for v in s), vol.shape)
    )
    inner = (slice(3, -3),) * 3
    np.testing.assert_allclose(np.asarray(out)[inner], ref[inner], atol=0.02 * np.ptp(vol))
    # sources at y - 1.3: the first two rows came from outside the volume
    assert np.isnan(np.asarray(out)[:, :2]).all() and not np.asarray(valid)[:, :2].any()
    assert np.isfinite(np.asarray(out)[:-1, 2:, :-1]).all() and np.isnan(np.asarray(out)[-1]).all()
