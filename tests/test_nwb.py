"""NWB export: round trips through pynwb, streaming of lazy results, append, nwbinspector."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

import xnormcorre
from xnormcorre.io.nwb import to_nwb

pynwb = pytest.importorskip("pynwb")

SUBJECT = {
    "subject_id": "m1",
    "species": "Mus musculus",
    "sex": "U",
    "age": "P90D",
    "description": "synthetic",
}
PW = {"max_shifts": 3, "strides": (24, 24), "overlaps": (12, 12), "max_deviation_rigid": 2}


@pytest.fixture(scope="module")
def movie():
    # more frames than pixels per side: NWB expects time to be the longest dimension
    return xnormcorre.datasets.synthetic_movie(n_frames=80, shape=(64, 64), max_shift=2, seed=0, fps=30.0)


@pytest.fixture(scope="module")
def rigid_lazy(movie):
    return xnormcorre.rigid(movie.chunk({"time": 20}), max_shifts=3)


@pytest.fixture(scope="module")
def rigid_res(rigid_lazy):
    return rigid_lazy.compute()


@pytest.fixture(scope="module")
def pw_lazy(movie):
    return xnormcorre.pwrigid(movie.chunk({"time": 20}), **PW)


@pytest.fixture(scope="module")
def pw_res(pw_lazy):
    return pw_lazy.compute()


def _read(path, stack="CorrectedImageStack"):
    """Everything to compare, read back with pynwb, in xnormcorre's (y, x) layout where it applies."""
    with pynwb.NWBHDF5IO(path, "r") as io:
        f = io.read()
        ophys = f.processing["ophys"]
        st = ophys["MotionCorrection"][stack]
        out = {
            "corrected": st.corrected.data[:].transpose(0, 2, 1),
            "xy": st.xy_translation.data[:],
            "rate": st.corrected.rate,
            "xy_rate": st.xy_translation.rate,
            "original": st.original.name,
            "original_data": None if st.original.data is None else st.original.data[:].transpose(0, 2, 1),
            "external": None if st.original.external_file is None else list(st.original.external_file[:]),
            "compression": st.corrected.data.compression,
            "hdf5_chunks": st.corrected.data.chunks,
            "template": ophys[f"{stack}_template"]["template"].data[:].T,
            "params": dict(
                zip(
                    ophys[f"{stack}_parameters"]["parameter"][:],
                    ophys[f"{stack}_parameters"]["value"][:],
                    strict=True,
                )
            ),
            "comments": st.corrected.comments,
            "series": {
                k: ophys[k].data[:]
                for k in ophys.data_interfaces
                if k.startswith(f"{stack}_") and isinstance(ophys[k], pynwb.TimeSeries)
            },
            "names": sorted(ophys.data_interfaces),
            "stacks": sorted(ophys["MotionCorrection"].corrected_image_stacks),
        }
        if f"{stack}_patch_grid" in ophys.data_interfaces:
            out["grid"] = ophys[f"{stack}_patch_grid"].to_dataframe()
    return out


def _critical(path):
    from nwbinspector import Importance, inspect_nwbfile

    return [m for m in inspect_nwbfile(nwbfile_path=path) if m.importance == Importance.CRITICAL]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rigid_round_trip_with_movie(tmp_path, movie, rigid_res):
    path = to_nwb(rigid_res, tmp_path / "s.nwb", movie=movie, subject=SUBJECT, progress=False)
    back = _read(path)
    np.testing.assert_array_equal(back["corrected"], rigid_res.corrected.values)
    np.testing.assert_array_equal(back["original_data"], movie.values)
    np.testing.assert_array_equal(back["template"], rigid_res.template.values)
    # NWB stores the correction (x, y): minus xnormcorre's displacement, x first
    shifts = rigid_res.shifts.sel(axis=["x", "y"]).values
    np.testing.assert_array_equal(back["xy"], -shifts)
    assert back["rate"] == back["xy_rate"] == 30.0
    assert back["original"] == "TwoPhotonSeries" and back["compression"] == "gzip"
    assert back["hdf5_chunks"] == (1, 64, 64)
    np.testing.assert_array_equal(
        back["series"]["CorrectedImageStack_correlation"], rigid_res.correlation.values
    )
    np.testing.assert_array_equal(
        back["series"]["CorrectedImageStack_low_correlation"], rigid_res.low_correlation.values
    )
    assert back["params"]["max_shifts"] == "[3, 3]" and back["params"]["method"] == "rigid"
    assert back["params"]["taper"] == "null"
    assert json.loads(back["comments"]) == rigid_res.attrs  # every attribute, as JSON
    assert _critical(path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nwb"]


def test_lazy_result_streamed_once_per_chunk(tmp_path, movie, rigid_res):
    """A lazy result is registered while it is written: every chunk once, small variables included."""
    counts: Counter = Counter()

    def count(block, block_info=None):
        counts[block_info[0]["chunk-location"][0]] += 1
        return block

    data = movie.chunk({"time": 20}).data.map_blocks(count, dtype=movie.dtype)
    lazy = xnormcorre.rigid(movie.copy(data=data), max_shifts=3, template=rigid_res.template)
    counts.clear()  # min_mov read the first frames
    lazy.attrs["source"] = "/data/raw.tif"
    path = to_nwb(lazy, tmp_path / "lazy.nwb", subject=SUBJECT, progress=False)
    assert dict(counts) == {0: 1, 1: 1, 2: 1, 3: 1}
    back = _read(path)
    np.testing.assert_array_equal(back["corrected"], rigid_res.corrected.values)
    np.testing.assert_array_equal(back["xy"], -rigid_res.shifts.sel(axis=["x", "y"]).values)
    # low_correlation needs every frame: computed at the end from the collected correlations
    np.testing.assert_array_equal(
        back["series"]["CorrectedImageStack_low_correlation"], rigid_res.low_correlation.values
    )
    # without movie and without an original in the file: the source is referenced as an external file
    assert back["external"] == ["/data/raw.tif"] and back["original_data"].size == 0


def test_pwrigid_appended_to_existing_file(tmp_path, movie, rigid_res, pw_lazy, pw_res):
    path = to_nwb(rigid_res, tmp_path / "s.nwb", movie=movie, subject=SUBJECT, progress=False)
    to_nwb(pw_lazy, path, append=True, stack_name="PiecewiseRigid", progress=False)
    back = _read(path, "PiecewiseRigid")
    assert back["stacks"] == ["CorrectedImageStack", "PiecewiseRigid"]
    assert back["original"] == "TwoPhotonSeries"  # linked to the series already in the file
    np.testing.assert_array_equal(back["corrected"], pw_res.corrected.values)
    np.testing.assert_array_equal(back["template"], pw_res.template.values)
    np.testing.assert_array_equal(back["xy"], -pw_res.rigid_shifts.sel(axis=["x", "y"]).values)
    patches = pw_res.shifts.stack(patch=("patch_y", "patch_x")).transpose("time", "patch", "axis")
    np.testing.assert_array_equal(
        back["series"]["PiecewiseRigid_patch_shifts"], -patches.sel(axis=["x", "y"]).values
    )
    np.testing.assert_array_equal(
        back["series"]["PiecewiseRigid_patch_jump"], pw_res.patch_jump.values.reshape(80, -1)
    )
    grid = back["grid"]
    assert len(grid) == pw_res.sizes["patch_y"] * pw_res.sizes["patch_x"]
    k = 1 * pw_res.sizes["patch_x"] + 2  # patch (iy=1, ix=2)
    assert (
        grid.loc[k, "centre_y"] == pw_res.patch_y.values[1]
        and grid.loc[k, "centre_x"] == pw_res.patch_x.values[2]
    )
    assert grid.loc[k, "x_start"] == pw_res.patch_x_start.values[2]
    assert _critical(path) == []
    # the first stack is untouched
    first = _read(path)
    np.testing.assert_array_equal(first["corrected"], rigid_res.corrected.values)


def test_refuses_overwrite_and_name_clash(tmp_path, movie, rigid_res):
    path = to_nwb(rigid_res, tmp_path / "s.nwb", movie=movie, subject=SUBJECT, progress=False)
    before = _sha(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        to_nwb(rigid_res, path, progress=False)
    with pytest.raises(ValueError, match="already has a corrected image stack 'CorrectedImageStack'"):
        to_nwb(rigid_res, path, append=True, progress=False)
    with pytest.raises(ValueError, match="already has an acquisition series 'TwoPhotonSeries'"):
        to_nwb(rigid_res, path, append=True, movie=movie, stack_name="other", progress=False)
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nwb"]  # no temporary left
    with pytest.raises(FileNotFoundError):
        to_nwb(rigid_res, tmp_path / "missing.nwb", append=True, progress=False)
    with pytest.raises(ValueError, match="original series"):
        to_nwb(rigid_res.assign_attrs(source=""), tmp_path / "x.nwb", progress=False)
    with pytest.raises(ValueError, match="res has no 'corrected'"):
        to_nwb(rigid_res.drop_vars("corrected"), tmp_path / "x.nwb", progress=False)


def test_frame_index_time_needs_rate(tmp_path, movie, rigid_res):
    frames = rigid_res.assign_coords(time=np.arange(80)).drop_vars("frame", errors="ignore")
    with pytest.warns(UserWarning, match="rate = 1.0 Hz") as rec:
        p1 = to_nwb(frames, tmp_path / "a.nwb", movie=movie.values, progress=False)
    assert rec[0].filename == __file__
    assert _read(p1)["rate"] == 1.0
    p2 = to_nwb(frames, tmp_path / "b.nwb", movie=movie.values, rate=15.0, progress=False)
    back = _read(p2)
    assert back["rate"] == back["xy_rate"] == 15.0
    # irregular times in seconds become timestamps
    irregular = rigid_res.assign_coords(time=np.sort(np.random.default_rng(0).uniform(0, 10, 80)))
    irregular.time.attrs["units"] = "s"
    p3 = to_nwb(irregular, tmp_path / "c.nwb", movie=movie.values, progress=False)
    with pynwb.NWBHDF5IO(p3, "r") as io:
        st = io.read().processing["ophys"]["MotionCorrection"]["CorrectedImageStack"]
        np.testing.assert_array_equal(st.corrected.timestamps[:], irregular.time.values)
        np.testing.assert_array_equal(st.xy_translation.timestamps[:], irregular.time.values)


def test_integer_dtype_and_overwrite(tmp_path, movie, rigid_res):
    path = to_nwb(rigid_res, tmp_path / "s.nwb", movie=movie, progress=False)
    to_nwb(rigid_res, path, movie=movie, dtype=np.uint16, overwrite=True, progress=False)
    back = _read(path)
    expected = np.clip(np.rint(rigid_res.corrected.values), 0, 65535).astype(np.uint16)
    assert back["corrected"].dtype == np.uint16
    np.testing.assert_array_equal(back["corrected"], expected)


def test_imaging_metadata(tmp_path, movie, rigid_res):
    plane = {
        "name": "plane0",
        "description": "layer 2/3",
        "excitation_lambda": 920.0,
        "indicator": "GCaMP6f",
        "location": "VISp",
        "optical_channel": {"name": "green", "description": "GCaMP", "emission_lambda": 510.0},
    }
    path = to_nwb(
        rigid_res,
        tmp_path / "s.nwb",
        movie=movie,
        device={"name": "2p-scope", "description": "resonant scanner"},
        imaging_plane=plane,
        progress=False,
    )
    with pynwb.NWBHDF5IO(path, "r") as io:
        f = io.read()
        st = f.processing["ophys"]["MotionCorrection"]["CorrectedImageStack"]
        assert st.corrected.imaging_plane.name == "plane0" == st.original.imaging_plane.name
        assert st.corrected.imaging_plane.indicator == "GCaMP6f"
        assert st.corrected.imaging_plane.excitation_lambda == 920.0
        assert f.devices["2p-scope"].description == "resonant scanner"
        assert st.corrected.imaging_plane.optical_channel[0].emission_lambda == 510.0
