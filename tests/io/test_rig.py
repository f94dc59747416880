"""Movies as they come off the rig: channels and metadata in TIFF (ScanImage, ImageJ, OME), Scanbox .sbx."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import pickle
import struct
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
import xarray as xr

import xnormcorre
from xnormcorre.io.sbx import SbxBackendEntrypoint, read_sbx_info
from xnormcorre.io.tiff import TiffBackendEntrypoint

from .._bidi import bidi_movie

ROOT = Path(__file__).resolve().parents[2]


def _frames(t, c, h=16, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, size=(t, c, h, w)).astype(np.int16)


def _attrs_are_netcdf_safe(attrs):
    for key, value in attrs.items():
        assert isinstance(value, (str, int, float, list)) and not isinstance(value, bool), key


# --------------------------------------------------------------------------- ScanImage
FRAMEDATA = "\n".join(
    [
        "SI.VERSION_MAJOR = '2020'",
        "SI.VERSION_MINOR = '1'",
        "SI.hChannels.channelSave = [1;2]",
        "SI.hChannels.channelName = {'Green' 'Red' 'Channel 3' 'Channel 4'}",
        "SI.hRoiManager.scanFrameRate = 29.87",
        "SI.hRoiManager.scanZoomFactor = 2.5",
        "SI.hRoiManager.imagingFovUm = [-150 -150;150 -150;150 150;-150 150]",
        "SI.hScan2D.bidirectional = true",
        "SI.hScan2D.logAverageFactor = 1",
        "SI.hStackManager.enable = false",
        "SI.hStackManager.numSlices = 1",
        "SI.hStackManager.framesPerSlice = Inf",
        "SI.hFastZ.enable = false",
        "",
    ]
)


def write_scanimage(path, pages, framedata=FRAMEDATA, *, header=True, channels=2):
    """A ScanImage-style BigTIFF: one page per channel per frame, frame data in every page's Software tag.

    With ``header``, the ScanImage 2016+ block (magic, version, frame data, ROI JSON)
    follows the BigTIFF header, as ScanImage writes it; the pages are then appended.
    """
    if header:
        fd = framedata.encode() + b"\0"
        roi = json.dumps({"RoiGroups": {"imagingRoiGroup": {"ver": 1, "name": "Default"}}}).encode() + b"\0"
        with open(path, "wb") as f:
            f.write(b"II" + struct.pack("<HHH", 43, 8, 0) + struct.pack("<Q", 0))
            f.write(struct.pack("<IIII", 0x07030301, 3, len(fd), len(roi)) + fd + roi)
    quiet = logging.getLogger("tifffile")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # appending to a header without pages is logged
    try:
        with tifffile.TiffWriter(path, bigtiff=True, append=header) as tw:
            for k, page in enumerate(pages):
                t = k // channels
                desc = (
                    f"frameNumbers = {t + 1}\nacquisitionNumbers = 1\nframeTimestamps_sec = {t / 29.87:.6f}\n"
                )
                tw.write(page, contiguous=False, description=desc, software=framedata, metadata=None)
    finally:
        quiet.setLevel(level)


@pytest.mark.parametrize("header", [True, False])
def test_scanimage_interleaved_channels_and_metadata(tmp_path, header):
    data = _frames(6, 2)
    p = tmp_path / "scanimage_00001.tif"
    write_scanimage(p, data.reshape(-1, 16, 20), header=header)
    with tifffile.TiffFile(p) as tif:  # the layout is the one tifffile's ScanImage parser reads
        assert tif.is_scanimage
        if header:
            assert tif.scanimage_metadata["FrameData"]["SI.hRoiManager.scanFrameRate"] == 29.87
    ds = xr.open_dataset(p, engine=TiffBackendEntrypoint)
    movie = ds.movie
    assert movie.dims == ("time", "channel", "y", "x") and movie.shape == (6, 2, 16, 20)
    np.testing.assert_array_equal(movie.values, data)
    assert movie.channel.values.tolist() == [0, 1]
    assert movie.channel_name.values.tolist() == ["Green", "Red"]
    np.testing.assert_array_equal(movie.sel(channel_name="Red").values, data[:, 1])
    assert movie.attrs["fps"] == pytest.approx(29.87) and "scanFrameRate" in movie.attrs["fps_source"]
    np.testing.assert_allclose(ds.time.values, np.arange(6) / 29.87)
    assert movie.attrs["scan_zoom"] == 2.5 and movie.attrs["bidirectional"] == 1
    assert movie.attrs["acquisition_software"] == "ScanImage 2020.1"
    assert ds.x.attrs["pixel_size_um"] == pytest.approx(300 / 20) and ds.y.attrs["pixel_size_um"] == 300 / 16
    meta = json.loads(movie.attrs["acquisition_metadata"])
    assert meta["ScanImage"]["SI.hChannels.channelSave"] in ([[1], [2]], [1, 2])
    assert ("RoiGroups" in meta) == header
    _attrs_are_netcdf_safe(movie.attrs)
    ds.close()


def test_scanimage3_state_description(tmp_path):
    """ScanImage 3.x: classic TIFF, settings as ``state.*`` lines in every page's description."""
    data = _frames(4, 2)
    desc = "state.configName='rig'\rstate.acq.numberOfChannelsSave=2\rstate.acq.frameRate=4.0\r"
    desc += "state.acq.zoomFactor=3\rstate.acq.bidirectionalScan=0\rstate.acq.numberOfZSlices=1\r"
    p = tmp_path / "si3.tif"
    with tifffile.TiffWriter(p) as tw:
        for page in data.reshape(-1, 16, 20):
            tw.write(page, contiguous=False, description=desc, metadata=None)
    with open(p, "ab") as f:
        # ScanImage 3 writes each page's IFD after its pixels; tifffile counts the pages of
        # such files from their spacing and the file size, so end the file as they end
        f.write(bytes(16))
    movie = xnormcorre.open_movie(p)
    assert movie.dims == ("time", "channel", "y", "x") and "channel_name" not in movie.coords
    np.testing.assert_array_equal(movie.values, data)
    assert movie.attrs["fps"] == 4.0 and movie.attrs["scan_zoom"] == 3.0 and movie.attrs["bidirectional"] == 0


def test_scanimage_channel_selection_reads_only_its_pages(tmp_path, planes_read):
    data = _frames(8, 2)
    p = tmp_path / "si.tif"
    write_scanimage(p, data.reshape(-1, 16, 20))
    ds = xr.open_dataset(p, engine=TiffBackendEntrypoint)
    np.testing.assert_array_equal(ds.movie.isel(channel=1, time=[1, 6]).values, data[[1, 6], 1])
    assert sorted(planes_read) == [1 * 2 + 1, 6 * 2 + 1]  # two pages of channel 1
    planes_read.clear()
    movie = xnormcorre.open_movie(p, channel=1, chunks={"time": 4})
    assert movie.dims == ("time", "y", "x") and planes_read == []
    np.testing.assert_array_equal(movie.isel(time=[1, 6]).values, data[[1, 6], 1])
    assert sorted(planes_read) == list(range(1, 16, 2))  # the two chunks touched, channel 1 only
    planes_read.clear()
    red = xnormcorre.open_movie(p, channel="Red")
    np.testing.assert_array_equal(red.values, data[:, 1])
    assert sorted(planes_read) == list(range(1, 16, 2))
    for d in (ds, movie, red):
        d.close()


def test_scanimage_inconsistent_channel_count_is_one_clear_error(tmp_path):
    p = tmp_path / "broken.tif"
    write_scanimage(p, _frames(7, 1)[:, 0])
    with pytest.raises(ValueError, match=r"broken\.tif.*2 channels are saved.*7 pages, not a multiple of 2"):
        xnormcorre.open_movie(p)


def _stack_framedata(slices: int, channels: str = "1") -> str:
    return (
        FRAMEDATA.replace("SI.hStackManager.enable = false", "SI.hStackManager.enable = true")
        .replace("numSlices = 1", f"numSlices = {slices}")
        .replace("SI.hFastZ.enable = false", "SI.hFastZ.enable = true")
        .replace("channelSave = [1;2]", f"channelSave = {channels}")
    )


def test_scanimage_fast_z_stack_opens_as_a_volume(tmp_path):
    """One saved channel, 3 slices per volume: pages z0 z1 z2 z0 ... -> (time, z, y, x)."""
    vols = _frames(12, 1)[:, 0].reshape(4, 3, 16, 20)  # (time, z, y, x)
    p = tmp_path / "stack.tif"
    write_scanimage(p, vols.reshape(-1, 16, 20), _stack_framedata(3), channels=1)
    movie = xnormcorre.open_movie(p)
    assert movie.dims == ("time", "z", "y", "x") and movie.shape == (4, 3, 16, 20)
    np.testing.assert_array_equal(movie.values, vols)
    np.testing.assert_array_equal(movie.isel(time=2, z=1).values, vols[2, 1])  # lazy indexing
    # the frame rate is per plane: the volume rate is a third of it
    assert movie.attrs["fps"] == pytest.approx(29.87 / 3)
    # one clear error where the pages do not make whole volumes
    q = tmp_path / "partial.tif"
    write_scanimage(q, vols.reshape(-1, 16, 20)[:-1], _stack_framedata(3), channels=1)
    with pytest.raises(ValueError, match=r"partial\.tif.*3 z slices.*11 pages"):
        xnormcorre.open_movie(q)


def test_scanimage_volume_with_channels_is_refused_single_channel_kept(tmp_path):
    p = tmp_path / "stack.tif"
    write_scanimage(p, _frames(6, 2).reshape(-1, 16, 20), _stack_framedata(3, "[1;2]"))
    with pytest.raises(ValueError, match=r"stack\.tif.*volume \(3 z planes\).*2 channels are saved"):
        xnormcorre.open_movie(p)
    one = FRAMEDATA.replace("channelSave = [1;2]", "channelSave = 2")
    q = tmp_path / "one.tif"
    data = _frames(5, 1)[:, 0]
    write_scanimage(q, data, one, channels=1)
    movie = xnormcorre.open_movie(q)
    assert movie.dims == ("time", "y", "x") and movie.attrs["channel_name"] == "Red"
    np.testing.assert_array_equal(movie.values, data)
    assert xnormcorre.open_movie(q, channel=0).dims == ("time", "y", "x")
    with pytest.raises(ValueError, match="single channel"):
        xnormcorre.open_movie(q, channel=1)


def test_scanimage_files_of_one_acquisition_form_one_movie(tmp_path):
    a, b = _frames(4, 2, seed=1), _frames(3, 2, seed=2)
    write_scanimage(tmp_path / "acq_00001.tif", a.reshape(-1, 16, 20))
    write_scanimage(tmp_path / "acq_00002.tif", b.reshape(-1, 16, 20))
    movie = xnormcorre.open_movie(tmp_path / "acq_*.tif", chunks={"time": 3})
    assert movie.shape == (7, 2, 16, 20) and movie.chunks[1] == (1, 1)
    np.testing.assert_array_equal(movie.values, np.concatenate([a, b]))
    tifffile.imwrite(tmp_path / "acq_00003.tif", _frames(2, 1)[:, 0])
    with pytest.raises(ValueError, match="same channels"):
        xnormcorre.open_movie(tmp_path / "acq_*.tif")


# --------------------------------------------------------------------------- ImageJ
def test_imagej_tcyx_hyperstack_channels_fps_and_pixel_size(tmp_path, planes_read):
    data = _frames(5, 2).astype(np.uint16)
    p = tmp_path / "tcyx.tif"
    tifffile.imwrite(
        p,
        data,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.25),  # pixels per micrometre along x, y
        metadata={"axes": "TCYX", "finterval": 0.05, "unit": "um"},
    )
    movie = xnormcorre.open_movie(p)
    assert movie.dims == ("time", "channel", "y", "x") and movie.chunks[1] == (1, 1)
    assert "channel_name" not in movie.coords and movie.channel.values.tolist() == [0, 1]
    np.testing.assert_array_equal(movie.values, data)
    assert movie.attrs["fps"] == pytest.approx(20.0) and movie.attrs["fps_source"] == "ImageJ finterval"
    np.testing.assert_allclose(movie.time.values, np.arange(5) * 0.05)
    assert movie.x.attrs["pixel_size_um"] == pytest.approx(0.5) and movie.y.attrs["pixel_size_um"] == 0.25
    assert movie.attrs["acquisition_software"].startswith("ImageJ")
    planes_read.clear()
    ch1 = xnormcorre.open_movie(p, channel=1)
    np.testing.assert_array_equal(ch1.values, data[:, 1])
    assert sorted(planes_read) == [1, 3, 5, 7, 9]  # channel 1's planes only
    planes_read.clear()
    lazy = xr.open_dataarray(p, engine=TiffBackendEntrypoint)
    np.testing.assert_array_equal(lazy.isel(time=[0, 3], channel=1).values, data[[0, 3], 1])
    assert sorted(planes_read) == [0 * 2 + 1, 3 * 2 + 1]
    with pytest.raises(ValueError, match=r"channel=2 is out of range.*channels: 0, 1"):
        xnormcorre.open_movie(p, channel=2)
    with pytest.raises(ValueError, match="not a channel name"):
        xnormcorre.open_movie(p, channel="red")
    with pytest.raises(TypeError, match="channel must be"):
        xnormcorre.open_movie(p, channel=1.0)


def test_imagej_tzcyx_with_one_plane_opens_volumes_are_refused(tmp_path):
    data = _frames(4, 2).astype(np.uint16)
    p = tmp_path / "tzcyx.tif"
    tifffile.imwrite(p, data[:, None], imagej=True, metadata={"axes": "TZCYX"})
    movie = xnormcorre.open_movie(p)
    assert movie.dims == ("time", "channel", "y", "x")
    np.testing.assert_array_equal(movie.values, data)
    v = tmp_path / "volume.tif"
    tifffile.imwrite(v, np.zeros((3, 4, 2, 8, 8), np.uint16), imagej=True, metadata={"axes": "TZCYX"})
    with pytest.raises(ValueError, match=r"volume\.tif.*volume.*4 z planes.*not supported yet"):
        xnormcorre.open_movie(v)


def test_single_channel_imagej_with_finterval_keeps_the_layout(tmp_path):
    data = _frames(6, 1)[:, 0].astype(np.uint16)
    p = tmp_path / "tyx.tif"
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "TYX", "finterval": 0.1})
    ds = xr.open_dataset(p, engine=TiffBackendEntrypoint)
    assert ds.movie.dims == ("time", "y", "x") and ds.attrs["fps"] == pytest.approx(10.0)
    np.testing.assert_allclose(ds.time.values, np.arange(6) * 0.1)
    user = xr.open_dataset(p, engine=TiffBackendEntrypoint, fps=5.0)  # the user's rate wins
    assert user.attrs["fps"] == 5.0 and user.movie.attrs["metadata_fps"] == pytest.approx(10.0)
    assert "fps" not in user.movie.attrs
    ds.close()
    user.close()


# --------------------------------------------------------------------------- OME
@pytest.mark.parametrize("axes", ["TCYX", "CTYX"])
def test_ome_multichannel_names_fps_pixel_size(tmp_path, axes, planes_read):
    data = _frames(5, 2).astype(np.uint16)  # (t, c, y, x)
    stored = data if axes == "TCYX" else data.transpose(1, 0, 2, 3)
    p = tmp_path / "ome.ome.tif"
    meta = {
        "axes": axes,
        "Channel": {"Name": ["green", "red"]},
        "PhysicalSizeX": 600,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.6,
        "TimeIncrement": 33.0,
        "TimeIncrementUnit": "ms",
    }
    tifffile.imwrite(p, stored, ome=True, metadata=meta)
    movie = xnormcorre.open_movie(p)
    assert movie.dims == ("time", "channel", "y", "x")
    np.testing.assert_array_equal(movie.values, data)
    assert movie.channel_name.values.tolist() == ["green", "red"]
    assert movie.attrs["fps"] == pytest.approx(1 / 0.033) and "TimeIncrement" in movie.attrs["fps_source"]
    assert movie.x.attrs["pixel_size_um"] == pytest.approx(0.6) and movie.y.attrs["pixel_size_um"] == 0.6
    assert json.loads(movie.attrs["acquisition_metadata"])["OME"]["Image"]["Pixels"]["SizeC"] == 2
    planes_read.clear()
    red = xnormcorre.open_movie(p, channel="red")
    np.testing.assert_array_equal(red.isel(time=2).values, data[2, 1])
    stride_t, stride_c = (2, 1) if axes == "TCYX" else (1, 5)
    assert planes_read == [2 * stride_t + 1 * stride_c]


def test_ome_plane_delta_t_gives_the_frame_rate(tmp_path):
    """Bruker/Prairie-style OME: no TimeIncrement, per-plane DeltaT."""
    p = tmp_path / "bruker.ome.tif"
    planes = {
        "TheT": [0, 0, 1, 1, 2, 2],
        "TheC": [0, 1] * 3,
        "TheZ": [0] * 6,
        "DeltaT": [0, 0, 0.25, 0.25, 0.5, 0.5],
    }
    tifffile.imwrite(p, _frames(3, 2).astype(np.uint16), ome=True, metadata={"axes": "TCYX", "Plane": planes})
    movie = xnormcorre.open_movie(p)
    assert movie.attrs["fps"] == pytest.approx(4.0) and movie.attrs["fps_source"] == "OME Plane DeltaT"


# --------------------------------------------------------------------------- lazy, pickle, NetCDF
def test_multichannel_dataset_is_lazy_picklable_and_netcdf_safe(tmp_path):
    data = _frames(6, 2).astype(np.uint16)
    p = tmp_path / "ome.tif"
    tifffile.imwrite(p, data, ome=True, metadata={"axes": "TCYX", "Channel": {"Name": ["a", "b"]}})
    ds = xr.open_dataset(p, engine=TiffBackendEntrypoint, chunks={"time": 4, "channel": 1})
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again.movie.values, data)
    np.testing.assert_array_equal(ds.movie.isel(channel=1, time=slice(1, 5)).values, data[1:5, 1])
    out = tmp_path / "m.nc"
    ds.to_netcdf(out)
    with xr.open_dataset(out) as back:
        np.testing.assert_array_equal(back.movie.values, data)
        assert back.channel_name.values.tolist() == ["a", "b"]
    ds.close()


def test_scan_phase_of_a_two_channel_rig_movie(tmp_path):
    """A bidirectional two-channel ScanImage movie: estimate on one channel, correct both lazily."""
    phase = 1.4
    green = bidi_movie(phase, n_frames=40, shape=(128, 128), seed=1).values
    red = bidi_movie(phase, n_frames=40, shape=(128, 128), seed=2).values
    pages = np.stack([green, red], axis=1).astype(np.int16).reshape(-1, 128, 128)
    p = tmp_path / "bidi_00001.tif"
    write_scanimage(p, pages)
    movie = xnormcorre.open_movie(p)
    assert movie.attrs["bidirectional"] == 1
    est = xnormcorre.scan_phase(movie.sel(channel=0))
    assert abs(float(est) - phase) <= 0.05
    fixed = xnormcorre.correct_scan_phase(movie, est)
    assert fixed.dims == movie.dims and fixed.chunks is not None
    assert abs(float(xnormcorre.scan_phase(fixed.sel(channel=1)))) <= 0.05


# --------------------------------------------------------------------------- Scanbox
def write_sbx(stem: Path, data: np.ndarray, info: dict, *, v73: bool = False) -> Path:
    """``data`` (t, c, y, x) uint16 as Scanbox writes it: (t, y, x, c) in C order, stored as 65535 - value."""
    (np.uint16(65535) - data.transpose(0, 2, 3, 1)).astype("<u2").tofile(stem.with_suffix(".sbx"))
    if v73:
        _write_mat73(stem.with_suffix(".mat"), info)
    else:
        scipy.io.savemat(stem.with_suffix(".mat"), {"info": info})
    return stem.with_suffix(".sbx")


def _write_mat73(path: Path, info: dict) -> None:
    """A MATLAB v7.3 file (HDF5 with a 512-byte user block) holding the struct ``info``."""

    def put(group, key, value):
        if isinstance(value, dict):
            sub = group.create_group(key)
            sub.attrs["MATLAB_class"] = np.bytes_("struct")
            for k, v in value.items():
                put(sub, k, v)
        elif isinstance(value, str):
            dset = group.create_dataset(key, data=np.array([[ord(c)] for c in value], np.uint16))
            dset.attrs["MATLAB_class"] = np.bytes_("char")
        else:
            arr = np.atleast_2d(np.asarray(value, np.float64))
            dset = group.create_dataset(key, data=arr.T)
            dset.attrs["MATLAB_class"] = np.bytes_("double")

    with h5py.File(path, "w", userblock_size=512) as f:
        put(f, "info", info)


SBX_INFO = {
    "sz": np.array([12, 20]),
    "channels": 1,  # both PMTs
    "scanmode": 0,  # bidirectional
    "resfreq": 7930.0,
    "recordsPerBuffer": 6,
    "config": {
        "lines": 12,
        "magnification": 2,
        "magnification_list": np.array(["1", "1.7", "2.4"], dtype=object),
    },
    "dxcal": 1.25,
    "dycal": 1.5,
    "scanbox_version": 2,
    "volscan": 0,
}


def test_sbx_two_channels_metadata_and_laziness(tmp_path):
    data = np.random.default_rng(3).integers(0, 60000, size=(7, 2, 12, 20)).astype(np.uint16)
    p = write_sbx(tmp_path / "mouse_000_001", data, SBX_INFO)
    ds = xr.open_dataset(p, engine=SbxBackendEntrypoint)
    movie = ds.movie
    assert movie.dims == ("time", "channel", "y", "x") and movie.dtype == np.uint16
    np.testing.assert_array_equal(movie.values, data)
    np.testing.assert_array_equal(
        movie.isel(time=[1, 5], channel=1, x=slice(2, 9)).values, data[[1, 5], 1, :, 2:9]
    )
    np.testing.assert_array_equal(movie.isel(time=3, y=4).values, data[3, :, 4])
    assert movie.channel_name.values.tolist() == ["PMT0", "PMT1"]
    assert movie.attrs["fps"] == pytest.approx(2 * 7930 / 12) and movie.attrs["bidirectional"] == 1
    assert movie.attrs["scan_zoom"] == pytest.approx(1.7) and movie.attrs["source_format"] == "Scanbox"
    assert ds.x.attrs["pixel_size_um"] == 1.25 and ds.y.attrs["pixel_size_um"] == 1.5
    assert json.loads(movie.attrs["acquisition_metadata"])["Scanbox"]["recordsPerBuffer"] == 6
    _attrs_are_netcdf_safe(movie.attrs)
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again.movie.isel(time=6).values, data[6])
    chunked = xr.open_dataset(p, engine=SbxBackendEntrypoint, chunks={"time": 3})
    np.testing.assert_array_equal(chunked.movie.values, data)
    # open_movie dispatches on the .sbx name; channel= selects one
    pmt1 = xnormcorre.open_movie(p, channel="PMT1", chunks={"time": 4})
    assert pmt1.dims == ("time", "y", "x") and pmt1.chunks[0] == (4, 3)
    np.testing.assert_array_equal(pmt1.values, data[:, 1])
    for d in (ds, again, chunked, pmt1):
        d.close()


def test_sbx_single_channel_v73_mat_and_unidirectional(tmp_path):
    data = np.random.default_rng(4).integers(0, 60000, size=(5, 1, 12, 20)).astype(np.uint16)
    info = {k: v for k, v in SBX_INFO.items() if k not in ("config", "dxcal", "dycal")}
    info.update(channels=3, scanmode=1, config={"lines": 12})
    p = write_sbx(tmp_path / "v73", data, info, v73=True)
    assert read_sbx_info(p.with_suffix(".mat"))["sz"].tolist() == [12, 20]
    movie = xnormcorre.open_movie(p)
    assert movie.dims == ("time", "y", "x") and movie.attrs["channel_name"] == "PMT1"
    assert movie.attrs["bidirectional"] == 0 and movie.attrs["fps"] == pytest.approx(7930 / 12)
    np.testing.assert_array_equal(movie.values, data[:, 0])


def test_sbx_errors_name_the_file_and_the_fact(tmp_path):
    data = np.zeros((4, 2, 12, 20), np.uint16)
    p = write_sbx(tmp_path / "cut", data, SBX_INFO)
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size - 100)
    with pytest.raises(ValueError, match=r"cut\.sbx.*truncated.*3 whole frames and 860 bytes left over"):
        xnormcorre.open_movie(p)
    q = write_sbx(tmp_path / "nomat", data, SBX_INFO)
    q.with_suffix(".mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"nomat\.mat"):
        xnormcorre.open_movie(q)
    vol = write_sbx(tmp_path / "vol", data, {**SBX_INFO, "volscan": 1, "otwave": np.array([0.0, 10.0])})
    with pytest.raises(ValueError, match="volume scan .2 planes"):
        xnormcorre.open_movie(vol)
    with pytest.raises(ValueError, match="does not apply to a Scanbox"):
        xnormcorre.open_movie(p, series=0)
    assert SbxBackendEntrypoint().guess_can_open("run.sbx") and not SbxBackendEntrypoint().guess_can_open(
        "a.tif"
    )


def test_sbx_entry_point_is_declared():
    with open(ROOT / "pyproject.toml", "rb") as f:
        eps = tomllib.load(f)["project"]["entry-points"]["xarray.backends"]
    module, name = eps["xnormcorre_sbx"].split(":")
    assert getattr(importlib.import_module(module), name) is SbxBackendEntrypoint
    installed = {ep.name for ep in importlib.metadata.entry_points(group="xarray.backends")}
    if "xnormcorre_sbx" in installed:  # an install made from this tree
        assert isinstance(xr.backends.list_engines()["xnormcorre_sbx"], SbxBackendEntrypoint)


def test_scan_phase_reads_about_n_frames_of_a_lazy_movie(tmp_path, planes_read):
    p = tmp_path / "long.tif"
    tifffile.imwrite(p, bidi_movie(0.5, n_frames=100, shape=(16, 32), seed=5).values.astype(np.uint16))
    movie = xnormcorre.open_movie(p, chunks={"time": 10})
    xnormcorre.scan_phase(movie, n_frames=20)
    assert sorted(planes_read) == list(range(10)) + list(range(90, 100))  # two whole chunks
    planes_read.clear()
    xnormcorre.scan_phase(xr.open_dataarray(p, engine=TiffBackendEntrypoint), n_frames=20)
    assert len(planes_read) == 20 and planes_read[-1] == 99  # evenly spaced frames


@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_truncated_hyperstack_is_refused_at_open(tmp_path, keep):
    """A (time, channel, y, x) hyperstack cut in its planes is refused when opened, naming the fact."""
    data = _frames(12, 2)
    p = tmp_path / "tcyx.tif"
    tifffile.imwrite(p, data, imagej=True, metadata={"axes": "TCYX"})
    with tifffile.TiffFile(p) as tif:
        start = tif.series[0].dataoffset
    assert start is not None  # contiguous: read with one seek per run of planes
    os.truncate(p, start + int(data.nbytes * keep))
    with pytest.raises(ValueError, match="truncated"):
        xnormcorre.open_movie(p)
