"""Corrector: the same bits as rigid()/pwrigid(), the single-frame path, lazy access, files, loaders."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xnormcorre
from xnormcorre.core.corrector import FORMAT_VERSION
from xnormcorre.engine import fast
from xnormcorre.engine.config import Calibration, scale_for
from xnormcorre.engine.noise import UNIFORM
from xnormcorre.testing.crlb import rmse

SHAPE = (64, 64)
PW = {"max_shifts": 6, "strides": (24, 24), "overlaps": (16, 16), "max_deviation_rigid": 2}


@pytest.fixture(scope="module")
def movie():
    return xnormcorre.datasets.synthetic_movie(n_frames=48, shape=SHAPE, max_shift=3, seed=3)


@pytest.fixture(scope="module")
def res(movie):
    return xnormcorre.rigid(movie, max_shifts=6)


@pytest.fixture(scope="module")
def pw_res(movie):
    return xnormcorre.pwrigid(movie, **PW)


def true_shifts(movie):
    return np.stack([movie.true_shift_y.values, movie.true_shift_x.values], axis=1)


class Reader:
    """The frame-reader protocol: shape, dtype and __getitem__ along time only; records reads."""

    def __init__(self, data: np.ndarray):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads: list[int] = []

    def __getitem__(self, key):
        if isinstance(key, tuple):
            raise TypeError("this reader is indexed along time only")
        self.reads.extend(np.arange(self.shape[0])[key].ravel().tolist())
        return self._data[key]


# --------------------------------------------------------------------------- same bits as the batch functions
def test_correct_is_rigid_with_template_bit_for_bit(movie, res):
    corr = xnormcorre.Corrector(res.template, max_shifts=6)
    out = corr.correct(movie)
    ref = xnormcorre.rigid(movie, template=res.template, max_shifts=6)
    xr.testing.assert_identical(out, ref)  # variables, coordinates and attrs
    assert np.array_equal(out.corrected.values, ref.corrected.values)
    assert np.array_equal(out.shifts.values, ref.shifts.values)
    # later calls keep the first call's calibration: a part of the movie gives the same frames
    part = corr.correct(movie[10:30])
    assert np.array_equal(part.corrected.values, ref.corrected.values[10:30])


def test_correct_is_pwrigid_with_template_bit_for_bit(movie, pw_res):
    out = xnormcorre.Corrector(pw_res.template, **PW).correct(movie)
    ref = xnormcorre.pwrigid(movie, template=pw_res.template, **PW)
    xr.testing.assert_identical(out, ref)
    assert np.array_equal(out.shifts.values, ref.shifts.values)


@pytest.mark.parametrize("kind", ["rigid", "pwrigid"])
def test_from_result_reproduces_the_run(kind, movie, res, pw_res):
    run = res if kind == "rigid" else pw_res
    corr = xnormcorre.Corrector.from_result(run)
    assert corr.method == kind and corr.calibrated
    out = corr.correct(movie.chunk({"time": 20}))  # any chunking: the same bits
    for name in ("corrected", "shifts", "correlation"):
        assert np.array_equal(out[name].values, run[name].values), name
    assert out.attrs["noise_gain"] == run.attrs["noise_gain"]
    assert out.attrs["intensity_scale"] == run.attrs["intensity_scale"]


def test_reference_shifts_from_one_channel_applied_to_another(movie, res):
    other = (movie * 0.5 + 7.0).rename("other")
    out = xnormcorre.Corrector(res.template, max_shifts=6).correct(other, reference=movie)
    ref = xnormcorre.rigid(other, reference=movie, template=res.template, max_shifts=6)
    xr.testing.assert_identical(out, ref)
    # the shifts are the reference's: the same as registering the reference itself
    own = xnormcorre.Corrector(res.template, max_shifts=6).correct(movie)
    assert np.array_equal(out.shifts.values, own.shifts.values)
    frame, shift = xnormcorre.Corrector.from_result(res).correct_frame(
        other[7].values, reference=movie[7].values
    )
    np.testing.assert_allclose(shift, res.shifts[7].values, atol=1e-3)
    np.testing.assert_allclose(frame, res.corrected[7].values * 0.5 + 7.0, atol=1e-2)


# --------------------------------------------------------------------------- the single-frame path
def test_shift_and_correct_frame_agree_with_the_batch(movie, res):
    corr = xnormcorre.Corrector.from_result(res)
    shifts = np.array([corr.shift(f) for f in movie.values])
    assert shifts.shape == (48, 2) and shifts.dtype == np.float32
    np.testing.assert_allclose(shifts, res.shifts.values, atol=1e-3)  # float32 rounding of a batch of 1
    batch_err = rmse(res.shifts.values, true_shifts(movie))
    assert abs(rmse(shifts, true_shifts(movie)) - batch_err) < 1e-3 and batch_err < 0.2
    frame, shift = corr.correct_frame(movie[11].values)
    np.testing.assert_allclose(shift, res.shifts[11].values, atol=1e-3)
    np.testing.assert_allclose(frame, res.corrected[11].values, atol=0.02, rtol=1e-4)
    counts = movie[11].values.round().astype(np.uint16)  # any integer dtype: as its float32 values
    for a, b in zip(corr.correct_frame(counts), corr.correct_frame(counts.astype(np.float32)), strict=True):
        assert np.array_equal(a, b)


def test_pw_shift_returns_patch_shifts(movie, pw_res):
    corr = xnormcorre.Corrector.from_result(pw_res)
    ps = corr.shift(movie[4].values)
    assert ps.shape == pw_res.shifts.shape[1:]
    np.testing.assert_allclose(ps, pw_res.shifts[4].values, atol=1e-3)
    frame, ps2 = corr.correct_frame(movie[4].values)
    np.testing.assert_allclose(frame, pw_res.corrected[4].values, atol=0.02, rtol=1e-4)
    np.testing.assert_array_equal(ps, ps2)


def test_refine_patches_lowers_patch_error():
    """``refine_patches`` as in pwrigid, in the batch and the single-frame paths: under
    rigid motion every patch shares the frame's shift, and the refined patch shifts are
    closer to it than the correlation peaks."""
    from xnormcorre.testing.simulate import simulate_movie

    sim = simulate_movie(SHAPE, 40, max_shift=3.0, photons_per_px=5.0, seed=4, oversample=2)
    truth = sim.shifts[:, None, None, :]
    err, one = {}, {}
    for rp in (False, True):
        corr = xnormcorre.Corrector(sim.template, refine_patches=rp, **PW)
        assert corr.parameters["refine_patches"] is rp
        est = corr.correct(sim.frames).shifts.transpose("time", "patch_y", "patch_x", "axis").values
        err[rp] = float(np.sqrt(np.mean((est - truth) ** 2)))
        one[rp] = corr.shift(np.asarray(sim.frames[7]))
        np.testing.assert_allclose(one[rp], est[7], atol=1e-3)
    assert err[True] < 0.75 * err[False] and err[True] < 0.1, err
    assert not np.array_equal(one[True], one[False])


def test_update_template_changes_the_reference_without_new_parameters(movie, res):
    corr = xnormcorre.Corrector.from_result(res)
    before = corr.shift(movie[3].values)
    compiled = fast._rigid_same._cache_size()
    moved = np.roll(res.template.values, 1, axis=1)  # content moved by +1 px along x
    after = corr.update_template(moved).shift(movie[3].values)
    np.testing.assert_allclose(after - before, [0.0, -1.0], atol=0.05)
    assert fast._rigid_same._cache_size() == compiled  # nothing compiled again


def test_single_frame_calibration_when_never_calibrated(movie, res):
    corr = xnormcorre.Corrector(res.template, max_shifts=6)
    assert not corr.calibrated
    frame = movie[2].values
    shift = corr.shift(frame)
    assert corr.calibrated
    # one frame: no noise model, no defects, the frame's power-of-two scale
    explicit = Calibration(None, UNIFORM, scale_for(frame))
    same = xnormcorre.Corrector(res.template, max_shifts=6, calibration=explicit)
    assert np.array_equal(shift, same.shift(frame))
    np.testing.assert_allclose(shift, res.shifts[2].values, atol=0.15)


# --------------------------------------------------------------------------- bad input
def test_bad_input_gives_one_clear_error(movie, res):
    corr = xnormcorre.Corrector.from_result(res)
    with pytest.raises(ValueError, match=r"frame must have the template's shape \(64, 64\), got \(32, 64\)"):
        corr.shift(np.zeros((32, 64), np.float32))
    with pytest.raises(TypeError, match="frame must have an integer or floating dtype, got complex64"):
        corr.correct_frame(np.zeros(SHAPE, np.complex64))
    with pytest.raises(ValueError, match=r"frames must have the template's frame shape \(64, 64\)"):
        corr.correct(np.zeros((3, 64, 32), np.float32))
    with pytest.raises(ValueError, match="template must be 2-D"):
        xnormcorre.Corrector(np.zeros((2, 64, 64)))
    with pytest.raises(ValueError, match="max_shifts must be smaller than half the frame"):
        xnormcorre.Corrector(res.template, max_shifts=40)
    with pytest.raises(TypeError, match="result must be the Dataset returned by"):
        xnormcorre.Corrector.from_result(res.template)


# --------------------------------------------------------------------------- lazy access
def test_lazy_registers_only_the_chunk_holding_a_frame(movie, res):
    corr = xnormcorre.Corrector.from_result(res)
    reader = Reader(movie.values)
    lazy = corr.lazy(xnormcorre.as_movie(reader, chunks=16))
    assert lazy.chunks is not None and lazy.dims == ("time", "y", "x")
    assert reader.reads == []  # nothing read yet (the corrector is calibrated)
    frame = lazy.isel(time=21).values
    assert set(reader.reads) == set(range(16, 32))  # the chunk holding frame 21 only
    assert np.array_equal(frame, res.corrected[21].values)
    assert np.array_equal(lazy.values, res.corrected.values)  # every chunk: the batch's bits


# --------------------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path, movie, res, pw_res):
    for run in (res, pw_res):
        corr = xnormcorre.Corrector.from_result(run)
        path = corr.save(tmp_path / f"{run.attrs['method']}.nc")
        back = xnormcorre.Corrector.load(path)
        assert back.method == corr.method and back.parameters == corr.parameters
        assert np.array_equal(back.template, corr.template)
        out = back.correct(movie[:16])
        assert np.array_equal(out.corrected.values, run.corrected.values[:16])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        corr.save(path)
    corr.save(path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pwrigid.nc", "rigid.nc"]  # no temporary left
    # a corrector not calibrated yet stays so, and calibrates on its first frames
    fresh = xnormcorre.Corrector(res.template, max_shifts=6, border="min")
    back = xnormcorre.Corrector.load(fresh.save(tmp_path / "fresh.nc"))
    assert not back.calibrated
    ref = xnormcorre.rigid(movie, template=res.template, max_shifts=6, border="min")
    xr.testing.assert_identical(back.correct(movie), ref)


def test_load_refuses_other_versions_and_other_files(tmp_path, res):
    path = xnormcorre.Corrector.from_result(res).save(tmp_path / "c.nc")
    ds = xr.load_dataset(path)
    ds.attrs["xnormcorre_corrector_format"] = FORMAT_VERSION + 1
    ds.to_netcdf(tmp_path / "future.nc")
    with pytest.raises(
        ValueError, match=f"format version {FORMAT_VERSION + 1}.*reads version {FORMAT_VERSION}"
    ):
        xnormcorre.Corrector.load(tmp_path / "future.nc")
    res.drop_vars("corrected").to_netcdf(tmp_path / "result.nc")
    with pytest.raises(ValueError, match="not a saved xnormcorre Corrector"):
        xnormcorre.Corrector.load(tmp_path / "result.nc")


# --------------------------------------------------------------------------- as_movie
def test_as_movie_takes_readers_memmaps_and_zarr(tmp_path, movie, res):
    data = movie.values
    reader = Reader(data)
    lazy = xnormcorre.as_movie(reader)
    assert lazy.dims == ("time", "y", "x") and lazy.chunks is not None and lazy.dtype == data.dtype
    assert reader.reads == []
    out = xnormcorre.rigid(lazy, max_shifts=6)
    assert np.array_equal(out.shifts.values, res.shifts.values)  # the same bits as the array

    mm = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.float32, shape=data.shape)
    mm[:] = data
    mm.flush()
    mv = xnormcorre.as_movie(np.load(tmp_path / "m.npy", mmap_mode="r"), chunks=10)
    assert mv.chunks[0] == (10, 10, 10, 10, 8)
    assert np.array_equal(mv.values, data)

    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(store=str(tmp_path / "m.zarr"), shape=data.shape, chunks=(8, 64, 64), dtype="f4")
    z[:] = data
    zm = xnormcorre.as_movie(z)
    assert zm.chunks is not None and np.array_equal(zm[5:9].values, data[5:9])


def test_as_movie_bad_readers():
    with pytest.raises(TypeError, match="frame reader with shape, dtype and __getitem__"):
        xnormcorre.as_movie(object())
    with pytest.raises(ValueError, match=r"must be 3-D \(time, y, x\), got shape \(4, 2, 8, 8\)"):
        xnormcorre.as_movie(Reader(np.zeros((4, 2, 8, 8), np.float32)))

    class Wrong(Reader):
        def __getitem__(self, key):
            return super().__getitem__(key)[:, :4]

    with pytest.raises(ValueError, match="returned an array of shape"):
        np.asarray(xnormcorre.as_movie(Wrong(np.zeros((4, 8, 8), np.float32))))


def test_rigid_takes_a_reader_directly(movie):
    out = xnormcorre.rigid(Reader(movie.values), max_shifts=6)
    assert out.corrected.shape == movie.shape
