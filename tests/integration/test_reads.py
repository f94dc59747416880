"""Read once: frame reads of a lazily opened TIFF, counted at the backend."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import xarray as xr

import xnormcorre
from xnormcorre.core.movie import register_lazily


def _per_frame(frames: list[int], n: int) -> np.ndarray:
    return np.bincount(np.asarray(frames, dtype=np.int64), minlength=n)


def test_correct_reads_each_frame_at_most_twice(synthetic_tiff, tmp_path, reads):
    """Template pass + one registration-and-write pass; the frames are warped once."""
    from xnormcorre.cli import main

    p, arr = synthetic_tiff
    out = tmp_path / "out.tif"
    assert main(["correct", str(p), "-o", str(out), "--chunk", "20", "--max-shifts", "4", "-q"]) == 0
    per_frame = _per_frame(reads, len(arr))
    assert per_frame.max() <= 2 and per_frame.min() >= 1, per_frame
    expected = xnormcorre.rigid(arr, max_shifts=4)
    with xnormcorre.open_movie(out) as written:
        np.testing.assert_array_equal(written.values, expected.corrected.values)
    with xr.open_dataset(tmp_path / "out_shifts.nc") as saved:
        np.testing.assert_array_equal(saved.shifts.values, expected.shifts.values)
        np.testing.assert_array_equal(saved.at_max_shift.values, expected.at_max_shift.values)
        assert "min_mov" not in saved.attrs  # border="copy": the movie floor is neither read nor stored


@pytest.mark.parametrize("derived", ["time slice", "channel selection", "highpass reference"])
def test_derived_lazy_movies_read_each_frame_at_most_twice(synthetic_tiff, reads, derived):
    """A derived lazy movie costs a template pass and a registration pass, whatever it derives from
    (it used to recompute a whole chunk for every template frame: ~50 reads per frame)."""
    p, arr = synthetic_tiff
    movie = xnormcorre.open_movie(p, chunks={"time": 20})
    kw = {"max_shifts": 4}
    if derived == "time slice":
        lazy, memory = movie.isel(time=slice(5, 45)), arr[5:45]
        n = 40
    elif derived == "channel selection":
        lazy = xr.concat([movie, movie + 1], dim="channel").isel(channel=0)
        memory, n = arr, len(arr)
    else:
        lazy, memory, n = movie, arr, len(arr)
        kw["reference"] = xnormcorre.highpass(movie)
    res = xnormcorre.rigid(lazy, **kw).compute()
    total = len(reads)
    assert total <= 2 * n, (total, n)
    assert _per_frame(reads, len(arr)).max() <= 2
    mem_kw = dict(kw, reference=xnormcorre.highpass(memory)) if "reference" in kw else kw
    expected = xnormcorre.rigid(memory, **mem_kw)
    np.testing.assert_array_equal(res.shifts.values, expected.shifts.values)
    np.testing.assert_array_equal(res.corrected.values, expected.corrected.values)


def test_min_mov_is_read_only_for_border_min(synthetic_tiff, reads):
    p, arr = synthetic_tiff
    movie = xnormcorre.open_movie(p, chunks={"time": 20})
    res = xnormcorre.rigid(movie, max_shifts=4, niter=0, template=arr[0])
    # lazy: before compute only the calibration sample (sensor defects, noise model) is read
    assert len(set(reads)) <= 100 and "min_mov" not in res.attrs
    reads.clear()
    res = xnormcorre.rigid(movie, max_shifts=4, niter=0, template=arr[0], border="min")
    assert sorted(set(reads)) == list(range(len(arr)))  # the first 400 frames (here: all)
    assert res.attrs["min_mov"] == float(arr.min())


def test_frames_view_reads_chunks_once_within_its_memory_budget(synthetic_tiff, reads):
    """Template reads: whole chunks, cached within the budget; a sample whose chunks exceed the
    budget is read frame by frame (a long movie is never read whole for 100 frames)."""
    from xnormcorre.core.movie import Frames

    p, arr = synthetic_tiff
    movie = xnormcorre.open_movie(p, chunks={"time": 20})
    frames = Frames(movie)
    np.testing.assert_array_equal(frames[np.array([3, 25, 59])], arr[[3, 25, 59]])
    np.testing.assert_array_equal(frames[0:40], arr[0:40])
    np.testing.assert_array_equal(frames[7], arr[7])
    assert sorted(reads) == list(range(60))  # every chunk computed once
    reads.clear()
    small = Frames(movie, cache_bytes=2 * arr[0].nbytes)  # less than one chunk
    np.testing.assert_array_equal(small[np.array([3, 25, 59])], arr[[3, 25, 59]])
    assert sorted(reads) == [3, 25, 59]
    reads.clear()
    np.testing.assert_array_equal(small[0:30], arr[0:30])
    assert sorted(reads) == list(range(40))  # the two chunks holding frames 0..29


@pytest.mark.parametrize(
    "derived", ["time slice", "channel selection", "highpass reference", "file opened without dask"]
)
@pytest.mark.parametrize("kind", ["rigid", "pwrigid"])
def test_template_step_reads_each_needed_frame_once(synthetic_tiff, reads, monkeypatch, derived, kind):
    """The template step (every read before the registration pass starts) reads each frame it
    needs once -- at most 1.5 reads per needed frame -- whatever the lazy movie derives from,
    and gives the template of the same movie in memory."""
    p, arr = synthetic_tiff
    movie = xnormcorre.open_movie(p, chunks={"time": 20})
    if derived == "time slice":
        lazy, memory = movie.isel(time=slice(5, 45)), arr[5:45].astype(np.float32)
    elif derived == "channel selection":
        lazy = xr.concat([movie, movie + 1], dim="channel").isel(channel=0)
        memory = arr.astype(np.float32)
    elif derived == "highpass reference":
        lazy, memory = xnormcorre.highpass(movie), xnormcorre.highpass(arr).values
    else:  # backend-lazy, no dask: the registration pass itself then runs eagerly
        lazy, memory = xr.open_dataarray(p, engine="xnormcorre_tiff", cache=False), arr
    module = sys.modules[f"xnormcorre.core.{kind}"]
    before_pass: list[int] = []

    def spy(*args, **kwargs):
        before_pass.append(len(reads))
        return register_lazily(*args, **kwargs)

    monkeypatch.setattr(module, "register_lazily", spy)
    kw = {"max_shifts": 4}
    if kind == "pwrigid":
        kw.update(strides=(24, 24), overlaps=(8, 8), max_deviation_rigid=2)
    res = getattr(xnormcorre, kind)(lazy, **kw)
    needed = len(memory)  # the sample and the splits: every frame of this short movie
    assert before_pass[0] <= 1.5 * needed, (before_pass[0], needed)
    assert len(set(reads[: before_pass[0]])) == needed
    expected = getattr(xnormcorre, kind)(memory, **kw)
    np.testing.assert_array_equal(res.template.values, expected.template.values)
