"""The power-of-two scale of a movie: its fast path equals the percentile formula."""

import numpy as np
import pytest

from xnormcorre.engine.config import scale_for


def _reference(values: np.ndarray) -> float:
    v = np.asarray(values, np.float64)
    v = np.abs(v[np.isfinite(v)])
    mag = float(np.percentile(v, 99)) if v.size else 0.0
    if not mag > 0 or not np.isfinite(mag):
        return 1.0
    return float(2.0 ** -np.floor(np.log2(mag)))


@pytest.mark.parametrize("seed", range(40))
def test_scale_for_equals_the_99th_percentile_power_of_two(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 30)), 17, 19)
    x = rng.gamma(2.0, 10 ** rng.uniform(-3, 4), size=shape).astype(np.float32)
    if seed % 4 == 1:
        x.flat[rng.integers(0, x.size, 5)] = np.nan
    if seed % 4 == 2:
        x.flat[rng.integers(0, x.size, 3)] = np.inf
    if seed % 4 == 3:
        x -= np.float32(np.median(x))  # signed values
    assert scale_for(x) == _reference(x)


@pytest.mark.parametrize(
    "values",
    [
        np.zeros(10, np.float32),
        np.full(7, np.nan, np.float32),
        np.array([1.0, 2.0, 3.0, 4.0], np.float32),  # straddles octaves: the slow path
        np.array([1000.0, 3000.0]),  # float64 input
        np.arange(100, dtype=np.uint16),
    ],
)
def test_scale_for_edge_cases(values):
    assert scale_for(values) == _reference(values)
