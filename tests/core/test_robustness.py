"""Issue 9: bad input gets one clear error; same input -> same bits; provenance in attrs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import xnormcorre
from xnormcorre.testing.strategies import SHAPES, crop_movie

# ------------------------------------------------------------------------------ movies


def test_four_d_movie_names_the_extra_dim():
    da = xr.DataArray(np.ones((3, 2, 32, 32)), dims=("time", "channel", "y", "x"))
    with pytest.raises(ValueError, match=r"select one 'channel' first"):
        xnormcorre.rigid(da)
    with pytest.raises(ValueError, match="3-D"):
        xnormcorre.rigid(np.ones((3, 2, 32, 32)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_with_frame_index(bad):
    movie = np.ones((6, 32, 32), np.float32)
    movie[2] = bad
    with pytest.raises(ValueError, match=r"1 frame\(s\) \(first: \[2\]\)"):
        xnormcorre.rigid(movie, max_shifts=3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        xnormcorre.pwrigid(movie, max_shifts=3, strides=16, overlaps=8, max_deviation_rigid=1)


@pytest.mark.parametrize("shape", [(1, 1), (4, 40), (40, 2)])
def test_frames_too_small_for_max_shifts(shape):
    with pytest.raises(ValueError, match="max_shifts must be smaller than half the frame"):
        xnormcorre.rigid(np.ones((3, *shape)), max_shifts=1 if 1 in shape else 3)


@pytest.mark.parametrize(
    "dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "float16", "float64"]
)
def test_all_numeric_dtypes_register_to_float32(small_movie, dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    vals = small_movie.values
    if info is not None:  # scale into the dtype's range
        vals = np.clip(vals / vals.max() * min(info.max, 30000), info.min, info.max)
    movie = small_movie.copy(data=vals.astype(dtype))
    res = xnormcorre.rigid(movie, max_shifts=5)
    assert res.corrected.dtype == np.float32 and res.shifts.dtype == np.float32
    ref = xnormcorre.rigid(small_movie, max_shifts=5)
    assert float(np.abs(res.shifts - ref.shifts).max()) < 0.25


def test_non_monotonic_time_coordinates_are_kept(small_movie):
    perm = np.random.default_rng(0).permutation(small_movie.sizes["time"])
    shuffled = small_movie.isel(time=perm)
    res = xnormcorre.rigid(shuffled, max_shifts=5)
    np.testing.assert_array_equal(res.time.values, shuffled.time.values)
    # frame t of the result is frame t of the input: re-registering the sorted movie to the same template
    again = xnormcorre.rigid(small_movie, template=res.template, max_shifts=5)
    # the template sample follows the frame order: estimates agree to the estimator's precision
    np.testing.assert_allclose(res.shifts.sel(time=small_movie.time).values, again.shifts.values, atol=2e-3)


def test_dask_chunked_along_y_and_x(small_movie):
    eager = xnormcorre.rigid(small_movie, max_shifts=5)
    lazy = xnormcorre.rigid(small_movie.chunk({"time": 9, "y": 20, "x": 33}), max_shifts=5)
    assert lazy.corrected.chunks is not None
    xr.testing.assert_identical(lazy.compute(), eager)


def test_constant_and_single_frame_movies_give_finite_zero_shifts():
    const = xnormcorre.rigid(np.full((4, 32, 32), 3, np.uint16), max_shifts=3)
    assert np.isfinite(const.shifts).all() and float(np.abs(const.shifts).max()) == 0.0
    one = xnormcorre.pwrigid(
        np.random.default_rng(0).random((1, 64, 64)), max_shifts=3, strides=24, overlaps=8
    )
    assert one.shifts.shape[0] == 1 and np.isfinite(one.corrected).all()


# -------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"max_shifts": (3, 3, 3)}, ValueError, "max_shifts"),
        ({"max_shifts": "8"}, TypeError, "max_shifts"),
        ({"upsample_factor": 2.5}, TypeError, "upsample_factor"),
        ({"upsample_factor": True}, TypeError, "upsample_factor"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"seed": -1}, ValueError, "seed"),
        ({"num_splits_to_process": 0}, ValueError, "num_splits_to_process"),
        ({"smooth_sigma": -1.0}, ValueError, "smooth_sigma"),
        ({"taper": -2.0}, ValueError, "taper"),
        ({"min_mov": float("nan")}, ValueError, "min_mov"),
        ({"template": np.ones((32, 32), complex)}, TypeError, "template"),
        ({"reference": np.ones((5, 32, 32))}, ValueError, "reference"),
    ],
)
def test_bad_parameters_name_themselves(kw, exc, match):
    with pytest.raises(exc, match=match):
        xnormcorre.rigid(np.ones((4, 32, 32)), **kw)


# ----------------------------------------------------------------------- reproducibility


def test_same_bits_across_reruns_batch_sizes_and_chunkings(small_movie):
    kw = {"max_shifts": 5, "frames_per_split": 16, "num_splits_to_process": 2, "niter": 2, "seed": 3}
    ref = xnormcorre.rigid(small_movie, batch_size=8, **kw)
    for bs in (8, 32):
        for chunks in (None, 5, 17):
            mv = small_movie if chunks is None else small_movie.chunk({"time": chunks})
            out = xnormcorre.rigid(mv, batch_size=bs, **kw).compute()
            np.testing.assert_array_equal(out.shifts.values, ref.shifts.values)
            np.testing.assert_array_equal(out.corrected.values, ref.corrected.values)
            np.testing.assert_array_equal(out.template.values, ref.template.values)
    assert ref.attrs["seed"] == 3


@pytest.mark.parametrize("fn", ["rigid", "pwrigid"])
def test_same_bits_whatever_the_number_of_kernel_threads(small_movie, monkeypatch, fn):
    """Kernel calls run concurrently on a thread pool: the bits must not depend on it."""
    kw = {"max_shifts": 4, "batch_size": 8}
    if fn == "pwrigid":
        kw.update(strides=24, overlaps=8, max_deviation_rigid=2)
    runs = []
    for n in ("1", "3"):
        monkeypatch.setenv("XNORMCORRE_KERNEL_THREADS", n)
        runs.append(getattr(xnormcorre, fn)(small_movie, **kw))
    xr.testing.assert_identical(runs[0], runs[1])


def test_kernel_threads_setting_is_checked(monkeypatch):
    from xnormcorre.engine import runner

    monkeypatch.setenv("XNORMCORRE_KERNEL_THREADS", "2")
    assert runner.kernel_threads() == 2
    for bad in ("0", "two"):
        monkeypatch.setenv("XNORMCORRE_KERNEL_THREADS", bad)
        with pytest.raises(ValueError, match="XNORMCORRE_KERNEL_THREADS must be an integer >= 1"):
            runner.kernel_threads()
    monkeypatch.delenv("XNORMCORRE_KERNEL_THREADS")
    assert 1 <= runner.kernel_threads() <= 4
    # results come back in order even when later calls finish first
    monkeypatch.setenv("XNORMCORRE_KERNEL_THREADS", "3")
    out = list(runner.ordered_map(lambda i: (time.sleep(0.002 * (9 - i)), i)[1], range(10)))
    assert out == list(range(10))


def test_seed_changes_the_split_draw_only_when_sampling(small_movie):
    kw = {"max_shifts": 5, "frames_per_split": 8, "num_splits_to_process": 2}
    a = xnormcorre.estimate_template(small_movie, seed=0, **kw)
    b = xnormcorre.estimate_template(small_movie, seed=1, **kw)
    assert not np.array_equal(a.values, b.values)
    full0 = xnormcorre.estimate_template(small_movie, seed=0, max_shifts=5, frames_per_split=8)
    full1 = xnormcorre.estimate_template(small_movie, seed=1, max_shifts=5, frames_per_split=8)
    np.testing.assert_array_equal(full0.values, full1.values)


def test_provenance_and_reproduction_from_attrs(tmp_path, small_movie):
    import tifffile

    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, np.clip(small_movie.values, 0, 65535).astype(np.uint16))
    movie = xnormcorre.open_movie(path)
    for fn, kw in (
        (xnormcorre.rigid, {"max_shifts": 4, "niter": 2}),
        (xnormcorre.pwrigid, {"max_shifts": 4, "strides": 24, "overlaps": 8, "max_deviation_rigid": 2}),
    ):
        res = fn(movie, **kw)
        for key in ("xnormcorre_version", "jax_version", "jaxlib_version", "numpy_version", "xarray_version"):
            assert isinstance(res.attrs[key], str) and res.attrs[key]
        assert res.attrs["source"] == str(path)
        res.to_netcdf(tmp_path / f"{fn.__name__}.nc")
        with xr.open_dataset(tmp_path / f"{fn.__name__}.nc") as back:
            params = xnormcorre.parameters_from_attrs(back.attrs)
        again = fn(movie, **params)
        xr.testing.assert_identical(again, res)


@given(
    shape=st.sampled_from(SHAPES),
    seed=st.integers(0, 500),
    chunk=st.integers(1, 9),
    batch=st.sampled_from([4, 8]),
    shifts=st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=9, max_size=9),
)
def test_property_chunking_and_batching_never_change_bits(shape, seed, chunk, batch, shifts):
    movie, tmpl = crop_movie(shape, np.asarray(shifts, float), seed)
    da = xr.DataArray(movie, dims=("time", "y", "x"))
    eager = xnormcorre.rigid(da, template=tmpl, max_shifts=4, batch_size=8)
    lazy = xnormcorre.rigid(
        da.chunk({"time": chunk}), template=tmpl, max_shifts=4, batch_size=batch
    ).compute()
    np.testing.assert_array_equal(lazy.shifts.values, eager.shifts.values)
    np.testing.assert_array_equal(lazy.corrected.values, eager.corrected.values)
    # sanity only (accuracy has its own properties): content leaving a 40-px frame costs ~0.1 px
    np.testing.assert_allclose(eager.shifts.values, np.asarray(shifts, float), atol=0.2)


# ------------------------------------------------------------------------- nothing lost


@pytest.mark.slow
def test_killed_writer_leaves_previous_file_intact(tmp_path):
    """SIGKILL a process in the middle of ``to_tiff``: the existing target is untouched."""
    target = tmp_path / "out.tif"
    target.write_bytes(b"previous content")
    script = textwrap.dedent(
        f"""
        import time, numpy as np, dask.array as da, xarray as xr, xnormcorre
        def slow(b):
            time.sleep(0.2)
            return b
        arr = da.ones((400, 64, 64), chunks=(4, 64, 64), dtype="float32").map_blocks(slow)
        movie = xr.DataArray(arr, dims=("time", "y", "x"))
        print("start", flush=True)
        xnormcorre.to_tiff(movie, {str(target)!r}, overwrite=True, progress=False)
        print("done", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(tmp_path.iterdir())) < 2:
        time.sleep(0.1)
    time.sleep(1.0)  # well inside the ~20 s write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert target.read_bytes() == b"previous content"
    others = [p for p in tmp_path.iterdir() if p != target]
    assert len(others) == 1 and others[0].name != target.name  # only the abandoned temp file


def test_nan_in_a_lazy_movie_is_refused_when_computed(small_movie):
    vals = small_movie.values.copy()
    vals[17, 3, 3] = np.nan
    lazy = small_movie.copy(data=vals).chunk({"time": 10})
    res = xnormcorre.rigid(lazy, max_shifts=4, template=small_movie.isel(time=0))
    with pytest.raises(ValueError, match="NaN or Inf values in 1 frame"):
        res.shifts.values  # noqa: B018


def test_template_work_is_bounded_for_long_movies(monkeypatch):
    """Template iterations register at most max_template_frames frames (jnormcorre pitfall)."""
    from xnormcorre.engine import template as engine_template
    from xnormcorre.engine.config import RigidParams

    movie = xnormcorre.datasets.synthetic_movie(120, (32, 32), 2, seed=1)
    counted = []
    real, real_probe = RigidParams.mean_registered, engine_template._probe_mean

    def spy(params, mv, tmpl, start, stop, keep=None):
        counted.append(stop - start)
        return real(params, mv, tmpl, start, stop, keep)

    def spy_probe(params, mv, tmpl, start, stop):
        counted.append(stop - start)
        return real_probe(params, mv, tmpl, start, stop)

    # the iterations' means (rigid, no sensor defects: on the noise probe's program)
    monkeypatch.setattr(RigidParams, "mean_registered", spy)
    monkeypatch.setattr(engine_template, "_probe_mean", spy_probe)
    # the initial template's pass registers the 100-frame sample; the iterations register
    # splits of 20 or 30 frames
    xnormcorre.estimate_template(movie, max_shifts=3, frames_per_split=20, max_template_frames=40, niter=2)
    bounded = [c for c in counted if c != 100]
    counted.clear()
    xnormcorre.estimate_template(movie, max_shifts=3, frames_per_split=20, max_template_frames=None, niter=2)
    full = [c for c in counted if c != 100]
    assert sum(full) == 2 * 120  # every frame, twice
    assert bounded == [20] * 4  # 2 splits of 20 frames per iteration
    counted.clear()
    xnormcorre.estimate_template(movie, max_shifts=3, frames_per_split=100, max_template_frames=30, niter=2)
    assert [c for c in counted if c != 100] == [30, 30]  # below a split: 30 evenly spaced frames


def test_bounded_template_sample_reads_the_movie_frames():
    """The evenly spaced sample of a bounded template iteration holds the movie's frames,
    those of the survey taken from it, the others read."""
    from xnormcorre.engine import template as tmpl

    movie = np.random.default_rng(0).normal(size=(250, 8, 8)).astype(np.float32)
    surveyed = tmpl.survey(movie, defects=False)
    index = tmpl.sample_indices(250, 160)
    assert 0 < np.isin(index, surveyed.index).sum() < len(index)  # some held, some read
    view = tmpl.Subsample(movie, index, surveyed)
    assert len(view) == 160 and view.shape == (160, 8, 8)
    np.testing.assert_array_equal(view[10:90], movie[index[10:90]])
    np.testing.assert_array_equal(view[0 : len(view)], movie[index])


def test_import_is_light_for_xarray_users():
    """xarray imports every backend plugin: ours must not pull in JAX, SciPy, h5py, tifffile or tqdm."""
    heavy = ["jax", "scipy", "h5py", "tifffile", "tqdm"]
    code = (
        "import sys, xarray as xr; engines = xr.backends.list_engines(); import xnormcorre; "
        f"assert 'xnormcorre_tiff' in engines and 'xnormcorre_hdf5' in engines; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------- files


@pytest.mark.parametrize("fmt", ["tiff", "hdf5"])
def test_disk_full_mid_write_keeps_target_and_removes_temp(tmp_path, fmt, monkeypatch):
    """An ENOSPC from the file system half-way: OSError, old file untouched, no temp left."""
    import errno

    from xnormcorre.io import blocks

    calls = {"n": 0}
    orig = blocks.cast_block

    def full(block, dtype):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return orig(block, dtype)

    monkeypatch.setattr(blocks, "cast_block", full)
    monkeypatch.setattr(blocks, "default_time_chunk", lambda shape, preferred=1: 5)
    movie = xnormcorre.datasets.synthetic_movie(30, (24, 20), 1, seed=0).chunk({"time": 5})
    target = tmp_path / f"out.{fmt}"
    target.write_bytes(b"previous")
    write = xnormcorre.to_tiff if fmt == "tiff" else xnormcorre.to_hdf5
    with pytest.raises(OSError, match="No space left"):
        write(movie, target, overwrite=True, progress=False)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


_PERMISSIONS = textwrap.dedent(
    """
    import os, sys
    import numpy as np, tifffile, h5py, dask, dask.array, concurrent.futures, multiprocessing.pool
    import xnormcorre, xnormcorre.io.tiff, xnormcorre.io.hdf5, xnormcorre.io.writers
    if os.geteuid() == 0:
        os.setgid(65534); os.setuid(65534)  # nobody, after the imports (installed packages may be private)
    folder = sys.argv[1]
    for what, call in (
        ("read", lambda: xnormcorre.open_movie(os.path.join(folder, "m.tif"))),
        ("write", lambda: xnormcorre.to_tiff(
            np.zeros((3, 16, 16), np.float32), os.path.join(folder, "ro", "x.tif"), progress=False)),
    ):
        try:
            call()
            print(what, "no error")
        except Exception as exc:
            print(what, type(exc).__name__, exc)
    """
)


def test_unreadable_file_and_read_only_output_dir():
    """As an unprivileged user (root reads and writes everything): run as ``nobody`` when root."""
    import shutil
    import tempfile

    import tifffile

    d = tempfile.mkdtemp(prefix="xnc-perm-")
    try:
        os.chmod(d, 0o755)  # pytest's tmp folders are private to their owner
        src = os.path.join(d, "m.tif")
        tifffile.imwrite(src, np.zeros((5, 16, 16), np.uint16))
        os.chmod(src, 0o200 if os.geteuid() == 0 else 0)
        os.mkdir(os.path.join(d, "ro"))
        os.chmod(os.path.join(d, "ro"), 0o555)
        done = subprocess.run(
            [sys.executable, "-c", _PERMISSIONS, d],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        if "Operation not permitted" in done.stderr:
            pytest.skip("cannot switch to an unprivileged user here")
        lines = done.stdout.splitlines()
        assert len(lines) == 2, done.stdout + done.stderr
        assert lines[0].startswith("read PermissionError") and "Permission denied" in lines[0], lines[0]
        assert src in lines[0]
        assert lines[1].startswith("write PermissionError") and "Permission denied" in lines[1], lines[1]
        assert os.path.join(d, "ro") in lines[1]
        assert os.listdir(os.path.join(d, "ro")) == []
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.tif"
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        xnormcorre.open_movie(missing)
    with pytest.raises(IsADirectoryError):
        xnormcorre.open_movie(tmp_path)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        xnormcorre.open_movie(empty)
    truncated = tmp_path / "trunc.tif"
    import tifffile

    tifffile.imwrite(truncated, np.ones((20, 32, 32), np.uint16))
    truncated.write_bytes(truncated.read_bytes()[:3000])
    with pytest.raises((ValueError, OSError)):
        xnormcorre.open_movie(truncated).values  # noqa: B018


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0, 0), (255, 63, 63), (256, 0, 5), (299, 10, 1)])
def test_finite_check_finds_one_bad_value_in_any_chunk(bad, where):
    """The movie's finite check reads 1,048,576 values (256 frames of 64²) at a time: a single
    NaN or Inf is found in the first and last frame of a chunk and in the last, partial chunk;
    strided views are checked as they are."""
    from xnormcorre.validate import check_finite_block

    block = np.ones((300, 64, 64), np.float32)
    check_finite_block(block)
    check_finite_block(block[:, ::2, 1:])
    block[where] = bad
    with pytest.raises(ValueError, match=rf"NaN or Inf values in 1 frame\(s\) \(first: \[{where[0]}\]\)"):
        check_finite_block(block, whole=True)
    if where[2] % 2 == 0:  # the strided view (every other column) keeps it
        with pytest.raises(ValueError, match="NaN or Inf"):
            check_finite_block(block[:, :, ::2])
