"""3-D rigid registration of volumetric movies (time, z, y, x)."""

from __future__ import annotations

import numpy as np
import pytest

import xnormcorre
from xnormcorre.qc.diagnose import RegistrationWarning
from xnormcorre.testing import cases
from xnormcorre.testing.volume import simulate_volume

SHAPE = (8, 32, 32)  # (z, y, x) of the small movie; few shapes keep the compile count low


@pytest.fixture(scope="module")
def sim():
    return simulate_volume(SHAPE, 12, max_shift=(1.0, 2.0, 2.0), n_cells=25, os=(2, 2, 2), seed=3)


def test_skimage_3d_phase_correlation_case():
    """scikit-image's 3-D test: a 32^3 blob volume moved by (-2.3, 1.7, 5.4), atol 0.05."""
    pytest.importorskip("skimage")
    for shift in ((-2.3, 1.7, 5.4), (-2.0, 1.0, 5.0)):
        case = cases.skimage_blobs_3d(shift)
        out = xnormcorre.rigid(case.frames, max_shifts=case.max_shifts, template=case.template)
        assert out.shifts.dims == ("time", "axis")
        assert list(out.shifts.axis.values) == ["z", "y", "x"]
        np.testing.assert_allclose(out.shifts.values[0], case.shifts[0], atol=0.05)


def test_caiman_lfw_stack_2_4_1():
    """CaImAn's 3-D register-and-apply test: a 16x20x4 stack of faces moved by (2, 4, 1)
    (y, x, z); the integer shift is exact, the corrected stack equals the template where
    it stayed in view, and the NaN border is where CaImAn's is."""
    pytest.importorskip("skimage")
    from skimage.data import lfw_subset

    img = lfw_subset()[np.array([0, 10, 25, 40, 50])].transpose(1, 2, 0).astype(np.float32)
    sy, sx, sz = 2, 4, 1
    templ = img[4:20, 4:24, 1:5]
    frame = img[4 - sy : 20 - sy, 4 - sx : 24 - sx, 1 - sz : 5 - sz]
    nans = np.ones((16, 20, 4), dtype=bool)
    nans[:-sy, :-sx, :-sz] = False
    t, f, nans = (a.transpose(2, 0, 1) for a in (templ, frame, nans))  # (z, y, x)
    with pytest.warns(RegistrationWarning, match="search bound"):  # the shift is on the bound, as in CaImAn
        out = xnormcorre.rigid(f[None], max_shifts=(1, 4, 4), template=t, upsample_factor=1, border="nan")
    np.testing.assert_array_equal(out.shifts.values[0], [sz, sy, sx])
    cor = out.corrected.values[0]
    np.testing.assert_array_equal(np.isnan(cor), nans)
    np.testing.assert_allclose(cor[~nans], t[~nans], rtol=1e-5)
    with pytest.warns(RegistrationWarning, match="search bound"):
        sub = xnormcorre.rigid(f[None], max_shifts=(1, 4, 4), template=t)  # subpixel default
    np.testing.assert_allclose(sub.shifts.values[0], [sz, sy, sx], atol=0.05)


def test_volume_result_labels_and_accuracy(vol, sim, res):
    assert res.attrs["planes"] == "volume" and res.attrs["max_shifts"] == [2, 4, 4]
    assert res.corrected.dims == ("time", "z", "y", "x")
    assert res.template.dims == ("z", "y", "x")
    np.testing.assert_array_equal(res.z.values, vol.z.values)
    for name in ("corrected", "template", "correlation", "shifts"):
        assert "long_name" in res[name].attrs and "units" in res[name].attrs
    err = res.shifts.values - sim.shifts
    rmse = np.sqrt((err**2).mean(axis=0))
    assert rmse[0] <= 0.1 and rmse[1:].max() <= 0.05, rmse
    assert float(res.correlation.min()) > 0.7  # noisy volumes (20 photons per voxel)
    assert res.low_correlation.dims == ("time",) and int(res.low_correlation.sum()) == 0
    assert res.attrs["qc_verdict"] == "ok" and "defect_mask" not in res
    # a search bound of 1 plane: volumes moved by about a plane are flagged, the run is suspect
    with pytest.warns(RegistrationWarning, match=r"reached the search bound max_shifts=\(1, 4, 4\)"):
        tight = vol.normcorre.rigid(max_shifts=(1, 4, 4), template=sim.template)
    at_z = np.abs(tight.shifts.sel(axis="z").values) >= 0.5
    np.testing.assert_array_equal(tight.at_max_shift.values.astype(bool), at_z)
    assert tight.attrs["qc_verdict"] == "suspect" and "increase max_shifts" in tight.attrs["qc_warnings"]


def test_lazy_equals_eager_and_apply_shifts(vol, sim, res):
    lazy = vol.chunk({"time": 5}).normcorre.rigid(max_shifts=(2, 4, 4), template=sim.template)
    assert lazy.corrected.chunks is not None
    np.testing.assert_array_equal(lazy.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(lazy.corrected.values, res.corrected.values)
    again = xnormcorre.apply_shifts(vol, res)
    np.testing.assert_array_equal(again.values, res.corrected.values)
    lazy_again = xnormcorre.apply_shifts(vol.chunk({"time": 4}), res.shifts)
    assert lazy_again.chunks is not None
    np.testing.assert_array_equal(lazy_again.values, res.corrected.values)


def test_reference_channel_estimates_the_shifts(vol, sim, res):
    """Shifts estimated on a reference (another channel with the same motion) are those of a run
    on the reference, and applied to the movie; lazily too."""
    other = np.sqrt(vol).rename("green")
    out = other.normcorre.rigid(max_shifts=(2, 4, 4), template=sim.template, reference=vol)
    np.testing.assert_array_equal(out.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(out.correlation.values, res.correlation.values)
    np.testing.assert_array_equal(out.corrected.values, xnormcorre.apply_shifts(other, res).values)
    assert out.attrs["shifts_estimated_on"] == "reference (movie)"
    lazy = other.chunk({"time": 5}).normcorre.rigid(
        max_shifts=(2, 4, 4), template=sim.template, reference=vol
    )
    assert lazy.corrected.chunks is not None
    np.testing.assert_array_equal(lazy.corrected.values, out.corrected.values)


def test_estimated_template_recovers_motion(vol, sim):
    out = vol.normcorre.rigid(max_shifts=(2, 4, 4))
    err = out.shifts.values - sim.shifts
    err -= np.median(err, axis=0)  # an estimated template is centred on the movie, not on zero
    assert np.abs(err).max() < 0.15, np.abs(err).max(axis=0)


def test_volume_bad_input(vol):
    with pytest.raises(ValueError, match="max_shifts must have 3 entries"):
        vol.normcorre.rigid(max_shifts=(4, 4))
    with pytest.raises(ValueError, match="below half"):
        vol.normcorre.rigid(max_shifts=(4, 4, 4))
    with pytest.raises(ValueError, match="scan_phase= is not available"):
        vol.normcorre.rigid(max_shifts=(1, 4, 4), scan_phase=0.5)
    with pytest.raises(ValueError, match="reference must have the movie's sizes"):
        vol.normcorre.rigid(max_shifts=(2, 4, 4), reference=vol.isel(time=slice(0, 3)))
    with pytest.raises(ValueError, match="max_shifts must have 3 entries"):
        vol.normcorre.pwrigid()  # 3-D piecewise rigid: 3 entries (z, y, x), see test_volume_pw.py
    with pytest.raises(ValueError, match="template must have the volume's shape"):
        vol.normcorre.rigid(max_shifts=(1, 4, 4), template=np.zeros((2, 32, 32), np.float32))


@pytest.mark.slow
def test_accuracy_acceptance_16x64x64():
    """Pixel-integrated volumes with known subpixel 3-D motion: z RMSE <= 0.1 plane, xy <= 0.05 px."""
    sim = simulate_volume((16, 64, 64), 40, seed=0)
    out = xnormcorre.rigid(sim.frames, max_shifts=(3, 6, 6))
    err = out.shifts.values - sim.shifts
    err -= np.median(err, axis=0)
    rmse = np.sqrt((err**2).mean(axis=0))
    assert rmse[0] <= 0.1 and rmse[1:].max() <= 0.05, rmse


def test_open_tzyx_tiff_and_register_lazily(tmp_path, vol, sim, res):
    """An ImageJ TZYX hyperstack opens as (time, z, y, x) and registers chunk by chunk."""
    import tifffile

    p = tmp_path / "volume.tif"
    tifffile.imwrite(p, sim.frames, imagej=True, metadata={"axes": "TZYX"})
    movie = xnormcorre.open_movie(p, chunks={"time": 5})
    assert movie.dims == ("time", "z", "y", "x")
    out = movie.normcorre.rigid(max_shifts=(2, 4, 4), template=sim.template)
    np.testing.assert_array_equal(out.shifts.values, res.shifts.values)
    np.testing.assert_array_equal(out.corrected.values, res.corrected.values)


@pytest.mark.slow
def test_few_planes_estimated_template():
    """Six planes (padded along z, not tapered), template estimated: z RMSE <= 0.1 plane, xy <= 0.05 px."""
    sim = simulate_volume((6, 48, 48), 20, max_shift=(0.8, 2.0, 2.0), n_cells=30, os=(2, 2, 2), seed=1)
    out = xnormcorre.rigid(sim.frames, max_shifts=(2, 4, 4))
    err = out.shifts.values - sim.shifts
    err -= np.median(err, axis=0)
    rmse = np.sqrt((err**2).mean(axis=0))
    assert rmse[0] <= 0.1 and rmse[1:].max() <= 0.05, rmse


def test_lazy_volume_run_streams_chunk_by_chunk(tmp_path, monkeypatch, vol):
    """A lazily opened TZYX file, template estimated: no read returns more than one time chunk,
    each volume is read at most three times (template sample, template pass, registration),
    the template passes keep at most their chunk budget, and the result equals the in-memory one."""
    import tifffile

    from xnormcorre.core import movie as movie_mod
    from xnormcorre.core import volume as volume_mod
    from xnormcorre.io import tiff_files

    p = tmp_path / "volume.tif"
    frames = np.asarray(vol.values, np.float32)
    tifffile.imwrite(p, frames, imagej=True, metadata={"axes": "TZYX"})
    chunk = 3
    vol_bytes = frames[0].nbytes
    monkeypatch.setattr(volume_mod, "VOLUME_CACHE_BYTES", 2 * chunk * vol_bytes)
    reads: list[np.ndarray] = []
    orig_read = tiff_files.TiffPart.read

    def read(self, idx, channels=None):
        reads.append(np.asarray(idx, np.int64).copy())
        return orig_read(self, idx, channels)

    held: list[int] = []
    orig_load = movie_mod.Frames._load

    def load(self, chunks):
        orig_load(self, chunks)
        held.append(sum(a.nbytes for a in self._cache.values()))

    monkeypatch.setattr(tiff_files.TiffPart, "read", read)
    monkeypatch.setattr(movie_mod.Frames, "_load", load)
    movie = xnormcorre.open_movie(p, chunks={"time": chunk})
    out = movie.normcorre.rigid(max_shifts=(2, 4, 4))
    assert out.corrected.chunks[0] == (chunk,) * (len(frames) // chunk)  # still lazy, one task per chunk
    corrected = out.corrected.values
    assert max(r.size for r in reads) <= chunk
    per_volume = np.bincount(np.concatenate(reads), minlength=len(frames))
    assert per_volume.max() <= 3 and per_volume.min() >= 2, per_volume
    assert held and max(held) <= 2 * chunk * vol_bytes, (held, vol_bytes)
    eager = xnormcorre.rigid(frames, max_shifts=(2, 4, 4))
    np.testing.assert_array_equal(out.shifts.values, eager.shifts.values)
    np.testing.assert_array_equal(corrected, eager.corrected.values)


def test_estimate_template_of_a_volume_is_the_runs_template(vol):
    tmpl = xnormcorre.estimate_template(vol, max_shifts=(2, 4, 4))
    assert tmpl.dims == ("z", "y", "x") and tmpl.dtype == np.float32
    np.testing.assert_array_equal(tmpl.z.values, vol.z.values)
    run = vol.normcorre.rigid(max_shifts=(2, 4, 4))
    np.testing.assert_array_equal(tmpl.values, run.template.values)
    np.testing.assert_array_equal(
        xnormcorre.estimate_template(vol.values, max_shifts=(2, 4, 4)).values, tmpl.values
    )
    with pytest.raises(ValueError, match="max_shifts must have 3 entries"):
        xnormcorre.estimate_template(vol)
    with pytest.raises(ValueError, match="frames_per_split= is not available for the template of a volume"):
        xnormcorre.estimate_template(vol, max_shifts=(2, 4, 4), frames_per_split=5)


def test_corrector_refuses_a_volume_naming_the_alternatives(vol, sim):
    msg = r"must be .*: a Corrector registers \(y, x\) frames; .* a volume.*xnormcorre.rigid\(movie, max_shifts=\(z, y, x\)"
    with pytest.raises(ValueError, match=msg):
        xnormcorre.Corrector(sim.template)
    with pytest.raises(ValueError, match=msg):
        xnormcorre.Corrector.from_frames(vol)
    with pytest.raises(ValueError, match=msg):
        xnormcorre.Corrector(sim.template[0]).correct(vol)


def test_estimated_template_is_centred_on_the_range_of_positions(sim):
    """8 volumes at one position, 4 moved by +3 px in y: the median template sits at the first
    position; centred, the search window ±3 covers both (±1.5 px), none at the search bound."""
    scene = sim.template
    frames = np.stack([scene] * 8 + [np.roll(scene, 3, axis=1)] * 4)
    res = xnormcorre.rigid(frames, max_shifts=(1, 3, 3))
    y = res.shifts.sel(axis="y").values
    np.testing.assert_allclose(y, [-1.5] * 8 + [1.5] * 4, atol=0.1)
    assert np.abs(res.shifts.sel(axis=["z", "x"]).values).max() < 0.1
    assert int(res.at_max_shift.sum()) == 0
