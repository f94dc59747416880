"""Engine kernels against exact (integer/rolled) cases and a NumPy oracle."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xnormcorre.engine import config, rigid, runner, template
from xnormcorre.testing.strategies import smooth_image


def _params(shape, max_shifts=(6, 6), **kw):
    kw.setdefault("batch_size", 8)
    return config.make_rigid_params(shape, max_shifts=max_shifts, **kw)


def _brute_force_peak(frame, template, m):
    """NumPy oracle: integer shift maximizing the cyclic correlation within ±m."""
    best, arg = -np.inf, None
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            v = np.sum(np.roll(template, (dy, dx), axis=(0, 1)) * frame)
            if v > best:
                best, arg = v, (dy, dx)
    return arg


@pytest.mark.parametrize("shift", [(0, 0), (3, -2), (-5, 5), (6, -6), (1, 4)])
def test_integer_shift_exact_and_window_inclusive(shift):
    tmpl = smooth_image((48, 56), seed=1)
    frame = np.roll(tmpl, shift, axis=(0, 1))[None]
    # plain cross-correlation, no taper: the cyclic case is exact
    p = _params(tmpl.shape, phase_corr=False, smooth_sigma=0, taper=0, upsample_factor=1)
    s, _, _ = rigid.register_frames(frame, tmpl, p, apply=False)
    np.testing.assert_array_equal(s[0], shift)  # ±max_shifts included (jnormcorre's [-S, S-1] pitfall)
    assert _brute_force_peak(frame[0], tmpl, 6) == shift


def test_coarse_peak_matches_numpy_oracle():
    rng = np.random.default_rng(0)
    tmpl = smooth_image((40, 40), seed=5)
    frames = tmpl[None] + rng.normal(scale=30, size=(6, 40, 40)).astype(np.float32)
    frames = np.stack([np.roll(f, tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) for f in frames])
    p = _params(tmpl.shape, max_shifts=(4, 4), phase_corr=False, smooth_sigma=0, taper=0, upsample_factor=1)
    s, _, _ = rigid.register_frames(frames.astype(np.float32), tmpl, p, apply=False)
    for f, sh in zip(frames, s, strict=True):
        assert tuple(sh.astype(int)) == _brute_force_peak(f, tmpl, 4)


def test_search_restricted_to_max_shifts():
    tmpl = smooth_image((48, 48), seed=2)
    frame = np.roll(tmpl, (9, 0), axis=(0, 1))[None]
    p = _params(tmpl.shape, max_shifts=(4, 4), upsample_factor=5)
    s, _, _ = rigid.register_frames(frame, tmpl, p, apply=False)
    assert np.all(np.abs(s) <= 4.0)


def _np_fourier_displace(img, d):
    """NumPy oracle: displace a periodic image's content by ``d`` (exact, cyclic)."""
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (ky * d[0] + kx * d[1]))
    return np.real(np.fft.ifft2(np.fft.fft2(img) * ramp)).astype(np.float32)


@pytest.mark.parametrize("us", [1, 3, 10, 20])
def test_subpixel_grid(us):
    tmpl = smooth_image((48, 48), seed=3)
    true = np.array([[1.37, -2.61]])
    frame = _np_fourier_displace(tmpl, true[0])[None]  # periodic texture displaced by +true
    p = _params(tmpl.shape, upsample_factor=us, taper=0)
    s, _, _ = rigid.register_frames(frame, tmpl, p, apply=False)
    if us == 1:
        np.testing.assert_array_equal(s[0], np.round(s[0]))  # integer shifts only
        assert np.all(np.abs(s[0] - true[0]) <= 0.5)
    else:  # the upsampled DFT + parabolic fit is at least 1/us accurate
        assert np.all(np.abs(s[0] - true[0]) <= min(0.5 / us, 0.05)), s[0]


def test_apply_shifts_inverts_fourier_shift():
    tmpl = smooth_image((40, 56), seed=4, sigma=2.0)
    sh = np.array([[2.3, -1.7], [-0.4, 0.9]])
    moved = rigid.apply_shifts(np.stack([tmpl, tmpl]), -sh, border="copy")
    back = rigid.apply_shifts(moved, sh, border="nan")
    ok = np.isfinite(back)
    inner = ok.copy()
    inner[:, :6] = inner[:, -6:] = False
    inner[:, :, :6] = inner[:, :, -6:] = False
    err = np.abs(back - tmpl)[inner]
    assert err.max() < 0.02 * (tmpl.max() - tmpl.min())


@pytest.mark.parametrize("border", ["copy", "nan", "zero", "min"])
def test_border_modes_never_wrap(border):
    h, w = 32, 40
    tmpl = np.zeros((h, w), np.float32)
    tmpl[:, :] = np.arange(w, dtype=np.float32)[None]  # a ramp: wrap-around would bring large values left
    out = np.asarray(
        rigid.shift_batch(tmpl[None], np.array([[0.0, -3.0]], np.float32), np.float32(-7.0), border=border)
    )[0]
    # moved right by 3 px: the 3 left columns came from outside the frame
    if border == "copy":
        np.testing.assert_allclose(out[:, :3], out[:, 3:4].repeat(3, 1))
    elif border == "nan":
        assert np.isnan(out[:, :3]).all() and np.isfinite(out[:, 3:]).all()
    elif border == "zero":
        assert (out[:, :3] == 0).all()
    else:
        assert (out[:, :3] == -7.0).all()
    np.testing.assert_allclose(out[:, 3:], tmpl[:, :-3], atol=1e-3)


def test_batch_padding_and_batch_size_do_not_change_bits():
    tmpl = smooth_image((48, 48), seed=7)
    rng = np.random.default_rng(1)
    frames = (tmpl[None] + rng.normal(scale=20, size=(11, 48, 48))).astype(np.float32)
    out = [rigid.register_frames(frames, tmpl, _params(tmpl.shape, batch_size=bs)) for bs in (4, 16)]
    for a, b in zip(*out, strict=True):
        np.testing.assert_array_equal(a, b)


def test_split_bounds_cover_each_frame_once():
    b = template.split_bounds(2503, 1000)
    assert b == [(0, 1000), (1000, 2000), (2000, 2503)]
    assert sum(e - s for s, e in b) == 2503


def test_default_batch_size_is_power_of_two():
    for shape in [(64, 64), (256, 256), (512, 512), (1024, 1024), (100, 300)]:
        b = runner.default_batch_size(shape)
        assert b >= 1 and b & (b - 1) == 0


def test_gaussian_peak_fit_default_and_exact_for_translation():
    # the default (phase correlation, smooth_sigma 1.15) starts the subpixel search from
    # a Gaussian fit of the peak; the classic estimate and light smoothing do not
    assert _params((48, 48)).peak_fit
    assert not _params((48, 48), phase_corr=False).peak_fit
    assert not _params((48, 48), smooth_sigma=0.5).peak_fit
    tmpl = smooth_image((64, 64), seed=11)
    true = np.array([[0.5, -0.5], [2.23, 0.07], [-3.91, 4.46], [0.0, 0.0]])
    frames = np.stack([_np_fourier_displace(tmpl, d) for d in true])
    s, _, _ = rigid.register_frames(frames, tmpl, _params(tmpl.shape, taper=0), apply=False)
    np.testing.assert_allclose(s, true, atol=0.01)
    # the Gaussian fit alone (before the small upsampled grid) is exact for this case
    from xnormcorre.engine.estimate import _gauss_peak, cross_power

    p = _params(tmpl.shape, taper=0)
    tspec = np.fft.rfft2(tmpl - tmpl.mean()).astype(np.complex64)
    for f, d in zip(frames, true, strict=True):
        cp = cross_power(np.fft.rfft2(f).astype(np.complex64), tspec, p.weight, True)
        np.testing.assert_allclose(np.array(_gauss_peak(cp, tmpl.shape, (6, 6))), d, atol=0.01)


def test_template_mean_averages_each_pixel_over_the_frames_that_kept_it():
    """The rigid template step averages each pixel over the frames in which it stayed in
    view (never wrapped or filled content), whatever ``border``: the NaN-aware mean of
    the corrected frames, with no NaN left."""
    from dataclasses import replace

    tmpl = smooth_image((48, 64), seed=12, sigma=2.0)
    rng = np.random.default_rng(3)
    true = rng.uniform(-3, 3, size=(9, 2))
    frames = np.stack([_np_fourier_displace(tmpl, d) for d in true])
    for border in ("copy", "nan"):
        p = _params(tmpl.shape, border=border, taper=0)
        mean, shifts, _ = p.mean_registered(frames, tmpl, 0, len(frames))
        assert np.isfinite(mean).all()
        np.testing.assert_array_equal(shifts, rigid.register_frames(frames, tmpl, p, apply=False)[0])
        probe = replace(p, border="nan", clip=False)
        _, corrected, _ = rigid.register_frames(frames, tmpl, probe)
        seen = np.isfinite(corrected).any(axis=0)
        assert seen.mean() > 0.9
        with np.errstate(invalid="ignore"):
            expect = np.nanmean(corrected, axis=0)
        np.testing.assert_allclose(mean[seen], expect[seen], atol=1e-3 * np.ptp(tmpl))
        # the mean is far closer to the template than an edge-replicated one would be
        np.testing.assert_allclose(mean, tmpl, atol=0.02 * np.ptp(tmpl))


def test_template_bits_do_not_depend_on_batch_size():
    tmpl = smooth_image((48, 48), seed=13)
    rng = np.random.default_rng(4)
    frames = np.stack([_np_fourier_displace(tmpl, d) for d in rng.uniform(-2, 2, size=(37, 2))])
    frames = (frames + rng.normal(scale=5, size=frames.shape)).astype(np.float32)
    out = [
        template.estimate_template(frames, _params(tmpl.shape, batch_size=bs), frames_per_split=20).template
        for bs in (3, 8, 64)
    ]
    for t in out[1:]:
        np.testing.assert_array_equal(t, out[0])


def test_kernel_arrays_computed_once_per_template():
    """A pass reads many batches with one template: its arrays are computed once, looked
    up by content (a copy of the template hits), and recomputed for another template or
    noise model."""
    from xnormcorre.engine.noise import NoiseModel

    shape = (32, 40)
    params = config.make_rigid_params(shape, n_frames=10, max_shifts=(3, 3), upsample_factor=4)
    tmpl = smooth_image(shape, 0)
    first = rigid.kernel_arrays(params, tmpl)
    assert rigid.kernel_arrays(params, tmpl.copy()) is first
    other = tmpl.copy()
    other[0, 0] += 1.0
    assert rigid.kernel_arrays(params, other) is not first
    noisy = rigid.kernel_arrays(dataclasses.replace(params, noise=NoiseModel(2.0, 1.0, True)), tmpl)
    assert noisy is not first
    assert len(rigid._ARRAYS) <= rigid._ARRAYS_KEEP


def test_template_step_and_final_pass_share_one_program():
    """The border and clipping are traced arguments of the rigid kernel: the template step
    (NaN border, unclipped), the noise probe and the final pass compile one program."""
    import xarray as xr

    import xnormcorre
    from xnormcorre.engine import rigid_kernels
    from xnormcorre.engine.fourier import fourier_shift_np

    img = smooth_image((36, 44), 3) * 100.0
    rng = np.random.default_rng(3)
    movie = np.stack([fourier_shift_np(img, rng.uniform(-2, 2, 2)) for _ in range(24)]).astype(np.float32)
    before = rigid_kernels._register._cache_size()
    res = xnormcorre.rigid(xr.DataArray(movie, dims=("time", "y", "x")), max_shifts=(4, 4))
    assert rigid_kernels._register._cache_size() - before == 1
    assert np.isfinite(res.corrected.values).all()  # the final pass's border is "copy"


def test_refine_false_is_the_grid_peak_on_the_same_program():
    """``register_batch(..., refine=False)`` (a traced flag) skips the Gauss-Newton steps:
    the shifts are those of the same registration with ``refine_steps=0`` (the
    correlation peak on the upsampled grid), ``refine=True`` gives the refined ones, and
    both run one compiled program."""
    from xnormcorre.engine import rigid_kernels

    tmpl = smooth_image((40, 52), seed=5) * 50.0
    true = np.array([[0.37, -1.21], [2.64, 0.08], [-1.93, 2.46], [0.0, 0.5]])
    frames = np.stack([_np_fourier_displace(tmpl, d) for d in true]).astype(np.float32)
    rng = np.random.default_rng(1)
    frames = frames + rng.normal(0.0, 0.5, frames.shape).astype(np.float32)
    p = _params(tmpl.shape, max_shifts=(4, 4))
    assert p.refine_steps > 0 and p.peak_fit
    grid_only = dataclasses.replace(p, refine_steps=0)
    fill = np.float32(0.0)

    def shifts(params, **kw):
        arrays = rigid.kernel_arrays(params, tmpl)
        out = rigid.register_batch(frames, tmpl, fill, *arrays, apply=False, **kw, **params.kernel_kwargs())
        return np.asarray(out)

    before = rigid_kernels._register._cache_size()
    refined = shifts(p)
    peak = shifts(p, refine=False)
    assert rigid_kernels._register._cache_size() - before == 1  # one program for both
    # the same computation, compiled in another program: equal to float32 rounding
    np.testing.assert_allclose(peak, shifts(grid_only), rtol=0, atol=1e-6)
    assert np.abs(peak - refined).max() > 1e-4
    # both near the truth; the steps refine the grid peak further
    np.testing.assert_allclose(peak, true, atol=0.1)
    np.testing.assert_allclose(refined, true, atol=0.05)
    # the default is the registration itself (another batch layout: to float32 rounding)
    reg = rigid.register_frames(frames, tmpl, p, apply=False)[0]
    np.testing.assert_allclose(refined, reg, rtol=0, atol=1e-6)
