"""The densest group of same-position frames, for a robust initial template."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from xnormcorre.engine.cluster import densest_cluster, frame_cluster, frame_similarity

SHAPE = (96, 96)


def scene(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Tissue-like texture: smooth neuropil plus soft somata, positive, mean about 1."""
    rng = np.random.default_rng(seed)
    h, w = shape
    base = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    base = 0.6 + 0.4 * (base - base.min()) / np.ptp(base)
    yy, xx = np.mgrid[:h, :w].astype(float)
    for _ in range(h * w // 300):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3.0, 5.0)
        base += rng.uniform(0.5, 2.0) / (1 + np.exp((np.hypot(yy - cy, xx - cx) - r) / 0.7))
    return base / base.mean()


def movie(positions: np.ndarray, seed: int = 0, photons: float | None = 5.0) -> np.ndarray:
    """Frames of one scene at ``positions`` (n, 2) px (subpixel via spline shift), Poisson noise."""
    m = 16
    big = scene((SHAPE[0] + 2 * m, SHAPE[1] + 2 * m), seed)
    frames = []
    for p in np.asarray(positions, float):
        f = ndimage.shift(big, p, order=3, mode="nearest")[m:-m, m:-m]
        frames.append(f)
    frames = np.clip(np.stack(frames), 0, None)
    if photons is None:
        return frames.astype(np.float32)
    rng = np.random.default_rng(seed + 7)
    return (30.0 * rng.poisson(frames * photons) + rng.normal(0, 10, frames.shape)).astype(np.float32)


def check_one_position(idx: np.ndarray, labels: np.ndarray, min_size: int) -> None:
    assert idx.size >= min_size
    assert np.all(np.diff(idx) > 0)
    assert np.unique(labels[idx]).size == 1, f"mixed positions: {np.bincount(labels[idx])}"


CASES = {
    "two_30_30": (np.repeat([0, 1], 30), [(0, 0), (0, 9)]),
    "two_31_29": (np.repeat([0, 1], [31, 29]), [(0, 0), (9, 0)]),
    "alternating": (np.arange(60) % 2, [(0, 0), (0, 9)]),
    "two_12px": (np.arange(60) % 2, [(0, 0), (12, 0)]),
    "three": (np.arange(60) % 3, [(0, 0), (0, 9), (9, 4.5)]),
    "two_subpixel": (np.repeat([0, 1], 30), [(0.3, -0.2), (5.6, 7.4)]),
}


@pytest.mark.parametrize("photons", [5.0, 0.5, None], ids=["poisson5", "poisson0.5", "noise_free"])
@pytest.mark.parametrize("case", list(CASES))
def test_discrete_positions_give_one_position(case: str, photons: float | None) -> None:
    labels, pos = CASES[case]
    rng = np.random.default_rng(3)
    positions = np.asarray(pos, float)[labels] + rng.normal(0, 0.05, (labels.size, 2))
    frames = movie(positions, seed=len(case), photons=photons)
    res = frame_cluster(frames)
    check_one_position(res.indices, labels, max(3, labels.size // 5))
    assert res.medoid in res.indices
    # a balanced movie: most of the medoid's position is found
    assert res.indices.size >= 0.8 * np.sum(labels == labels[res.medoid])


def test_100_100_frames_and_min_size() -> None:
    labels = np.repeat([0, 1], 50)  # a 100-frame sample of a 100/100 movie
    frames = movie(np.asarray([(0, 0), (0, 9)], float)[labels], seed=5)
    idx = densest_cluster(frames, min_size=40)
    check_one_position(idx, labels, 40)
    idx = densest_cluster(frames, min_size=70)  # more than one position holds: filled by similarity
    assert idx.size == 70 and np.sum(labels[idx] == np.bincount(labels[idx]).argmax()) == 50


def test_random_walk_cluster_is_near_the_medoid() -> None:
    rng = np.random.default_rng(11)
    walk = np.cumsum(rng.normal(0, 0.6, (60, 2)), axis=0)
    walk = ndimage.gaussian_filter1d(walk, 2.0, axis=0)
    walk -= walk.mean(0)
    frames = movie(walk, seed=2)
    res = frame_cluster(frames)
    assert res.indices.size >= 12
    dist = np.hypot(*(walk[res.indices] - walk[res.medoid]).T)
    assert dist.max() <= 2.0, dist.max()


def test_deterministic_and_validates() -> None:
    labels = np.arange(20) % 2
    frames = movie(np.asarray([(0, 0), (0, 9)], float)[labels], seed=1)
    a, b = frame_cluster(frames), frame_cluster(frames.copy())
    assert a.medoid == b.medoid and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.similarity, b.similarity)
    with pytest.raises(ValueError, match="min_size"):
        densest_cluster(frames, min_size=0)
    with pytest.raises(ValueError, match="min_size"):
        densest_cluster(frames, min_size=21)
    with pytest.raises(ValueError, match="sample"):
        densest_cluster(frames[0])
    with pytest.raises(TypeError, match="sample"):
        frame_similarity(frames.astype(complex))


def test_identical_frames_tie_to_lowest_index() -> None:
    frames = np.repeat(movie(np.zeros((1, 2)), photons=None), 8, axis=0)
    res = frame_cluster(frames)
    assert res.medoid == 0 and res.indices.tolist() == list(range(8))


@pytest.mark.slow
def test_speed_100_frames_512() -> None:
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(100, 512, 512)).astype(np.float32)
    frame_cluster(frames[:4])
    t = time.process_time()  # CPU seconds of all threads: robust to other jobs on the machine
    frame_cluster(frames)
    assert time.process_time() - t < 1.0
