"""The lazy TIFF backend (``xnormcorre_tiff``) and ``open_movie`` on TIFF files."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import psutil
import pytest
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.io import _common as cm
from xnormcorre.io.tiff import TiffBackendEntrypoint

ENGINE = "xnormcorre_tiff"


def _stack(n=12, h=16, w=20, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, size=(n, h, w)).astype(dtype)


@pytest.fixture
def tiff_reads(monkeypatch):
    """Frames read from disk: page keys of TiffFile.asarray and frame-sized contiguous reads."""
    log: dict[str, list] = {"pages": [], "items": []}
    orig_asarray = tifffile.TiffFile.asarray
    orig_read = tifffile.FileHandle.read_array

    def asarray(self, *args, **kwargs):
        log["pages"].extend(list(kwargs.get("key") or []))
        return orig_asarray(self, *args, **kwargs)

    def read_array(self, dtype, count=-1, offset=0, **kwargs):
        log["items"].append(count)
        return orig_read(self, dtype, count, offset, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "asarray", asarray)
    monkeypatch.setattr(tifffile.FileHandle, "read_array", read_array)
    return log


# --------------------------------------------------------------------------- registration
def test_engine_name_and_class_give_the_same(tmp_path):
    arr = _stack()
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, arr)
    by_name = xr.open_dataset(p, engine=ENGINE)
    by_class = xr.open_dataset(p, engine=TiffBackendEntrypoint)
    xr.testing.assert_identical(by_name, by_class)
    np.testing.assert_array_equal(by_class.movie.values, arr)
    by_name.close()
    by_class.close()


# --------------------------------------------------------------------------- layouts
def _write(kind: str, path, arr):
    if kind == "plain":
        tifffile.imwrite(path, arr)
    elif kind == "bigtiff":
        tifffile.imwrite(path, arr, bigtiff=True)
    elif kind == "imagej":
        tifffile.imwrite(path, arr, imagej=True)
    elif kind == "imagej_truncated":  # ImageJ hyperstack > 4 GB layout: one IFD, frames back to back
        tifffile.imwrite(path, arr, imagej=True, truncate=True)
    elif kind == "zlib":
        tifffile.imwrite(path, arr, compression="zlib", predictor=True)
    elif kind == "zlib_float":
        tifffile.imwrite(path, arr.astype(np.float32), compression="zlib")
    elif kind == "one_write_per_page":
        with tifffile.TiffWriter(path) as tw:
            for frame in arr:
                tw.write(frame)
    elif kind == "ome":
        tifffile.imwrite(path, arr, ome=True, metadata={"axes": "TYX"})
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["plain", "bigtiff", "imagej", "imagej_truncated", "zlib", "zlib_float", "one_write_per_page", "ome"],
)
def test_layouts_read_lazily_and_exactly(tmp_path, kind, tiff_reads):
    arr = _stack(n=9)
    p = tmp_path / ("m.ome.tif" if kind == "ome" else "m.tif")
    _write(kind, p, arr)
    want = arr.astype(np.float32) if kind == "zlib_float" else arr
    ds = xr.open_dataset(p, engine=ENGINE)
    assert tiff_reads["pages"] == [] and not any(c >= 16 * 20 for c in tiff_reads["items"])  # no pixel read
    assert ds.movie.dims == ("time", "y", "x")
    assert ds.movie.dtype == want.dtype and ds.movie.shape == want.shape
    np.testing.assert_array_equal(ds.movie.isel(time=[1, 7]).values, want[[1, 7]])
    np.testing.assert_array_equal(
        ds.movie.isel(time=slice(2, 8, 3), y=slice(3, 9), x=4).values, want[2:8:3, 3:9, 4]
    )
    np.testing.assert_array_equal(ds.movie.isel(time=-1).values, want[-1])
    np.testing.assert_array_equal(ds.movie.values, want)
    ds.close()


def test_bigtiff_and_compression_flags_reach_the_file(tmp_path):
    arr = _stack()
    p = tmp_path / "b.tif"
    tifffile.imwrite(p, arr, bigtiff=True, compression="zlib")
    with tifffile.TiffFile(p) as tif:
        assert tif.is_bigtiff and tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    with xr.open_dataset(p, engine=ENGINE) as ds:
        np.testing.assert_array_equal(ds.movie.values, arr)


# --------------------------------------------------------------------------- lazy reads
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_isel_list_reads_exactly_two_frames(tmp_path, tiff_reads, compression):
    """OUTER_1VECTOR: isel(time=[3, 900]) decodes 2 pages (or 2 frame-sized reads), not 898."""
    arr = (np.arange(1000 * 8 * 8) % 50000).astype(np.uint16).reshape(1000, 8, 8)
    p = tmp_path / "long.tif"
    tifffile.imwrite(p, arr, compression=compression)
    ds = xr.open_dataset(p, engine=ENGINE)
    got = ds.movie.isel(time=[900, 3]).values
    np.testing.assert_array_equal(got, arr[[900, 3]])
    if compression is None:  # contiguous frames: one frame-sized read each
        assert sorted(c for c in tiff_reads["items"] if c >= 64) == [64, 64]
    else:  # compressed pages: exactly the two pages decoded
        assert sorted(tiff_reads["pages"]) == [3, 900]
    tiff_reads["pages"].clear()
    tiff_reads["items"].clear()
    # successive lazy selections compose into one read of 10 frames
    np.testing.assert_array_equal(
        ds.movie.isel(time=slice(100, 200)).isel(time=slice(0, 10)).values, arr[100:110]
    )
    if compression is None:
        assert sum(c for c in tiff_reads["items"] if c >= 64) == 10 * 64
    else:
        assert tiff_reads["pages"] == list(range(100, 110))
    ds.close()


def test_dask_chunks_read_only_needed_chunks(tmp_path, tiff_reads):
    arr = _stack(n=50, h=8, w=8)
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, arr, compression="zlib")
    ds = xr.open_dataset(p, engine=ENGINE, chunks={"time": 10})
    assert ds.movie.chunks == ((10,) * 5, (8,), (8,))
    assert ds.movie.encoding["preferred_chunks"] == {"time": 1}
    assert tiff_reads["pages"] == []
    np.testing.assert_array_equal(ds.movie.isel(time=slice(12, 15)).values, arr[12:15])
    assert tiff_reads["pages"] == [12, 13, 14]
    ds.close()


# --------------------------------------------------------------------------- pickling, closing, threads
def test_pickle_round_trip_of_opened_dataset(tmp_path):
    arr = _stack()
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, arr, compression="zlib")
    for chunks in (None, {"time": 5}):
        ds = xr.open_dataset(p, engine=ENGINE, chunks=chunks)
        again = pickle.loads(pickle.dumps(ds))
        ds.close()  # the copy re-opens the file on demand
        xr.testing.assert_identical(again.load(), xr.open_dataset(p, engine=ENGINE).load())
        np.testing.assert_array_equal(again.movie.values, arr)
        again.close()


def test_close_releases_the_file(tmp_path):
    arr = _stack()
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, arr)
    ds = xr.open_dataset(p, engine=ENGINE)
    _ = ds.movie.isel(time=0).values

    def is_open():
        return any(
            os.path.samefile(f.path, p) for f in psutil.Process().open_files() if os.path.exists(f.path)
        )

    assert is_open()
    ds.close()
    assert not is_open()


def test_threaded_reads_are_consistent(tmp_path):
    arr = _stack(n=64, h=32, w=32)
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, arr, compression="zlib")
    ds = xr.open_dataset(p, engine=ENGINE, chunks={"time": 1})
    np.testing.assert_array_equal(ds.movie.data.compute(scheduler="threads", num_workers=8), arr)
    ds.close()


# --------------------------------------------------------------------------- coordinates, params
def test_coordinates_labels_and_fps(tmp_path):
    arr = _stack(n=5)
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, arr)
    ds = xr.open_dataset(p, engine=ENGINE)
    assert ds.time.values.tolist() == [0, 1, 2, 3, 4] and ds.time.attrs["units"] == "1"
    for name in ("time", "y", "x", "movie"):
        assert {"long_name", "units"} <= set(ds[name].attrs), name
    assert ds.y.attrs["units"] == "pixel" and ds.x.attrs["axis"] == "X"
    assert ds.movie.encoding["source"] == str(p)
    for v in ds.movie.attrs.values():
        assert isinstance(v, (str, int, float, list))
    timed = xr.open_dataset(p, engine=ENGINE, fps=20.0)
    np.testing.assert_allclose(timed.time.values, np.arange(5) / 20.0)
    assert timed.time.attrs["units"] == "s" and timed.time.attrs["standard_name"] == "time"
    assert timed.frame.values.tolist() == [0, 1, 2, 3, 4]
    assert timed.attrs["fps"] == 20.0
    dropped = xr.open_dataset(p, engine=ENGINE, drop_variables="movie")
    assert "movie" not in dropped and dropped.sizes["time"] == 5
    for bad in (0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="fps"):
            xr.open_dataset(p, engine=ENGINE, fps=bad)
    with pytest.raises(TypeError, match="fps"):
        xr.open_dataset(p, engine=ENGINE, fps="30")
    ds.close()
    timed.close()


def test_series_parameter(tmp_path):
    a, b = _stack(n=4, h=8, w=8), _stack(n=3, h=10, w=6, seed=1)
    p = tmp_path / "two.tif"
    with tifffile.TiffWriter(p) as tw:
        tw.write(a, photometric="minisblack")
        tw.write(b, photometric="minisblack")
    np.testing.assert_array_equal(xr.open_dataset(p, engine=ENGINE, series=1).movie.values, b)
    np.testing.assert_array_equal(xr.open_dataset(p, engine=ENGINE, series=0).movie.values, a)
    with pytest.raises(ValueError, match="series=5 is out of range.*2 series"):
        xr.open_dataset(p, engine=ENGINE, series=5)
    with pytest.raises(ValueError, match="different shapes"):
        xr.open_dataset(p, engine=ENGINE)


def test_volume_and_rgb_series_are_refused(tmp_path):
    # (time, channel, y, x) hyperstacks open with a channel dim: see test_rig.py
    p = tmp_path / "tzcyx.tif"
    tifffile.imwrite(p, np.zeros((3, 2, 2, 8, 8), np.uint16), imagej=True, metadata={"axes": "TZCYX"})
    with pytest.raises(ValueError, match="volume"):
        xr.open_dataset(p, engine=ENGINE)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((3, 8, 8), np.uint8), photometric="rgb", planarconfig="separate")
    with pytest.raises(ValueError, match="single-channel"):
        xr.open_dataset(rgb, engine=ENGINE)


# --------------------------------------------------------------------------- many files
def test_list_and_glob_of_files_form_one_movie(tmp_path, tiff_reads):
    parts = [_stack(n=n, seed=i) for i, n in enumerate((4, 1, 6))]
    for i, part in enumerate(parts):
        tifffile.imwrite(
            tmp_path / f"rec_{[2, 9, 10][i]}.tif", part, compression="zlib", photometric="minisblack"
        )
    full = np.concatenate(parts)
    paths = [tmp_path / "rec_2.tif", tmp_path / "rec_9.tif", tmp_path / "rec_10.tif"]
    by_list = xr.open_dataset(paths, engine=ENGINE, cache=False)
    by_glob = xr.open_dataset(str(tmp_path / "rec_*.tif"), engine=ENGINE)  # natural order: 2, 9, 10
    np.testing.assert_array_equal(by_list.movie.values, full)
    np.testing.assert_array_equal(by_glob.movie.values, full)
    assert by_list.movie.attrs["n_files"] == 3
    tiff_reads["pages"].clear()
    np.testing.assert_array_equal(by_list.movie.isel(time=[3, 4, 10]).values, full[[3, 4, 10]])
    assert sorted(tiff_reads["pages"]) == [0, 3, 5]  # local page numbers in files 1, 2, 3
    movie = xnormcorre.open_movie(paths, chunks={"time": 4})
    np.testing.assert_array_equal(movie.values, full)
    assert pickle.loads(pickle.dumps(by_list)).movie[10].values.tolist() == full[10].tolist()
    by_list.close()
    by_glob.close()


def test_files_of_different_frame_shapes_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", _stack(h=16, w=20))
    tifffile.imwrite(tmp_path / "b.tif", _stack(h=16, w=21))
    with pytest.raises(ValueError, match="same shape and dtype"):
        xnormcorre.open_movie([tmp_path / "a.tif", tmp_path / "b.tif"])


# --------------------------------------------------------------------------- open_movie errors
def test_open_movie_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        xnormcorre.open_movie(tmp_path / "nope.tif")
    with pytest.raises(FileNotFoundError, match="no TIFF file matches"):
        xnormcorre.open_movie(str(tmp_path / "none_*.tif"))
    with pytest.raises(IsADirectoryError, match="directory"):
        xnormcorre.open_movie(tmp_path)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        xnormcorre.open_movie(tmp_path / "empty.tif")
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(ValueError, match="corrupt.tif.*not a readable TIFF"):
        xnormcorre.open_movie(tmp_path / "corrupt.tif")
    (tmp_path / "text.tif").write_text("hello world")
    with pytest.raises(ValueError, match="neither a TIFF nor an HDF5"):
        xnormcorre.open_movie(tmp_path / "text.tif")
    with pytest.raises(FileNotFoundError):
        xr.open_dataset(tmp_path / "nope.tif", engine=ENGINE)
    tifffile.imwrite(tmp_path / "ok.tif", _stack())
    with pytest.raises(ValueError, match="HDF5 files only"):
        xnormcorre.open_movie(tmp_path / "ok.tif", dataset="mov")
    with pytest.raises(TypeError, match="path_or_paths"):
        xnormcorre.open_movie(12)


def test_pages_of_different_shapes_are_refused(tmp_path):
    p = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(p) as tw:  # plain TIFF pages, no shape metadata
        tw.write(np.zeros((8, 8), np.uint16), metadata=None)
        tw.write(np.zeros((8, 8), np.uint16), metadata=None)
        tw.write(np.zeros((9, 8), np.uint16), metadata=None)
    with pytest.raises(ValueError, match="pages of different shapes"):
        xnormcorre.open_movie(p)


def test_guess_can_open():
    ep = TiffBackendEntrypoint()
    assert (
        ep.guess_can_open("x.tif") and ep.guess_can_open("x.TIFF") and ep.guess_can_open(["a.tif", "b.tif"])
    )
    assert not ep.guess_can_open("x.nc") and not ep.guess_can_open(12)


def test_guess_can_open_checks_magic_bytes(tmp_path):
    ep = TiffBackendEntrypoint()
    p = tmp_path / "renamed.dat"
    tifffile.imwrite(p, _stack(n=2))
    assert ep.guess_can_open(p)
    fake = tmp_path / "fake.tif"
    fake.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 8)
    assert not ep.guess_can_open(fake)
    assert cm.is_tiff_magic(b"MM\x00+\x00\x08")


# --------------------------------------------------------------------------- open_movie + lazy rigid
def test_open_movie_default_chunks_and_labels(synthetic_tiff):
    p, arr = synthetic_tiff
    movie = xnormcorre.open_movie(p)
    assert movie.name == "movie" and movie.chunks is not None
    assert movie.chunks[1:] == ((64,), (64,))
    assert movie.chunks[0] == (60,)  # 2**24 px per chunk > the whole movie
    np.testing.assert_array_equal(movie.values, arr)
    assert xnormcorre.io.default_time_chunk((10_000, 256, 256)) == 256
    movie.close()
    assert xnormcorre.open_movie(p, chunks=25).chunks == ((25, 25, 10), (64,), (64,))
    assert xnormcorre.open_movie(p, chunks={"time": 30}).chunks == ((30, 30), (64,), (64,))


def test_eager_and_chunked_correction_identical(synthetic_tiff):
    p, _ = synthetic_tiff
    eager_movie = xr.open_dataarray(p, engine=ENGINE).load()
    chunked = xnormcorre.open_movie(p, chunks={"time": 7})
    xr.testing.assert_identical(chunked.compute(), eager_movie)
    eager = xnormcorre.rigid(eager_movie, max_shifts=4)
    lazy = xnormcorre.rigid(chunked, max_shifts=4)
    assert lazy.corrected.chunks[0] == (7,) * 8 + (4,)
    np.testing.assert_array_equal(lazy.shifts.values, eager.shifts.values)
    np.testing.assert_array_equal(lazy.corrected.values, eager.corrected.values)
    np.testing.assert_array_equal(lazy.template.values, eager.template.values)


@pytest.mark.filterwarnings("ignore::xnormcorre.qc.diagnose.RegistrationWarning")  # reads, not accuracy
def test_lazy_rigid_reads_only_what_it_needs(synthetic_tiff, tmp_path, reads):
    """rigid() returns lazily; shifts to NetCDF compute each chunk once; a slice computes one chunk."""
    p, _ = synthetic_tiff
    frames = reads
    movie = xnormcorre.open_movie(p, chunks={"time": 20})
    assert frames == []
    t0 = time.perf_counter()
    res = movie.normcorre.rigid(max_shifts=4, niter=0)
    assert time.perf_counter() - t0 < 30
    assert res.corrected.chunks is not None and res.shifts.chunks is not None
    template_reads = len(frames)
    assert template_reads <= 60 + 60  # min_mov (first frames) + initial template sample; no registration pass
    frames.clear()
    out = tmp_path / "shifts.nc"
    res.drop_vars("corrected").to_netcdf(out)
    assert sorted(frames) == list(range(60))  # every frame read exactly once
    frames.clear()
    part = res.corrected.isel(time=slice(25, 30)).values
    assert sorted(frames) == list(range(20, 40))  # only the chunk holding frames 25..29
    saved = xr.open_dataset(out)
    assert "corrected" not in saved
    np.testing.assert_array_equal(saved.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(part, res.corrected.values[25:30])
    saved.close()


# --------------------------------------------------------------------------- real movies
def test_real_sima_imagej_movie(sima_path):
    ds = xr.open_dataset(sima_path, engine=ENGINE)
    ref = tifffile.imread(sima_path)
    assert ds.movie.shape == (20, 128, 256) and ds.movie.dtype == np.uint16
    np.testing.assert_array_equal(ds.movie.isel(time=[0, 19]).values, ref[[0, 19]])
    np.testing.assert_array_equal(ds.movie.values, ref)
    movie = xnormcorre.open_movie(sima_path)
    np.testing.assert_array_equal(movie.values, ref)
    ds.close()


def test_real_neurofinder_compressed_movie(neurofinder_path, tiff_reads):
    movie = xnormcorre.open_movie(neurofinder_path, chunks={"time": 120})
    assert movie.shape == (480, 256, 256) and movie.chunks[0] == (120,) * 4
    assert tiff_reads["pages"] == []
    ref = tifffile.imread(neurofinder_path, key=[5, 477])
    np.testing.assert_array_equal(movie.isel(time=[5, 477]).values, ref)
    tiff_reads["pages"].clear()
    ds = xr.open_dataset(neurofinder_path, engine=ENGINE)
    np.testing.assert_array_equal(ds.movie.isel(time=[5, 477]).values, ref)
    assert sorted(tiff_reads["pages"]) == [5, 477]
    ds.close()
    movie.close()


def test_imagej_tzyx_hyperstack_is_a_volumetric_movie(tmp_path):
    vol = np.random.default_rng(4).integers(0, 1000, (7, 5, 16, 20)).astype(np.uint16)
    p = tmp_path / "volume.tif"
    tifffile.imwrite(p, vol, imagej=True, metadata={"axes": "TZYX", "finterval": 0.5})
    movie = xnormcorre.open_movie(p)
    assert movie.dims == ("time", "z", "y", "x") and movie.chunks[1] == (5,)
    assert movie.attrs["fps"] == pytest.approx(2.0)
    np.testing.assert_array_equal(movie.values, vol)
    np.testing.assert_array_equal(movie.isel(time=[1, 5], z=[0, 3]).values, vol[[1, 5]][:, [0, 3]])
    ds = xr.open_dataset(p, engine=ENGINE)
    assert ds.movie.dims == ("time", "z", "y", "x") and list(ds.z.values) == [0, 1, 2, 3, 4]
