"""The lazy HDF5 backend (``xnormcorre_hdf5``) and ``open_movie`` on HDF5 files."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.io.hdf5 import H5BackendEntrypoint

ENGINE = "xnormcorre_hdf5"


def _stack(n=12, h=16, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, size=(n, h, w)).astype(np.uint16)


def _write(path, arr, name="mov", **kw):
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=arr, **kw)
    return path


@pytest.fixture
def h5_reads(monkeypatch):
    """Frames (along the first axis) returned by every h5py Dataset read."""
    log: list[tuple] = []
    orig = h5py.Dataset.__getitem__

    def getitem(self, key):
        out = orig(self, key)
        if self.ndim == 3:
            log.append((key, out.shape[0] if out.ndim == 3 else 1))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", getitem)
    return log


@pytest.mark.parametrize(
    "layout",
    [{}, {"chunks": (4, 16, 20)}, {"chunks": (1, 8, 10), "compression": "gzip"}],
    ids=["contiguous", "chunked", "gzip"],
)
def test_layouts_read_exactly(tmp_path, layout, h5_reads):
    arr = _stack()
    p = _write(tmp_path / "m.h5", arr, **layout)
    ds = xr.open_dataset(p, engine=H5BackendEntrypoint, dataset="mov")
    assert h5_reads == []  # opening reads no pixel
    assert ds.movie.dims == ("time", "y", "x") and ds.movie.dtype == np.uint16
    np.testing.assert_array_equal(ds.movie.isel(time=[1, 7]).values, arr[[1, 7]])
    np.testing.assert_array_equal(
        ds.movie.isel(time=slice(2, 9, 3), y=slice(3, 9), x=4).values, arr[2:9:3, 3:9, 4]
    )
    np.testing.assert_array_equal(ds.movie.isel(time=[]).values, arr[:0])
    np.testing.assert_array_equal(ds.movie.values, arr)
    want = dict(zip(("time", "y", "x"), layout["chunks"], strict=True)) if layout else {"time": 1}
    assert ds.movie.encoding["preferred_chunks"] == want
    assert ds.movie.attrs["hdf5_dataset"] == "/mov"
    ds.close()


def test_isel_list_reads_exactly_two_frames(tmp_path, h5_reads):
    arr = (np.arange(1000 * 8 * 8) % 50000).astype(np.uint16).reshape(1000, 8, 8)
    p = _write(tmp_path / "long.h5", arr, chunks=(1, 8, 8))
    ds = xr.open_dataset(p, engine=ENGINE, dataset="mov")
    np.testing.assert_array_equal(ds.movie.isel(time=[900, 3]).values, arr[[900, 3]])
    assert [n for _, n in h5_reads] == [2]
    np.testing.assert_array_equal(np.asarray(h5_reads[0][0][0]), [3, 900])
    h5_reads.clear()
    np.testing.assert_array_equal(
        ds.movie.isel(time=slice(100, 200)).isel(time=slice(0, 10)).values, arr[100:110]
    )
    assert [n for _, n in h5_reads] == [10]
    ds.close()


def test_chunks_follow_the_hdf5_chunks(tmp_path, h5_reads):
    arr = _stack(n=40)
    p = _write(tmp_path / "m.h5", arr, chunks=(8, 16, 20))
    ds = xr.open_dataset(p, engine=ENGINE, chunks={})
    assert ds.movie.chunks == ((8,) * 5, (16,), (20,))
    movie = xnormcorre.open_movie(p)  # default: a multiple of the HDF5 chunk, whole frames
    assert movie.chunks == ((40,), (16,), (20,))
    movie = xnormcorre.open_movie(p, chunks={"time": 16})
    assert movie.chunks == ((16, 16, 8), (16,), (20,))
    h5_reads.clear()
    np.testing.assert_array_equal(movie.isel(time=slice(17, 19)).values, arr[17:19])
    assert sum(n for _, n in h5_reads) <= 16  # one dask chunk at most
    ds.close()


def test_pickle_round_trip_of_opened_dataset(tmp_path):
    arr = _stack()
    p = _write(tmp_path / "m.h5", arr, chunks=(2, 16, 20))
    for chunks in (None, {"time": 4}):
        ds = xr.open_dataset(p, engine=ENGINE, dataset="mov", chunks=chunks)
        again = pickle.loads(pickle.dumps(ds))
        ds.close()
        np.testing.assert_array_equal(again.movie.values, arr)
        xr.testing.assert_identical(again.load(), xr.open_dataset(p, engine=ENGINE).load())
        again.close()


def test_eager_equals_chunked(tmp_path):
    arr = _stack(n=30)
    p = _write(tmp_path / "m.h5", arr)
    eager = xr.open_dataset(p, engine=ENGINE).load()
    chunked = xr.open_dataset(p, engine=ENGINE, chunks={"time": 7})
    assert chunked.movie.chunks[0] == (7, 7, 7, 7, 2)
    xr.testing.assert_identical(eager, chunked.compute())


def test_dataset_selection_and_errors(tmp_path):
    p = tmp_path / "multi.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("acq/imaging", data=_stack(n=5))
        f.create_dataset("mean", data=np.zeros((16, 20)))
    ds = xr.open_dataset(p, engine=ENGINE)  # the only 3-D dataset is picked
    assert ds.movie.shape == (5, 16, 20) and ds.movie.attrs["hdf5_dataset"] == "/acq/imaging"
    ds.close()
    with pytest.raises(ValueError, match=r"no dataset 'mov'.*available: 'acq/imaging' \(5, 16, 20\)"):
        xr.open_dataset(p, engine=ENGINE, dataset="mov")
    with pytest.raises(ValueError, match=r"has shape \(16, 20\); a movie needs 3 dims"):
        xr.open_dataset(p, engine=ENGINE, dataset="mean")
    with pytest.raises(ValueError, match="no dataset"):
        xr.open_dataset(p, engine=ENGINE, dataset="acq")  # a group, not a dataset
    with h5py.File(p, "a") as f:
        f.create_dataset("other", data=_stack(n=2))
    with pytest.raises(ValueError, match="2 3-D datasets; pass dataset="):
        xr.open_dataset(p, engine=ENGINE)
    with pytest.raises(TypeError, match="dataset must be"):
        xr.open_dataset(p, engine=ENGINE, dataset=3)
    with pytest.raises(ValueError, match="TIFF files only"):
        xnormcorre.open_movie(p, series=0, dataset="other")


def test_open_movie_picks_hdf5_from_magic_bytes(tmp_path):
    arr = _stack()
    p = _write(tmp_path / "movie.data", arr)  # no telling extension
    movie = xnormcorre.open_movie(p, fps=30.0)
    np.testing.assert_array_equal(movie.values, arr)
    np.testing.assert_allclose(movie.time.values, np.arange(12) / 30.0)
    assert movie.time.attrs["units"] == "s" and movie.frame.attrs["long_name"] == "frame index"
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(ValueError, match="broken.h5.*not a readable HDF5"):
        xnormcorre.open_movie(tmp_path / "broken.h5")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        xr.open_dataset(tmp_path / "missing.h5", engine=ENGINE)
    with pytest.raises(ValueError, match="open HDF5 files one by one"):
        xnormcorre.open_movie([p, p])
    movie.close()


def test_guess_can_open(tmp_path):
    ep = H5BackendEntrypoint()
    assert ep.guess_can_open("x.h5") and ep.guess_can_open("x.hdf5")
    assert not ep.guess_can_open("x.nc") and not ep.guess_can_open("x.tif") and not ep.guess_can_open(None)
    p = _write(tmp_path / "renamed.bin", _stack(n=2))
    assert ep.guess_can_open(p)
    nc = _write(tmp_path / "data.nc", _stack(n=2))
    assert not ep.guess_can_open(nc)  # netCDF-4 is HDF5 too: left to the netCDF engines


def test_hdf5_from_real_movies(sima_path, neurofinder_path, tmp_path):
    """Both real TIFFs converted to HDF5 with the streamed writer read back identical."""
    for src in (sima_path, neurofinder_path):
        ref = tifffile.imread(src)
        out = xnormcorre.to_hdf5(
            xnormcorre.open_movie(src), tmp_path / (src.stem + ".h5"), dtype=np.uint16, progress=False
        )
        with h5py.File(out, "r") as f:
            assert [d.label for d in f["mov"].dims] == ["time", "y", "x"]
        movie = xnormcorre.open_movie(out, chunks={"time": 64})
        assert movie.dtype == np.uint16
        np.testing.assert_array_equal(movie.isel(time=[0, ref.shape[0] - 1]).values, ref[[0, -1]])
        np.testing.assert_array_equal(movie.values, ref)
        movie.close()


# ------------------------------------------------------------------ axis order and volumes
def test_time_last_movie_needs_dims(tmp_path):
    """A (y, x, time) dataset (e.g. MATLAB) is not silently read as frames of the wrong axes."""
    mov = np.random.default_rng(1).integers(0, 1000, (20, 128, 256)).astype(np.uint16)
    p = _write(tmp_path / "yxt.h5", mov.transpose(1, 2, 0))  # (128, 256, 20)
    with pytest.raises(ValueError, match=r"cannot tell which axis .* dims=\('y', 'x', 'time'\)"):
        xnormcorre.open_movie(p)
    movie = xnormcorre.open_movie(p, dims=("y", "x", "time"))
    assert movie.dims == ("time", "y", "x") and movie.shape == (20, 128, 256)
    np.testing.assert_array_equal(movie.isel(time=[3, 7], y=5).values, mov[[3, 7], 5])
    np.testing.assert_array_equal(movie.isel(time=4).values, mov[4])
    np.testing.assert_array_equal(movie.values, mov)
    chunked = _write(tmp_path / "c.h5", mov.transpose(1, 2, 0), chunks=(128, 256, 1))
    with pytest.raises(ValueError, match="cannot tell which axis"):
        xnormcorre.open_movie(chunked)
    with pytest.raises(ValueError, match="dims must name the 3 axes"):
        xnormcorre.open_movie(p, dims=("y", "x"))
    with pytest.raises(ValueError, match="dims must name the 3 axes"):
        xnormcorre.open_movie(p, dims=("y", "y", "time"))


def test_time_first_movies_unchanged(tmp_path):
    """Unambiguous time-first datasets open without dims (short movies, long movies, whole-frame chunks)."""
    for shape, kw in (((20, 32, 32), {}), ((500, 64, 32), {}), ((10, 128, 20), {"chunks": (1, 128, 20)})):
        arr = np.zeros(shape, np.uint16)
        movie = xnormcorre.open_movie(_write(tmp_path / f"{shape[0]}.h5", arr, **kw))
        assert movie.shape == shape


def test_matlab_v73_movie_is_read_as_y_x_time(tmp_path):
    """MATLAB stores Y(y, x, t) column-major: h5py sees (t, x, y); the movie comes back (time, y, x)."""
    mov = np.random.default_rng(2).integers(0, 1000, (12, 16, 20)).astype(np.uint16)
    p = tmp_path / "m.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        dset = f.create_dataset("Y", data=mov.transpose(0, 2, 1))
        dset.attrs["MATLAB_class"] = np.bytes_("uint16")
    movie = xnormcorre.open_movie(p)
    assert movie.attrs["hdf5_dims"] == ["time", "x", "y"]
    np.testing.assert_array_equal(movie.values, mov)


def test_volumetric_4d_dataset(tmp_path):
    vol = np.random.default_rng(3).integers(0, 1000, (6, 5, 16, 20)).astype(np.uint16)
    p = _write(tmp_path / "vol.h5", vol, name="vol", chunks=(1, 5, 16, 20))
    movie = xnormcorre.open_movie(p)
    assert movie.dims == ("time", "z", "y", "x") and movie.chunks[1] == (5,)
    np.testing.assert_array_equal(movie.values, vol)
    np.testing.assert_array_equal(movie.isel(time=2, z=[1, 3]).values, vol[2, [1, 3]])
    # another layout: (z, y, x, time), and a 4th axis that is a channel
    q = _write(tmp_path / "zyxt.h5", vol.transpose(1, 2, 3, 0), name="vol")
    again = xnormcorre.open_movie(q, dims=("z", "y", "x", "time"))
    np.testing.assert_array_equal(again.values, vol)
    chan = xnormcorre.open_movie(p, dims=("time", "channel", "y", "x"))
    assert chan.dims == ("time", "channel", "y", "x")
    with pytest.raises(ValueError, match="applies to HDF5 files only"):
        tif = tmp_path / "m.tif"
        tifffile.imwrite(tif, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
        xnormcorre.open_movie(tif, dims=("time", "y", "x"))
