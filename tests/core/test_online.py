"""online(): NoRMCorre's streaming correction with template updates."""

from __future__ import annotations

import numpy as np
import pytest

import xnormcorre
from xnormcorre.testing.crlb import rmse
from xnormcorre.testing.simulate import simulate_movie

SHAPE = (64, 64)


@pytest.fixture(scope="module")
def walk():
    """A 2000-frame random walk up to 4 px (2x oversampled scene: fast to render)."""
    return simulate_movie(SHAPE, 2000, max_shift=4.0, seed=1, oversample=2)


def test_online_recovers_a_2000_frame_walk_as_well_as_the_batch(walk):
    batch = rmse(xnormcorre.rigid(walk.frames, max_shifts=6).shifts.values, walk.shifts)
    stream = xnormcorre.online(iter(walk.frames), max_shifts=6)  # a generator of frames
    out = [(frame, shift) for frame, shift in stream]
    shifts = np.array([s for _, s in out])
    assert len(out) == 2000 and out[0][0].shape == SHAPE and shifts.dtype == np.float32
    assert stream.n_updates == 10  # every bin_width=200 frames
    err = rmse(shifts, walk.shifts)
    assert err <= 1.5 * batch, (err, batch)
    assert batch < 0.1


def test_online_is_deterministic_and_takes_arrays_or_iterables(walk):
    frames = walk.frames[:300]
    kw = {"init_frames": 60, "bin_width": 50, "buffer_width": 3, "max_shifts": 6}
    a = list(xnormcorre.online(frames, **kw))
    b = list(xnormcorre.online(iter(list(frames)), **kw))
    c = list(xnormcorre.online(xnormcorre.as_movie(frames, chunks=32), **kw))
    for x, y, z in zip(a, b, c, strict=True):
        assert np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
        assert np.array_equal(x[0], z[0]) and np.array_equal(x[1], z[1])


def test_template_updates(walk):
    frames = walk.frames[:240]
    kw = {"init_frames": 60, "bin_width": 60, "max_shifts": 6}
    fixed = xnormcorre.online(frames, update=None, **kw)
    shifts = np.array([s for _, s in fixed])
    # update=None: every frame registered to the initial template, as a Corrector made from the same frames
    corr = xnormcorre.Corrector.from_frames(frames[:60], max_shifts=6)
    assert np.array_equal(fixed.template, corr.template) and fixed.n_updates == 0
    assert np.array_equal(shifts[150], corr.shift(frames[150]))
    for update in ("running_median", "running_mean"):
        stream = xnormcorre.online(frames, update=update, **kw)
        moved = np.array([s for _, s in stream])
        assert stream.n_updates == 4
        assert not np.array_equal(stream.template, fixed.template)
        assert rmse(moved, walk.shifts[:240]) < 0.1
    # a given initial template is used as it is (and calibrated on the first frames)
    given = xnormcorre.online(frames, template=walk.template, update=None, **kw)
    given_shifts = np.array([s for _, s in given])
    assert np.array_equal(given.template, np.asarray(walk.template, np.float32))
    np.testing.assert_allclose(given_shifts, walk.shifts[:240], atol=0.25)  # the true template: no offset


def test_online_piecewise_rigid(walk):
    frames = walk.frames[:80]
    stream = xnormcorre.online(
        frames,
        init_frames=40,
        bin_width=40,
        max_shifts=6,
        strides=(24, 24),
        overlaps=(16, 16),
        max_deviation_rigid=2,
    )
    out = list(stream)
    assert out[0][1].shape == (2, 2, 2) and len(out) == 80 and stream.n_updates == 2
    mean_shift = np.array([s.reshape(-1, 2).mean(axis=0) for _, s in out])
    assert rmse(mean_shift, walk.shifts[:80]) < 0.15


def test_online_refine_patches_lowers_patch_error(walk):
    """``refine_patches`` as in pwrigid: under rigid motion every patch shares the frame's
    shift, and the refined patch shifts are closer to it than the correlation peaks."""
    frames = walk.frames[:60]
    kw = {
        "init_frames": 30,
        "update": None,
        "template": walk.template,
        "max_shifts": 6,
        "strides": (24, 24),
        "overlaps": (16, 16),
        "max_deviation_rigid": 2,
    }
    err = {}
    for rp in (False, True):
        stream = xnormcorre.online(frames, refine_patches=rp, **kw)
        shifts = np.array([s for _, s in stream])
        assert stream.corrector.parameters["refine_patches"] is rp
        err[rp] = float(np.sqrt(np.mean((shifts - walk.shifts[:60, None, None, :]) ** 2)))
    assert err[True] < 0.75 * err[False] and err[True] < 0.1, err


def test_online_bad_input(walk):
    with pytest.raises(ValueError, match="update must be one of"):
        xnormcorre.online(walk.frames, update="median")
    with pytest.raises(ValueError, match="bin_width must be an integer >= 1"):
        xnormcorre.online(walk.frames, bin_width=0)
    with pytest.raises(ValueError, match="refine_patches applies to piecewise-rigid registration only"):
        xnormcorre.online(walk.frames, refine_patches=True)
    with pytest.raises(TypeError, match="refine_patches must be True or False"):
        xnormcorre.online(walk.frames, strides=24, refine_patches="yes")

    def stream():
        yield from walk.frames[:30]
        yield np.zeros((32, 32), np.float32)

    it = xnormcorre.online(stream(), init_frames=20, max_shifts=6)
    with pytest.raises(ValueError, match=r"frame must have the template's shape \(64, 64\), got \(32, 32\)"):
        list(it)
    assert it.n_frames == 30
    assert list(xnormcorre.online(iter([]))) == []
