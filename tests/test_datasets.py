"""The synthetic generator: deterministic, truth consistent with rendering."""

from __future__ import annotations

import numpy as np
import pytest

import xnormcorre


def test_same_seed_same_bits():
    a = xnormcorre.datasets.synthetic_movie(n_frames=5, shape=(32, 40), seed=4)
    b = xnormcorre.datasets.synthetic_movie(n_frames=5, shape=(32, 40), seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.shape == (5, 32, 40)


@pytest.mark.parametrize("motion", ["walk", "jitter", "jumps", "sine", "none"])
def test_motion_models_bounded(motion):
    ds = xnormcorre.datasets.synthetic_movie(
        n_frames=30, shape=(32, 32), max_shift=2.5, motion=motion, as_dataset=True
    )
    assert float(np.abs(ds.true_shifts).max()) <= 2.5 + 0.5
    assert ds.clean.dims == ("time", "y", "x")


def test_rendered_truth_matches_registration():
    """Without activity, frames are exact renderings of one scene at the true displacements."""
    ds = xnormcorre.datasets.synthetic_movie(
        n_frames=40, shape=(96, 96), max_shift=4, motion="jumps", n_neurons=0, as_dataset=True, seed=2
    )
    clean, sh = ds.clean.values, ds.true_shifts.values
    j = int(np.argmax(np.abs(sh[:, 0] - sh[0, 0])))
    d = sh[j] - sh[0]
    assert np.abs(d).max() > 0.5
    res = xnormcorre.rigid(clean[[0, j]], template=clean[0], max_shifts=8, upsample_factor=20)
    np.testing.assert_allclose(res.shifts.values[1], d, atol=0.05)


def test_nonrigid_field_available():
    ds = xnormcorre.datasets.synthetic_movie(
        n_frames=4, shape=(40, 48), max_shift=1, nonrigid=2.0, as_dataset=True
    )
    assert ds.true_field.dims == ("time", "y", "x", "axis")
    dev = ds.true_field - ds.true_shifts
    assert 0.2 < float(np.abs(dev).max()) <= 2.0 * np.sqrt(2) * 3


def test_integer_dtype():
    m = xnormcorre.datasets.synthetic_movie(n_frames=3, shape=(32, 32), dtype="uint16")
    assert m.dtype == np.uint16


def test_bad_motion():
    with pytest.raises(ValueError, match="motion"):
        xnormcorre.datasets.synthetic_movie(motion="teleport")
