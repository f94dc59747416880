"""The rigid Gauss-Newton step: activity model, trust region and its significance gate."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xnormcorre.engine.fourier import fourier_shift_np
from xnormcorre.engine.refine import MAX_STEP, gauss_newton_step, rigid_constants

SHAPE = (40, 48)
LIMITS = (0, SHAPE[0] - 1, 0, SHAPE[1] - 1)


def _cells(gains) -> np.ndarray:
    """Two cells in different blocks of the 2x3 grid, on a background of 1."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    out = np.ones(SHAPE)
    for g, (cy, cx) in zip(gains, [(10.0, 9.0), (29.0, 38.0)], strict=True):
        out += g * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    return out


def _step(frame, template):
    consts = rigid_constants(template, np.ones(SHAPE))
    dy, dx, clipped = gauss_newton_step(jnp.asarray(frame, jnp.float32), consts, LIMITS)
    return np.array([float(dy), float(dx)]), bool(clipped)


def test_activity_mix_does_not_bias_the_step():
    """Each cell at its own brightness (not a scaled template): the step is still exact."""
    template = _cells([1.0, 1.0])
    frame = fourier_shift_np(_cells([3.0, 0.3]), (0.2, -0.3))
    step, clipped = _step(frame, template)
    np.testing.assert_allclose(step, [0.2, -0.3], atol=0.01)
    assert not clipped


def test_large_step_is_clipped_where_determined():
    template = _cells([1.0, 1.0])
    step, clipped = _step(fourier_shift_np(template, (0.9, 0.0)), template)
    assert clipped
    np.testing.assert_allclose(step, [MAX_STEP, 0.0], atol=1e-6)


def test_large_step_on_noise_is_refused():
    """A frame with little signal: a large step is not significant and is refused (0, 0)."""
    template = _cells([1.0, 1.0])
    rng = np.random.default_rng(0)
    frame = fourier_shift_np(_cells([0.02, 0.02]), (0.9, 0.0)) + rng.normal(0, 0.05, SHAPE)
    step, clipped = _step(frame, template)
    assert not clipped
    np.testing.assert_array_equal(step, [0.0, 0.0])


def test_batched_steps_match_each_frame():
    """The batched step gives each frame the step it gets alone (different moves, hence
    different valid rectangles, in one batch)."""
    from xnormcorre.engine.borders import border_limits
    from xnormcorre.engine.refine import gauss_newton_steps

    template = _cells([1.0, 1.0])
    consts = rigid_constants(template, np.ones(SHAPE))
    shifts = [(0.2, -0.3), (-0.1, 0.15), (0.3, 0.25)]
    moves = [(2.6, -1.2), (-3.4, 0.0), (0.0, 4.7)]  # each frame's s0 (sets its valid rectangle)
    frames = np.stack([fourier_shift_np(_cells([2.0, 0.5]), s) for s in shifts]).astype(np.float32)
    limits = [border_limits(jnp.float32(a), jnp.float32(b), *SHAPE) for a, b in moves]
    batched = gauss_newton_steps(
        jnp.asarray(frames), consts, tuple(jnp.stack([lim[i] for lim in limits]) for i in range(4))
    )
    for k in range(len(frames)):
        one = gauss_newton_step(jnp.asarray(frames[k]), consts, limits[k])
        np.testing.assert_allclose(
            [float(one[0]), float(one[1])], [float(batched[0][k]), float(batched[1][k])], atol=1e-6
        )
        assert bool(one[2]) == bool(batched[2][k])
        np.testing.assert_allclose([float(one[0]), float(one[1])], shifts[k], atol=0.01)
