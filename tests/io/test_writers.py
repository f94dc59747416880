"""Streamed writers ``to_tiff`` / ``to_hdf5``: exact bytes, dtype handling, atomic rename, refusals."""

from __future__ import annotations

import dask.array as da
import h5py
import numpy as np
import pytest
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.io import blocks, writers_tiff


def _movie(n=30, h=24, w=20, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    arr = (rng.normal(size=(n, h, w)) * 1000).astype(dtype)
    return xr.DataArray(arr, dims=("time", "y", "x"), name="movie")


def _read(fmt, path):
    if fmt == "tiff":
        return tifffile.imread(path)
    with h5py.File(path, "r") as f:
        return f["mov"][...]


WRITERS = {"tiff": xnormcorre.to_tiff, "hdf5": xnormcorre.to_hdf5}


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
@pytest.mark.parametrize("chunks", [None, 7, 1])
def test_round_trip_float32_exact(tmp_path, fmt, chunks):
    movie = _movie()
    src = movie if chunks is None else movie.chunk({"time": chunks})
    out = WRITERS[fmt](src, tmp_path / f"m.{fmt}", progress=False)
    back = _read(fmt, out)
    assert back.dtype == np.float32 and back.shape == movie.shape
    assert back.tobytes() == movie.values.tobytes()
    reopened = xnormcorre.open_movie(out)
    np.testing.assert_array_equal(reopened.values, movie.values)
    reopened.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"m.{fmt}"]  # no temporary left


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
def test_integer_output_rounds_and_clips(tmp_path, fmt):
    vals = np.array([-5.0, 0.4, 0.6, 1000.5, 70000.0, np.nan], np.float32)
    movie = xr.DataArray(np.tile(vals, (3, 2, 1)), dims=("time", "y", "x"))
    with pytest.warns(UserWarning, match=r"33\.3% of the pixels .* outside the range of uint16"):
        out = WRITERS[fmt](movie, tmp_path / f"m.{fmt}", dtype=np.uint16, progress=False)
    back = _read(fmt, out)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back[0, 0], [0, 0, 1, 1000, 65535, 0])
    with pytest.warns(UserWarning, match=r"33\.3% of the pixels .* outside the range of int8"):
        out = WRITERS[fmt](movie, tmp_path / f"i.{fmt}", dtype="int8", progress=False)
    np.testing.assert_array_equal(_read(fmt, out)[0, 0], [-5, 0, 1, 127, 127, 0])


def test_integer_input_written_as_float32_by_default(tmp_path):
    movie = _movie(dtype=np.uint16)
    out = xnormcorre.to_tiff(movie, tmp_path / "m.tif", progress=False)
    back = tifffile.imread(out)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, movie.values.astype(np.float32))
    same = xnormcorre.to_tiff(movie, tmp_path / "u.tif", dtype=movie.dtype, progress=False)
    assert tifffile.imread(same).tobytes() == movie.values.tobytes()


def test_bigtiff_flag_and_auto(tmp_path, monkeypatch):
    movie = _movie(n=4)
    with tifffile.TiffFile(
        xnormcorre.to_tiff(movie, tmp_path / "b.tif", bigtiff=True, progress=False)
    ) as tif:
        assert tif.is_bigtiff and len(tif.pages) == 4
    with tifffile.TiffFile(xnormcorre.to_tiff(movie, tmp_path / "c.tif", progress=False)) as tif:
        assert not tif.is_bigtiff
    monkeypatch.setattr(writers_tiff, "BIGTIFF_BYTES", movie.nbytes - 1)  # auto: BigTIFF above the limit
    with tifffile.TiffFile(xnormcorre.to_tiff(movie, tmp_path / "d.tif", progress=False)) as tif:
        assert tif.is_bigtiff


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
def test_refuses_to_overwrite_unless_asked(tmp_path, fmt):
    p = tmp_path / f"m.{fmt}"
    p.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        WRITERS[fmt](_movie(), p, progress=False)
    assert p.read_bytes() == b"precious"
    WRITERS[fmt](_movie(), p, overwrite=True, progress=False)
    np.testing.assert_array_equal(_read(fmt, p), _movie().values)
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name]


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
@pytest.mark.parametrize("existing", [False, True])
def test_error_mid_write_leaves_no_file_and_no_temp(tmp_path, fmt, existing):
    def boom(block, block_info=None):
        if block_info[None]["chunk-location"][0] == 2:
            raise RuntimeError("disk on fire")
        return block

    arr = da.from_array(_movie().values, chunks=(5, 24, 20)).map_blocks(boom, dtype=np.float32)
    movie = xr.DataArray(arr, dims=("time", "y", "x"))
    p = tmp_path / f"m.{fmt}"
    if existing:
        p.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        WRITERS[fmt](movie, p, overwrite=existing, progress=False)
    if existing:
        assert p.read_bytes() == b"old"  # the old file is untouched
        assert [x.name for x in tmp_path.iterdir()] == [p.name]
    else:
        assert list(tmp_path.iterdir()) == []


def test_interrupt_mid_write_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    orig = blocks.cast_block

    def cast(block, dtype):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return orig(block, dtype)

    monkeypatch.setattr(blocks, "cast_block", cast)
    monkeypatch.setattr(blocks, "default_time_chunk", lambda shape, preferred=1: 5)
    with pytest.raises(KeyboardInterrupt):
        xnormcorre.to_tiff(_movie(n=40).chunk({"time": 5}), tmp_path / "m.tif", progress=False)
    assert list(tmp_path.iterdir()) == []
    assert 2 <= calls["n"] < 8  # stopped early: not every block was computed


def test_streams_block_by_block(tmp_path, monkeypatch):
    """Each block is computed once, in time order, and never more than a few at a time."""
    monkeypatch.setattr(blocks, "default_time_chunk", lambda shape, preferred=1: 6)
    seen: list[tuple[int, int]] = []
    orig = blocks.cast_block

    def cast(block, dtype):
        seen.append(block.shape[0])
        return orig(block, dtype)

    monkeypatch.setattr(blocks, "cast_block", cast)
    movie = _movie(n=40).chunk({"time": 4})  # 4-frame chunks merged into 8-frame blocks (>= 6)
    xnormcorre.to_hdf5(movie, tmp_path / "m.h5", progress=False)
    assert seen == [8, 8, 8, 8, 8]
    seen.clear()
    xnormcorre.to_tiff(_movie(n=40), tmp_path / "m.tif", progress=False)  # NumPy input: batches of 6
    assert seen == [6] * 6 + [4]


def test_progress_bar_counts_frames(tmp_path, capsys):
    xnormcorre.to_tiff(_movie(n=12), tmp_path / "m.tif", progress=True)
    err = capsys.readouterr().err
    assert "to_tiff m.tif" in err and "12/12" in err and "frame" in err


def test_bad_arguments(tmp_path):
    movie = _movie()
    with pytest.raises(TypeError, match="dtype"):
        xnormcorre.to_tiff(movie, tmp_path / "m.tif", dtype=bool, progress=False)
    with pytest.raises(TypeError, match="dtype"):
        xnormcorre.to_hdf5(movie, tmp_path / "m.h5", dtype="complex64", progress=False)
    with pytest.raises(IsADirectoryError):
        xnormcorre.to_tiff(movie, tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        xnormcorre.to_tiff(movie, tmp_path / "no" / "m.tif", progress=False)
    with pytest.raises(ValueError, match="dataset"):
        xnormcorre.to_hdf5(movie, tmp_path / "m.h5", dataset="/", progress=False)
    with pytest.raises(ValueError, match="dims"):
        xnormcorre.to_tiff(movie.rename(time="t"), tmp_path / "m.tif", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_hdf5_dataset_name_and_labels(tmp_path):
    out = xnormcorre.to_hdf5(_movie(n=3), tmp_path / "m.h5", dataset="/acq/corrected", progress=False)
    with h5py.File(out, "r") as f:
        dset = f["acq/corrected"]
        assert dset.chunks == (1, 24, 20) and [d.label for d in dset.dims] == ["time", "y", "x"]
    movie = xnormcorre.open_movie(out, dataset="acq/corrected")
    np.testing.assert_array_equal(movie.values, _movie(n=3).values)
    movie.close()
