"""Quality metrics (anchors.md §b): values against hand-computed NumPy, NaN, crop, dask."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback
from scipy import ndimage

import xnormcorre
from xnormcorre import metrics
from xnormcorre.qc import flow as qc_flow
from xnormcorre.qc import metrics as qc_metrics
from xnormcorre.qc.diagnose import RegistrationWarning


def _movie(arr: np.ndarray) -> xr.DataArray:
    return xr.DataArray(arr, dims=("time", "y", "x"), coords={"time": np.arange(arr.shape[0])})


@pytest.fixture(scope="module")
def rand_movie() -> xr.DataArray:
    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.normal(size=(24, 20)), 1.5)
    return _movie(base[None] * 10 + rng.normal(size=(9, 24, 20)))


class _TaskCounter(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def _posttask(self, key, result, dsk, state, id):  # noqa: A002 - dask's signature
        self.n += 1


# ----------------------------------------------------------------------------- M2 crispness
def test_crispness_matches_numpy_gradient(rand_movie):
    arr = rand_movie.values
    gy, gx = np.gradient(arr.mean(0))
    assert metrics.crispness(rand_movie) == pytest.approx(np.sqrt((gy**2 + gx**2).sum()), rel=1e-12)
    gy, gx = np.gradient(arr[:, 3:-3, 3:-3].mean(0))
    assert metrics.crispness(rand_movie, crop=3) == pytest.approx(np.sqrt((gy**2 + gx**2).sum()), rel=1e-12)
    gy, gx = np.gradient(arr[:, 2:-2, 5:-5].mean(0))
    assert metrics.crispness(rand_movie, crop=(2, 5)) == pytest.approx(
        np.sqrt((gy**2 + gx**2).sum()), rel=1e-12
    )
    # a (y, x) image is its own mean image; integer movies work
    assert metrics.crispness(rand_movie.mean("time")) == pytest.approx(
        metrics.crispness(rand_movie), rel=1e-12
    )
    ints = (rand_movie * 100).round().astype("int32")
    gy, gx = np.gradient(ints.values.astype(float).mean(0))
    assert metrics.crispness(ints) == pytest.approx(np.sqrt((gy**2 + gx**2).sum()), rel=1e-12)


def test_crispness_nan_aware(rand_movie):
    arr = rand_movie.values.copy()
    arr[2, 5, 6] = np.nan  # a NaN in one frame: the pixel's mean uses the other frames
    m = np.nanmean(arr, axis=0)
    gy, gx = np.gradient(m)
    assert metrics.crispness(_movie(arr)) == pytest.approx(np.sqrt((gy**2 + gx**2).sum()), rel=1e-12)
    arr[:, 0, 0] = np.nan  # never finite: gradients touching it are left out
    with np.errstate(invalid="ignore"):
        m = np.nansum(arr, 0) / np.isfinite(arr).sum(0)
    gy, gx = np.gradient(m)
    expected = np.sqrt(np.nansum(gy**2 + gx**2))
    assert np.isfinite(metrics.crispness(_movie(arr)))
    assert metrics.crispness(_movie(arr)) == pytest.approx(expected, rel=1e-12)


def test_crispness_higher_after_correction(small_movie):
    res = xnormcorre.rigid(small_movie, max_shifts=5)
    assert metrics.crispness(res.corrected, crop=5) > 1.1 * metrics.crispness(small_movie, crop=5)


# ----------------------------------------------------------------------------- M1 correlation
def test_correlation_matches_corrcoef(rand_movie):
    arr = rand_movie.values
    c = metrics.correlation_with_mean(rand_movie)
    expected = [np.corrcoef(f.ravel(), arr.mean(0).ravel())[0, 1] for f in arr]
    np.testing.assert_allclose(c.values, expected, rtol=1e-12)
    assert c.dims == ("time",)
    assert c.attrs["units"] == "1" and "long_name" in c.attrs
    assert c.attrs["reference"] == "mean" and c.attrs["crop"] == [0, 0]
    xr.testing.assert_identical(c["time"], rand_movie["time"])

    crop = arr[:, 4:-4, 3:-3]
    c = metrics.correlation_with_mean(rand_movie, crop=(4, 3))
    expected = [np.corrcoef(f.ravel(), crop.mean(0).ravel())[0, 1] for f in crop]
    np.testing.assert_allclose(c.values, expected, rtol=1e-12)
    assert c.attrs["crop"] == [4, 3]


def test_correlation_with_given_reference_and_bin_median(rand_movie):
    arr = rand_movie.values
    ref = arr[0] * 2 + 1
    c = metrics.correlation_with_mean(rand_movie, reference=xr.DataArray(ref, dims=("y", "x")), crop=2)
    expected = [np.corrcoef(f[2:-2, 2:-2].ravel(), ref[2:-2, 2:-2].ravel())[0, 1] for f in arr]
    np.testing.assert_allclose(c.values, expected, rtol=1e-12)
    assert c.attrs["reference"] == "user"
    assert c.values[0] == pytest.approx(1.0, abs=1e-12)  # a linear function of frame 0
    # bin_median: median of the means of contiguous 10-frame bins
    movie = _movie(np.random.default_rng(1).normal(size=(35, 8, 8)))
    bins = movie.values[:30].reshape(3, 10, 8, 8).mean(1)
    med = np.median(bins, 0)
    c = metrics.correlation_with_mean(movie, reference="bin_median")
    expected = [np.corrcoef(f.ravel(), med.ravel())[0, 1] for f in movie.values]
    np.testing.assert_allclose(c.values, expected, rtol=1e-5)  # bin means kept in float32


def test_correlation_nan_pairwise(rand_movie):
    arr = rand_movie.values.copy()
    arr[1, :3, :] = np.nan  # a frame with a NaN border (border="nan")
    arr[:, -1, -1] = np.nan  # a pixel NaN in every frame
    c = metrics.correlation_with_mean(_movie(arr)).values
    with np.errstate(invalid="ignore"):
        mean = np.nansum(arr, 0) / np.isfinite(arr).sum(0)
    for t in (0, 1):
        ok = np.isfinite(arr[t]) & np.isfinite(mean)
        assert c[t] == pytest.approx(np.corrcoef(arr[t][ok], mean[ok])[0, 1], rel=1e-12)
    assert np.isfinite(c).all()
    # all-NaN and constant frames have no correlation
    arr[4] = np.nan
    arr[5] = 7.0
    c = metrics.correlation_with_mean(_movie(arr)).values
    assert np.isnan(c[4]) and np.isnan(c[5]) and np.isfinite(c[[0, 1, 2, 3, 6, 7, 8]]).all()


def test_correlation_higher_after_correction(small_movie):
    res = xnormcorre.rigid(small_movie, max_shifts=5)
    before = metrics.correlation_with_mean(small_movie, crop=5).mean()
    after = metrics.correlation_with_mean(res.corrected, crop=5).mean()
    assert float(after) > float(before) + 0.02


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "func", [metrics.crispness, metrics.correlation_with_mean, metrics.residual_optical_flow]
)
@pytest.mark.parametrize(
    ("crop", "exc"),
    [(12, ValueError), ((2, 10), ValueError), (-1, ValueError), (1.5, TypeError), ((1, 2, 3), ValueError)],
)
def test_bad_crop(rand_movie, func, crop, exc):
    with pytest.raises(exc, match="crop"):
        func(rand_movie, crop=crop)


def test_bad_movie_and_reference(rand_movie):
    with pytest.raises(ValueError, match="3-D"):
        metrics.correlation_with_mean(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="Dataset"):
        metrics.crispness(xr.Dataset({"a": rand_movie}))
    with pytest.raises(ValueError, match="reference"):
        metrics.correlation_with_mean(rand_movie, reference=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="reference"):
        metrics.correlation_with_mean(rand_movie, reference="median")
    with pytest.raises(ValueError, match="method"):
        metrics.residual_optical_flow(rand_movie, method="lk")
    with pytest.raises(ValueError, match="resize_fact_flow"):
        metrics.residual_optical_flow(rand_movie, resize_fact_flow=0)


# ----------------------------------------------------------------------------- dask
def test_dask_same_numbers_and_lazy(rand_movie):
    lazy = rand_movie.chunk({"time": 4})
    c_np = metrics.correlation_with_mean(rand_movie, crop=2)
    c_da = metrics.correlation_with_mean(lazy, crop=2)
    assert c_da.chunks is not None  # correlations are the lazy second pass
    xr.testing.assert_allclose(c_da.compute(), c_np, rtol=1e-12)
    assert c_da.attrs == c_np.attrs
    assert metrics.crispness(lazy, crop=2) == pytest.approx(metrics.crispness(rand_movie, crop=2), rel=1e-12)
    rof_np = metrics.residual_optical_flow(rand_movie, method="builtin", crop=1)
    rof_da = metrics.residual_optical_flow(lazy, method="builtin", crop=1)
    xr.testing.assert_allclose(rof_da, rof_np, rtol=1e-9)


def test_dask_bin_median_reference(small_movie):
    movie = small_movie.copy()
    movie[3, :4, :] = np.nan
    lazy = movie.chunk({"time": 7})  # chunks not aligned with the 10-frame bins
    c_np = metrics.correlation_with_mean(movie, reference="bin_median", crop=3)
    c_da = metrics.correlation_with_mean(lazy, reference="bin_median", crop=3)
    xr.testing.assert_allclose(c_da.compute(), c_np, rtol=1e-6)
    assert c_np.attrs["reference"] == "bin_median"
    rof_np = metrics.residual_optical_flow(movie, method="builtin", crop=3)
    rof_da = metrics.residual_optical_flow(lazy, method="builtin", crop=3)
    assert rof_np.attrs["reference"] == "bin_median" and rof_np.sizes["time_bin"] == 8
    xr.testing.assert_allclose(rof_da, rof_np, rtol=1e-6)


def test_dask_correlation_computes_nothing_until_asked(rand_movie):
    lazy = rand_movie.chunk({"time": 3})
    ref = rand_movie.values[0]
    with _TaskCounter() as counter:
        c = metrics.correlation_with_mean(lazy, reference=ref)
    assert counter.n == 0  # with a given reference nothing is read at call time
    with _TaskCounter() as counter:
        vals = c.values
    assert counter.n > 0
    expected = [np.corrcoef(f.ravel(), ref.ravel())[0, 1] for f in rand_movie.values]
    np.testing.assert_allclose(vals, expected, rtol=1e-12)


class _CountingFrames:
    """Array-like that counts how often each frame is read (as a file-backed movie would be)."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr, self.shape, self.dtype, self.ndim = arr, arr.shape, arr.dtype, arr.ndim
        self.reads = np.zeros(arr.shape[0], int)

    def __getitem__(self, key):
        self.reads[np.arange(self.shape[0])[key[0]]] += 1
        return self.arr[key]


def test_dask_passes_read_each_frame_once_per_pass(rand_movie):
    import dask.array as dsa

    src = _CountingFrames(np.concatenate([rand_movie.values] * 4).astype(np.uint16))
    lazy = xr.DataArray(dsa.from_array(src, chunks=(5, -1, -1)), dims=("time", "y", "x"))
    metrics.crispness(lazy)
    assert src.reads.tolist() == [1] * 36  # the mean image: one pass
    src.reads[:] = 0
    c = metrics.correlation_with_mean(lazy, crop=1)
    assert src.reads.tolist() == [1] * 36  # the mean at call time ...
    c.compute()
    assert src.reads.tolist() == [2] * 36  # ... and the correlations when computed
    src.reads[:] = 0
    metrics.residual_optical_flow(lazy, reference="mean", method="builtin")
    assert src.reads.tolist() == [2] * 36  # reference pass + flow pass, no chunk read twice
    src.reads[:] = 0
    metrics.summary(lazy, lazy, flow=False)
    assert src.reads.tolist() == [4] * 36  # per stage: mean + correlations (crispness reuses the mean)


# ----------------------------------------------------------------------------- M3 residual flow
@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    ds = xnormcorre.datasets.synthetic_movie(
        n_frames=1, shape=(64, 64), max_shift=0, motion="none", seed=2, as_dataset=True
    )
    return ds.clean.values[0].astype(np.float64)


def test_flow_temporal_binning_and_coords():
    movie = _movie(np.broadcast_to(np.arange(10.0)[:, None, None], (10, 16, 16)).copy())
    rof = metrics.residual_optical_flow(movie, method="builtin", reference=np.zeros((16, 16)))
    # 10 frames x 0.2 -> 2 bins, each the mean of 5 consecutive frames (times 0..4, 5..9)
    assert rof.time_bin.values.tolist() == [2.0, 7.0]
    assert rof.flow_norm.dims == ("time_bin",) and rof.flow_rms.attrs["units"] == "pixel"
    assert "long_name" in rof.flow_norm.attrs and "long_name" in rof.time_bin.attrs
    assert rof.attrs["method"].startswith("builtin") and rof.attrs["reference"] == "user"
    first, last, w = qc_flow._time_bin_weights(12, 0.25)  # 3 bins of 4 frames
    assert first.tolist() == [0, 4, 8] and last.tolist() == [4, 8, 12]
    np.testing.assert_allclose(w, 0.25)
    first, last, w = qc_flow._time_bin_weights(7, 0.5)  # 4 bins of 1.75 frames (area weights)
    assert first.tolist() == [0, 1, 3, 5] and last.tolist() == [2, 4, 6, 7]
    np.testing.assert_allclose(w.sum(1), 1.0)
    np.testing.assert_allclose(w[1, :3] * 1.75, [0.25, 1.0, 0.5])  # [1.75, 3.5) over frames 1, 2, 3


@pytest.mark.parametrize("shift", [(0.4, -0.3), (1.5, -0.7), (-3.0, 2.0)])
def test_builtin_flow_recovers_translation(scene, shift):
    moved = ndimage.shift(scene, shift, order=3, mode="nearest")
    flow = qc_flow._lk_flow(scene, moved)
    inner = flow[12:-12, 12:-12]
    np.testing.assert_allclose(np.median(inner.reshape(-1, 2), 0), shift, atol=0.05)
    movie = _movie(np.stack([moved] * 10))
    rof = metrics.residual_optical_flow(movie, reference=scene, method="builtin")
    np.testing.assert_allclose(rof.flow_rms.values, np.hypot(*shift), rtol=0.06)
    np.testing.assert_allclose(rof.flow_norm.values, rof.flow_rms.values * 64, rtol=1e-12)  # sqrt(64*64)
    still = metrics.residual_optical_flow(_movie(np.stack([scene] * 10)), reference=scene, method="builtin")
    assert float(still.flow_rms.max()) < 1e-6


def test_flow_nan_pixels_left_out(scene):
    moved = ndimage.shift(scene, (1.0, 0.0), order=3, mode="nearest")
    arr = np.stack([moved] * 5)
    arr[:, :6, :] = np.nan  # NaN border: left out of |Omega|
    rof = metrics.residual_optical_flow(_movie(arr), reference=scene, method="builtin")
    assert rof.sizes["time_bin"] == 1
    assert float(rof.flow_rms[0]) == pytest.approx(1.0, rel=0.08)
    assert float(rof.flow_norm[0]) == pytest.approx(float(rof.flow_rms[0]) * np.sqrt(58 * 64), rel=1e-12)


def test_flow_lower_after_correction(small_movie):
    res = xnormcorre.rigid(small_movie, max_shifts=5)
    raw = metrics.residual_optical_flow(small_movie, crop=5, method="builtin")
    cor = metrics.residual_optical_flow(res.corrected, crop=5, method="builtin")
    assert raw.sizes["time_bin"] == 8
    assert float(cor.flow_rms.mean()) < 0.5 * float(raw.flow_rms.mean())


def test_farneback_backend_called_exactly_as_caiman(monkeypatch, scene):
    calls = []

    def fake_farneback(prev, nxt, flow, **kw):
        calls.append((prev, nxt, flow, kw))
        out = np.zeros((*prev.shape, 2), np.float32)
        out[..., 0], out[..., 1] = 3.0, 4.0  # OpenCV order: (u=x, v=y)
        return out

    monkeypatch.setitem(
        sys.modules, "cv2", types.SimpleNamespace(calcOpticalFlowFarneback=fake_farneback, __version__="fake")
    )
    movie = _movie(np.stack([scene] * 10))
    rof = metrics.residual_optical_flow(movie, reference=scene * 2, method="auto", crop=2)
    assert len(calls) == 2
    prev, nxt, flow, kw = calls[0]
    assert flow is None
    assert kw == {
        "pyr_scale": 0.5,
        "levels": 3,
        "winsize": 100,
        "iterations": 15,
        "poly_n": 5,
        "poly_sigma": pytest.approx(0.24),
        "flags": 0,
    }
    assert prev.dtype == np.float32 and nxt.dtype == np.float32 and prev.shape == (60, 60)
    np.testing.assert_allclose(prev, scene[2:-2, 2:-2] * 2, rtol=1e-6)  # reference first, frame second
    np.testing.assert_allclose(nxt, scene[2:-2, 2:-2], rtol=1e-6)
    np.testing.assert_allclose(rof.flow_rms.values, 5.0)
    np.testing.assert_allclose(rof.flow_norm.values, 5.0 * 60)
    assert rof.attrs["method"] == "OpenCV fake calcOpticalFlowFarneback"


def test_farneback_requested_without_opencv(monkeypatch, rand_movie):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(ImportError, match=r"xnormcorre\[flow\]"):
        metrics.residual_optical_flow(rand_movie, method="farneback")
    rof = metrics.residual_optical_flow(rand_movie, method="auto")  # falls back
    assert rof.attrs["method"].startswith("builtin")


def test_real_opencv_agrees_with_builtin(scene):
    pytest.importorskip("cv2")
    moved = ndimage.shift(scene, (1.5, -0.7), order=3, mode="nearest")
    movie = _movie(np.stack([moved] * 5))
    fb = metrics.residual_optical_flow(movie, reference=scene, method="farneback")
    lk = metrics.residual_optical_flow(movie, reference=scene, method="builtin")
    np.testing.assert_allclose(fb.flow_rms.values, lk.flow_rms.values, rtol=0.1)


# ----------------------------------------------------------------------------- summary
def test_summary_before_after(small_movie):
    res = xnormcorre.rigid(small_movie, max_shifts=5)
    s = metrics.summary(small_movie, res, flow_method="builtin")
    assert s.stage.values.tolist() == ["raw", "corrected"]
    assert s.attrs["crop"] == [5, 5]  # from the result's max_shifts
    for name, var in s.data_vars.items():
        assert var.dims == ("stage",) and "long_name" in var.attrs and "units" in var.attrs, name
    for k, v in s.attrs.items():
        assert isinstance(v, (str, int, float, list)), k
    c_raw = metrics.correlation_with_mean(small_movie, crop=5).values
    c_cor = metrics.correlation_with_mean(res.corrected, crop=5).values
    np.testing.assert_allclose(s.mean_correlation.values, [c_raw.mean(), c_cor.mean()], rtol=1e-12)
    np.testing.assert_allclose(s.median_correlation.values, [np.median(c_raw), np.median(c_cor)], rtol=1e-12)
    np.testing.assert_allclose(
        s.crispness.values,
        [metrics.crispness(small_movie, crop=5), metrics.crispness(res.corrected, crop=5)],
        rtol=1e-12,
    )
    rof = metrics.residual_optical_flow(res.corrected, crop=5, method="builtin")
    assert float(s.residual_flow_rms.sel(stage="corrected")) == pytest.approx(float(rof.flow_rms.mean()))
    assert float(s.residual_flow_norm_std.sel(stage="corrected")) == pytest.approx(float(rof.flow_norm.std()))
    # correction improves every metric
    assert (s.mean_correlation.diff("stage") > 0).all()
    assert (s.crispness.diff("stage") > 0).all()
    assert (s.residual_flow_rms.diff("stage") < 0).all()
    # a plain DataArray: crop 0 unless given; flow can be skipped
    s2 = metrics.summary(small_movie, res.corrected, flow=False)
    assert s2.attrs["crop"] == [0, 0] and "residual_flow_rms" not in s2
    s3 = metrics.summary(small_movie, res.corrected, crop=5, flow=False)
    xr.testing.assert_allclose(s3.crispness, s.crispness)
    # the run's verdict and flag counts
    assert s.attrs["qc_verdict"] == res.attrs["qc_verdict"] == "ok" and s.attrs["qc_warnings"] == ""
    assert s.attrs["n_defects"] == res.attrs["n_defects"] == int(res.defect_mask.sum())
    assert s.attrs["n_frames"] == 40
    assert s.attrs["n_frames_at_max_shift"] == s.attrs["n_frames_low_correlation"] == 0
    assert "qc_verdict" not in s2.attrs and "n_frames" not in s2.attrs  # a plain movie has no verdict


def test_summary_shows_a_suspect_verdict(small_movie):
    """Motion beyond max_shifts (walk up to 3 px, search bound 2 px): the summary says so."""
    with pytest.warns(RegistrationWarning) as record:
        res = xnormcorre.rigid(small_movie, max_shifts=2)
    # only the run's own warnings (a shared compilation cache may add JAX's)
    messages = [str(w.message) for w in record if issubclass(w.category, RegistrationWarning)]
    assert any("search bound" in m for m in messages)
    s = metrics.summary(small_movie, res, flow=False)
    assert s.attrs["qc_verdict"] == "suspect"
    assert s.attrs["qc_warnings"] == res.attrs["qc_warnings"]
    assert "increase max_shifts" in s.attrs["qc_warnings"]
    assert s.attrs["qc_warnings"] == " | ".join(messages)
    hits = int(res.at_max_shift.sum())
    assert s.attrs["n_frames_at_max_shift"] == hits and hits > 0.01 * 40
    for k, v in s.attrs.items():
        assert isinstance(v, (str, int, float, list)), k
    # piecewise flags are counted per frame (any patch)
    pw = xr.Dataset(
        {"patch_jump": (("time", "patch_y", "patch_x"), np.zeros((5, 2, 2), np.int8))},
        attrs={"qc_verdict": "ok", "qc_warnings": "", "n_defects": 7},
    )
    pw["patch_jump"][[1, 3], 0, 1] = 1
    pw["patch_jump"][3, 1, 1] = 1
    assert qc_metrics.result_qc(pw) == {
        "qc_verdict": "ok",
        "qc_warnings": "",
        "n_defects": 7,
        "n_frames": 5,
        "n_frames_patch_jump": 2,
    }
    # lazy flags are not computed (that would register the movie again)
    assert "n_frames_patch_jump" not in qc_metrics.result_qc(pw.chunk({"time": 2}))


def test_summary_bad_input(small_movie):
    with pytest.raises(ValueError, match="frame shape"):
        metrics.summary(small_movie, small_movie.isel(x=slice(0, 32)), flow=False)
    with pytest.raises(ValueError, match="corrected"):
        metrics.summary(small_movie, xr.Dataset({"movie": small_movie}), flow=False)
    with pytest.raises(ValueError, match="method"):
        metrics.summary(small_movie, small_movie, flow_method="nope")
    with pytest.raises(TypeError, match="flow"):
        metrics.summary(small_movie, small_movie, flow="yes")


def test_metrics_on_real_movie(sima_path):
    import tifffile

    movie = xr.DataArray(tifffile.imread(sima_path), dims=("time", "y", "x"))
    res = xnormcorre.rigid(movie, max_shifts=(10, 10))
    s = metrics.summary(movie, res, flow_method="builtin")
    assert float(s.crispness.sel(stage="corrected")) > float(s.crispness.sel(stage="raw"))
    assert float(s.mean_correlation.sel(stage="corrected")) > float(s.mean_correlation.sel(stage="raw"))
    assert float(s.residual_flow_rms.sel(stage="corrected")) < float(s.residual_flow_rms.sel(stage="raw"))
