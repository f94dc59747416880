"""The kernel runner: with ``origin`` each frame's lane in its kernel batch depends on its
absolute frame number only, so any chunking or ``batch_size`` gives the same bits."""

from __future__ import annotations

import numpy as np
import pytest

from xnormcorre.engine import runner

H = W = 256  # kernel batch of 16 frames


def _lane_kernel(n_valid, batch):
    """Each frame's output tells the lane it was computed in."""
    lanes = np.arange(batch.shape[0], dtype=np.float32)[:, None, None]
    return batch + 1000.0 * lanes


def _run(kernel, movie, chunk, batch_size, *, aligned=True):
    """The kernel's first output over the movie cut in dask-like chunks of ``chunk`` frames."""
    n = movie.shape[0]
    parts = []
    for c0 in range(0, n, chunk):
        c1 = min(n, c0 + chunk)
        origin = c0 if aligned else None
        for a, b, (res, *_) in runner.run_kernels(
            kernel, movie[c0:c1], 0, c1 - c0, batch_size, origin=origin
        ):
            parts.append(res[: b - a])
    return np.concatenate(parts)


@pytest.mark.parametrize(("chunk", "batch_size"), [(1, 16), (7, 16), (17, 16), (50, 16), (60, 7), (17, 100)])
def test_lane_is_the_absolute_frame_number_modulo_the_kernel_batch(chunk, batch_size):
    m = runner.kernel_batch((H, W))
    assert m == 16
    movie = np.zeros((60, H, W), np.float32) + np.arange(60, dtype=np.float32)[:, None, None]
    out = _run(_lane_kernel, movie, chunk, batch_size)
    expected = movie + 1000.0 * (np.arange(60) % m)[:, None, None]
    np.testing.assert_array_equal(out, expected)
    if chunk % m:  # without origin the lanes follow the chunk: the case that broke the bits
        assert not np.array_equal(_run(_lane_kernel, movie, chunk, batch_size, aligned=False), expected)


def test_others_are_aligned_with_the_frames():
    movie = np.zeros((30, H, W), np.float32) + np.arange(30, dtype=np.float32)[:, None, None]
    shifts = np.arange(30, dtype=np.float32) * 10

    def kernel(n_valid, batch, sh):
        return batch[:, 0, 0] + sh

    got = np.concatenate(
        [res for _, _, (res,) in runner.run_kernels(kernel, movie, 3, 30, 7, shifts[3:], origin=5)]
    )
    np.testing.assert_array_equal(got, np.arange(3, 30) * 11.0)


def test_default_keeps_the_valid_frames_first():
    """Without origin (template sums) the valid frames are lanes 0:n_valid, padding after."""
    movie = np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, H, W), np.float32)
    calls = []

    def kernel(n_valid, batch):
        calls.append((n_valid, batch[:, 0, 0].tolist()))
        return batch

    list(runner.run_kernels(kernel, movie, 0, 20, 16))
    assert calls[1] == (4, [16.0, 17.0, 18.0, 19.0] + [19.0] * 12)


def test_registration_kernel_gives_the_same_bits_for_any_chunking(neurofinder_path):
    """The rigid registration kernel on real frames: XLA rounds some frames differently in
    another lane; with origin every chunking gives the eager bits."""
    import xnormcorre
    from xnormcorre.engine import rigid as er
    from xnormcorre.engine.config import make_rigid_params

    movie = xnormcorre.open_movie(neurofinder_path).isel(time=slice(0, 100)).values.astype(np.float32)
    tmpl = movie[:20].mean(0)
    params = make_rigid_params((H, W), max_shifts=(10, 10), n_frames=100)
    arrays = er.kernel_arrays(params, tmpl)
    kw = params.kernel_kwargs()

    def kernel(n_valid, batch):
        return er.register_batch(batch, tmpl, np.float32(0), *arrays, apply=False, **kw)

    eager = _run(kernel, movie, 100, 16)
    for chunk, bs in ((17, 16), (50, 16), (100, 7), (1, 16)):
        np.testing.assert_array_equal(_run(kernel, movie, chunk, bs), eager)
