"""Static sensor defects: detection from temporal statistics and inpainting."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from xnormcorre.engine import defects as _defects
from xnormcorre.engine.defects import find_defects, inpaint, inpaint_at, inpaint_plan

SHAPE = (128, 128)
N_FRAMES = 30


def tissue_scene(shape: tuple[int, int], seed: int, dendrites: bool = True) -> np.ndarray:
    """Tissue-like scene: smooth neuropil texture, soft somata, sharp 1-2 px dendrites in many directions."""
    rng = np.random.default_rng(seed)
    h, w = shape
    base = ndimage.gaussian_filter(rng.normal(size=shape), 3.0)
    base = 0.6 + 0.4 * (base - base.min()) / np.ptp(base)
    yy, xx = np.mgrid[:h, :w].astype(float)
    for _ in range(h * w // 500):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3.5, 6.0)
        d = np.hypot(yy - cy, xx - cx)
        base += rng.uniform(0.8, 2.5) / (1 + np.exp((d - r) / 0.7))
    if dendrites:
        # exact horizontal, vertical and diagonal ones plus random angles, widths 1 and 2 px
        angles = [0.0, 90.0, 45.0, 135.0, 0.0, 90.0] + list(rng.uniform(0, 180, 6))
        for i, ang in enumerate(angles):
            t = np.deg2rad(ang)
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            dist = np.abs(-(yy - cy) * np.cos(t) + (xx - cx) * np.sin(t))
            width = 1.0 if i % 2 == 0 else 2.0
            base += rng.uniform(0.8, 1.5) * (dist < width / 2 + 0.01 * (i % 2 == 0))
    return base


def tissue_movie(
    n: int = N_FRAMES,
    shape: tuple[int, int] = SHAPE,
    seed: int = 0,
    photons: float | None = 5.0,
    gain: float = 30.0,
    read_noise: float = 10.0,
    offset: float = 100.0,
    max_shift: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """(frames float32 (n, H, W), integer shifts (n, 2)): the scene moving along a clipped random walk,
    Poisson photons x gain + offset + Gaussian read noise (``photons=None``: noise-free)."""
    rng = np.random.default_rng(seed + 1000)
    m = max_shift
    scene = tissue_scene((shape[0] + 2 * m, shape[1] + 2 * m), seed)
    walk = rng.integers(-m, m + 1, size=(n, 2))  # the sample frames are far apart in time
    frames = np.stack([scene[m + dy : m + dy + shape[0], m + dx : m + dx + shape[1]] for dy, dx in walk])
    if photons is None:
        return (frames * 1000.0).astype(np.float32), walk
    lam = frames / frames.mean() * photons
    out = gain * rng.poisson(lam) + offset + rng.normal(0, read_noise, frames.shape)
    return out.astype(np.float32), walk


def plant(movie: np.ndarray, kind: str, frac: float = 0.005, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Plant ``kind`` defects at ``frac`` of the pixels (at least one); returns (movie, truth mask)."""
    rng = np.random.default_rng(seed)
    out = movie.copy()
    n, h, w = out.shape
    truth = np.zeros((h, w), bool)
    med, top = float(np.median(movie)), float(movie.max())
    if kind.startswith("line") or kind.startswith("seg"):
        n_lines = max(1, int(round(frac * h * w / (w if kind.startswith("line") else 24))))
        used: set[int] = set()
        for _ in range(n_lines):
            col = rng.random() < 0.5
            pos = int(rng.choice([i for i in range(h) if not used & {i - 1, i, i + 1}]))
            used.add(pos)
            lo, hi = (0, w) if kind.startswith("line") else sorted(rng.choice(w, 2, replace=False))
            if kind.startswith("seg"):
                lo = int(rng.integers(0, w - 24))
                hi = lo + int(rng.integers(12, 24))
            sl = (slice(None), slice(lo, hi), pos) if col else (slice(None), pos, slice(lo, hi))
            out[sl] = out[sl] + 0.5 * med if kind.endswith("bright") else out[sl] * 0.4
            truth[sl[1:]] = True
        return out, truth
    n_pts = max(1, int(round(frac * h * w / (4 if kind.endswith("2x2") else 1))))
    size = 2 if kind.endswith("2x2") else 1
    # spaced out so that two planted points never touch
    cells = rng.choice((h // 4) * (w // 4), n_pts, replace=False)
    for c in cells:
        y, x = (
            4 * (c // (w // 4)) + rng.integers(0, 3 - size + 1),
            4 * (c % (w // 4)) + rng.integers(0, 3 - size + 1),
        )
        sl = (slice(None), slice(y, y + size), slice(x, x + size))
        if kind.startswith("hot_max"):
            out[sl] = 2.0 * top
        elif kind.startswith("hot"):
            out[sl] = out[sl] + 2.0 * med  # about 3x the median, still noisy (dark current)
        elif kind.startswith("dead0"):
            out[sl] = 0.0
        elif kind.startswith("dead"):
            out[sl] = out[sl] * 0.1
        elif kind.startswith("stuck"):
            out[sl] = out[0][sl[1:]]
        truth[sl[1:]] = True
    return out, truth


KINDS = ["hot", "hot_max", "dead0", "dead", "stuck", "hot2x2", "dead2x2", "stuck2x2"]
LINES = ["line_bright", "line_dark", "seg_bright", "seg_dark"]
FP_MAX = int(0.0005 * SHAPE[0] * SHAPE[1])  # 0.05 % of the pixels


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    return tissue_movie()[0]


@pytest.mark.parametrize("kind", KINDS + LINES)
def test_planted_defects_found(tissue: np.ndarray, kind: str) -> None:
    movie, truth = plant(tissue, kind, seed=len(kind))
    mask = find_defects(movie)
    assert mask.dtype == bool and mask.shape == SHAPE
    assert np.all(mask[truth]), f"missed {np.sum(truth & ~mask)} of {truth.sum()}"
    assert np.sum(mask & ~truth) <= FP_MAX


@pytest.mark.parametrize("kind", ["hot", "dead", "stuck", "hot2x2", "seg_bright", "line_dark"])
def test_single_defect_found(tissue: np.ndarray, kind: str) -> None:
    movie, truth = plant(tissue, kind, frac=1e-9, seed=3)
    mask = find_defects(movie)
    assert np.all(mask[truth]) and np.sum(mask & ~truth) <= FP_MAX


@pytest.mark.parametrize(
    ("photons", "offset"), [(5.0, 100.0), (1.0, 0.0), (None, 0.0)], ids=["poisson5", "poisson1", "noise_free"]
)
def test_clean_tissue_not_flagged(photons: float | None, offset: float) -> None:
    """Somata, sharp 1-2 px dendrites in all directions (0, 45, 90, 135 deg and random), low photons."""
    for n in (20, 50):
        movie, _ = tissue_movie(n=n, photons=photons, offset=offset, seed=n)
        assert find_defects(movie).sum() <= FP_MAX


def test_low_photon_movie_still_finds_clear_defects() -> None:
    movie, _ = tissue_movie(photons=1.0, offset=0.0)
    for kind in ("hot_max", "dead0", "stuck"):
        bad, truth = plant(movie, kind)
        mask = find_defects(bad)
        assert np.all(mask[truth]) and np.sum(mask & ~truth) <= FP_MAX


def test_scale_and_offset_invariant(tissue: np.ndarray) -> None:
    movie, truth = plant(tissue, "hot")
    movie, t2 = plant(movie, "seg_dark", frac=0.001, seed=5)
    ref = find_defects(movie)
    assert np.all(ref[truth | t2])
    for other in (movie * np.float32(1e-3), movie * np.float32(1e6), movie + np.float32(-3000.0)):
        assert np.array_equal(find_defects(other), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.float64])
def test_temporal_statistics_are_the_float64_stack_statistics(dtype) -> None:
    """The blocked, pixel-major statistics are the same bits as those of a float64 copy of the stack
    (sorted along time, trimmed mean; SD), whatever the block boundaries."""
    rng = np.random.default_rng(3)
    a = (rng.gamma(2.0, 50.0, (23, 37, 41)) + 100).astype(dtype)
    a64 = a.astype(np.float64)
    k = int(0.2 * len(a))
    work = a.astype(np.float64 if dtype == np.float64 else np.float32)
    for block in (7, 4096):
        level, sd = _defects._temporal_stats(work, 0.2, block=block)
        assert np.array_equal(level, np.sort(a64, axis=0)[k : len(a) - k].mean(0))
        assert np.array_equal(sd, a64.std(0))
    x = a64[0]
    assert np.array_equal(_defects._median_of_neighbours(x), np.median(_defects._neighbours(x), axis=0))


def test_running_median_is_the_rank_filter() -> None:
    """The sliding-window running median is ``ndimage.median_filter`` along the last axis (constant
    mode), value for value, in 2-D and 3-D and across the chunks it is computed in."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 9, 40))
    for cval in (0.0, 0.7):
        ref = ndimage.median_filter(x, size=(1, 1, 15), mode="constant", cval=cval)
        assert np.array_equal(_defects._running_median(x, 15, cval=cval, chunk=15 * 40 * 4), ref)
        ref2 = ndimage.median_filter(x[0], size=(1, 15), mode="constant", cval=cval)
        assert np.array_equal(_defects._running_median(x[0], 15, cval=cval), ref2)


def test_validation() -> None:
    with pytest.raises(ValueError, match="sample"):
        find_defects(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="finite"):
        find_defects(np.full((4, 8, 8), np.nan))
    with pytest.raises(TypeError, match="sample"):
        find_defects(np.zeros((4, 8, 8), complex))
    with pytest.raises(TypeError, match="float32"):
        inpaint(jnp.zeros((4, 4)).astype(jnp.float16), jnp.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="mask"):
        inpaint(jnp.zeros((4, 4)), jnp.zeros((3, 4), bool))


def _mean_of_valid(frame: np.ndarray, mask: np.ndarray, y: int, x: int, r: int) -> float:
    sl = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
    return float(frame[sl][~mask[sl]].mean())


def test_inpaint_points_and_lines() -> None:
    rng = np.random.default_rng(0)
    frames = rng.normal(100, 20, (3, 40, 50)).astype(np.float32)
    mask = np.zeros((40, 50), bool)
    mask[5, 7] = mask[0, 0] = mask[39, 49] = True  # points, two in corners
    mask[20:22, 30:32] = True  # 2x2 cluster
    mask[10:13, :] = True  # 3-px-wide row: the middle row has no valid 8-neighbour
    out = np.asarray(inpaint(jnp.asarray(frames), jnp.asarray(mask)))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.array_equal(out[:, ~mask].view(np.uint32), frames[:, ~mask].view(np.uint32))
    for b in range(3):
        for y, x in [(5, 7), (0, 0), (39, 49), (20, 20 + 10), (21, 31), (10, 4), (12, 49)]:
            np.testing.assert_allclose(out[b, y, x], _mean_of_valid(frames[b], mask, y, x, 1), rtol=1e-5)
        for x in (0, 17, 49):
            np.testing.assert_allclose(out[b, 11, x], _mean_of_valid(frames[b], mask, 11, x, 2), rtol=1e-5)
    single = np.asarray(inpaint(jnp.asarray(frames[1]), jnp.asarray(mask)))
    np.testing.assert_allclose(single, out[1], rtol=1e-6)  # (H, W) input: same fill (to float32 rounding)
    assert np.array_equal(single[~mask], frames[1][~mask])


def test_inpaint_everything_masked_is_finite() -> None:
    f = jnp.ones((2, 6, 6), jnp.float32)
    m = jnp.ones((6, 6), bool).at[0, 0].set(False)
    np.testing.assert_allclose(np.asarray(inpaint(f, m)), 1.0)  # from the frame's one valid pixel
    out = np.asarray(inpaint(f, jnp.ones((6, 6), bool)))
    assert np.isfinite(out).all() and np.all(out == 0)


@pytest.mark.parametrize("density", [0.0, 0.002, 0.05, 0.4, 0.9])
def test_inpaint_at_fills_the_same_bits_as_inpaint(density: float) -> None:
    """The kernels' sparse fill (visiting the defects only) equals the dense one, bit for
    bit, except where no unmasked pixel lies within 2 px (the frame's mean: same to float32
    rounding); unmasked pixels are untouched."""
    rng = np.random.default_rng(int(density * 1000))
    frames = rng.normal(100, 20, (3, 37, 41)).astype(np.float32)
    mask = rng.random((37, 41)) < density
    mask[10:15, 3:9] = density > 0.3  # a block whose centre has no unmasked pixel within 2 px
    target, source, use, frame_mean, n_valid = plan = inpaint_plan(mask)
    k = int(mask.sum())
    assert len(target) >= max(k, 256) and len(target) & (len(target) - 1) == 0  # a power of two
    assert np.array_equal(np.sort(target[:k]), np.flatnonzero(mask)) and np.all(target[k:] == mask.size)
    assert float(n_valid) == mask.size - k
    dense = np.asarray(inpaint(jnp.asarray(frames), jnp.asarray(mask)))
    sparse = np.asarray(jax.jit(inpaint_at)(jnp.asarray(frames), plan))
    single = np.asarray(jax.jit(inpaint_at)(jnp.asarray(frames[2]), plan))
    single_dense = np.asarray(inpaint(jnp.asarray(frames[2]), jnp.asarray(mask)))
    np.testing.assert_allclose(single, sparse[2], rtol=1e-6)  # a batch may divide by a reciprocal
    by_mean = np.zeros(mask.size, bool)
    by_mean[frame_mean] = True
    by_mean = by_mean.reshape(mask.shape)
    assert (density > 0.3) == bool(by_mean.any())
    np.testing.assert_array_equal(sparse[:, ~by_mean], dense[:, ~by_mean])
    np.testing.assert_array_equal(single[~by_mean], single_dense[~by_mean])
    np.testing.assert_allclose(sparse[:, by_mean], dense[:, by_mean], rtol=1e-6)
    np.testing.assert_array_equal(sparse[:, ~mask], frames[:, ~mask])


def test_inpaint_plan_validation() -> None:
    with pytest.raises(ValueError, match="mask"):
        inpaint_plan(np.zeros((2, 3, 4), bool))


def _data(name: str) -> Path:
    root = Path(os.environ.get("XNORMCORRE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = root / name
    if not path.exists():
        pytest.skip(f"real test movie {path} not available")
    return path


def test_real_neurofinder_few_flags() -> None:
    """First 100 frames (motion well below 1 px): a handful of static sub-soma bright points at most."""
    tifffile = pytest.importorskip("tifffile")
    movie = tifffile.imread(_data("neurofinder_crop_480x256x256.tif"))[:100].astype(np.float32)
    mask = find_defects(movie)
    # 9 today: isolated 1-2 px puncta about 1.5x their brightest neighbour in all 100 frames;
    # 16 px is 0.025 % of the 65536 px
    assert mask.sum() <= 16


def test_real_sima_flags_only_the_blank_edge_column() -> None:
    """SIMA's example: column 0 is the scanner's turnaround column (dark, almost constant)."""
    tifffile = pytest.importorskip("tifffile")
    movie = tifffile.imread(_data("sima_example_20x128x256.tif")).astype(np.float32)
    mask = find_defects(movie)
    level = np.median(movie, axis=0)
    assert np.median(level[:, 0]) < 0.2 * np.median(level)  # it is dark ...
    assert np.median(movie.std(0)[:, 0]) < 0.1 * np.median(movie.std(0))  # ... and nearly constant
    assert mask[:, 1:].sum() <= 4
    assert mask[:, 0].sum() >= 0.75 * mask.shape[0]


@pytest.fixture(scope="module")
def specks() -> tuple[np.ndarray, np.ndarray]:
    """A rendered movie (100 x 256², 2 px walk) whose sharpest specks of content pass the
    raw-frame point test, and its true shifts."""
    import xnormcorre

    ds = xnormcorre.datasets.synthetic_movie(n_frames=100, shape=(256, 256), max_shift=2.0, seed=1)
    return ds.values.astype(np.float32), np.stack([ds.true_shift_y.values, ds.true_shift_x.values], 1)


@pytest.mark.parametrize("kind", ["hot", "hot_max", "dead", "stuck", "hot2x2"])
def test_content_that_moves_is_not_a_defect(specks, kind: str) -> None:
    """Points flagged in the raw frames that move with the tissue are content; every planted
    defect (static on the sensor) stays flagged."""
    movie, shifts = specks
    bad, truth = plant(movie, kind, frac=0.001, seed=7)
    found = find_defects(bad)
    assert np.all(found[truth])
    assert np.sum(found & ~truth) >= 3  # the premise: content specks taken for hot pixels
    kept = found & ~_defects.moving_points(found, bad, shifts)
    assert np.array_equal(kept, truth)


def test_too_little_motion_decides_nothing(specks) -> None:
    """Where most frames sit at one position, a static defect and content look alike: every
    point stays flagged."""
    movie, shifts = specks
    found = find_defects(movie)
    assert found.any()
    still = shifts.copy()
    still[: int(0.6 * len(still))] = np.median(shifts, axis=0)  # 60 % of the frames at one place
    assert not _defects.moving_points(found, movie, still).any()
    assert _defects.moving_points(found, movie, shifts).sum() == found.sum()


def test_moving_points_validation() -> None:
    with pytest.raises(ValueError, match="shifts"):
        _defects.moving_points(np.zeros((8, 8), bool), np.zeros((4, 8, 8)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="mask"):
        _defects.moving_points(np.zeros((8, 9), bool), np.zeros((4, 8, 8)), np.zeros((4, 2)))


def test_rigid_reports_only_the_sensor_defects(specks) -> None:
    """Through ``rigid``: the defect mask is the planted hot pixels, not the content specks the
    raw-frame test also flags (the sample's registration shows that they move)."""
    import xnormcorre

    movie, shifts = specks
    bad, truth = plant(movie, "hot", frac=0.001, seed=7)
    res = xnormcorre.rigid(bad, max_shifts=8)
    assert np.array_equal(res.defect_mask.values, truth)
    err = res.shifts.values - shifts
    err -= err.mean(axis=0)
    assert float(np.sqrt(np.mean(np.sum(err**2, axis=1)))) < 0.05
