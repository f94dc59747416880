"""Same bits for any chunking and ``batch_size`` (rigid and piecewise rigid, end to end).

The runner places each frame in the lane ``frame % kernel_batch`` of its kernel batch when
given the frame's absolute number (``origin``, see :func:`xnormcorre.engine.runner.run_kernels`);
the registration passes it for every chunk.
"""

from __future__ import annotations

import numpy as np
import pytest

import xnormcorre

CHUNKS = (1, 7, 17, 50)


@pytest.fixture(scope="module")
def movie(neurofinder_path):
    # 256 x 256 frames: kernel batches of 16 frames, and real frames that XLA rounds
    # differently in some lanes
    return xnormcorre.open_movie(neurofinder_path).isel(time=slice(0, 60)).load()


def _same(a, b):
    for name in ("shifts", "corrected"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.mark.slow
def test_rigid_same_bits_for_any_chunking_and_batch_size(movie):
    eager = xnormcorre.rigid(movie, max_shifts=10)
    for chunk in CHUNKS:
        _same(xnormcorre.rigid(movie.chunk({"time": chunk}), max_shifts=10).compute(), eager)
    _same(xnormcorre.rigid(movie, max_shifts=10, batch_size=7), eager)


@pytest.mark.slow
def test_pwrigid_same_bits_for_any_chunking_and_batch_size(movie):
    kw = {"max_shifts": 10, "strides": (96, 96), "overlaps": (32, 32), "max_deviation_rigid": 3}
    eager = xnormcorre.pwrigid(movie, **kw)
    for chunk in CHUNKS:
        _same(xnormcorre.pwrigid(movie.chunk({"time": chunk}), **kw).compute(), eager)
    _same(xnormcorre.pwrigid(movie, batch_size=7, **kw), eager)
