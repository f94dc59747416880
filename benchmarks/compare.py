"""Side-by-side benchmark: xnormcorre vs OpenCV, scikit-image, jnormcorre and pycorre.

Every engine runs on the same movies in one run, each in **its own new Python process**
(as a command-line user or a batch job runs it).  Two tables come out of the same
processes:

- **fresh process**: the time from starting the process to having the registered movie
  in memory -- interpreter start, imports, reading the movie (``.npy``), JIT
  compilation, template estimation, registration of every frame.  xnormcorre runs twice
  per round: with an empty persistent compilation cache (*first-ever*) and with the
  cache that run filled (*cached*);
- **steady state**: the same process then runs the engine again (``--repeats``); the
  best of those runs, minus nothing (the movie is already in memory), is the warm
  throughput.

Each row shows frames/s, xnormcorre's speed as a ratio to the engine's (from the same
run), and the engine's accuracy against the ground truth (shift RMSE, patch RMSE) next
to it; real movies get crispness and mean correlation with the mean image instead.

``--profile`` instead measures where xnormcorre's time goes (imports, JIT compilation,
template estimation, final pass, TIFF I/O) and the FFT bound of this machine.

It installs nothing.  xnormcorre runs with this interpreter, the peers with
``--peers-python`` (their own virtualenv, see ``benchmarks/README.md``); a peer that is
not importable there is reported as failed and left out.

Usage::

    python benchmarks/compare.py --peers-python /tmp/peers/bin/python --markdown /tmp/table.md
    python benchmarks/compare.py --quick            # tiny movies, one round: a smoke test
    python benchmarks/compare.py --cases rigid-256 --engines xnormcorre,opencv
    python benchmarks/compare.py --profile          # where xnormcorre's time goes
    python benchmarks/compare.py --cases rigid-256 --engines xnormcorre --baseline /tmp/old-checkout
                                                    # speed against an earlier version

Synthetic movies are generated once with ``xnormcorre.datasets.synthetic_movie`` and
cached (``--cache-dir``, default ``~/.cache/xnormcorre-bench``); generation is not timed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"

# ----------------------------------------------------------------------------- cases
# Equal parameters for every engine: max_shifts per case, subpixel 1/10 px, and for
# piecewise-rigid the patch grid below (the CaImAn demo's).  Template schemes are each
# engine's own defaults (see README).
PW = {"strides": (48, 48), "overlaps": (24, 24), "max_deviation_rigid": 3}
UPSAMPLE = 10

CASES = {
    # name: (kind, generator kwargs or file, max_shifts, engine group)
    "rigid-256": ("syn", {"n_frames": 1000, "shape": (256, 256), "max_shift": 2.0}, 6, "rigid"),
    "jumps-256": (
        "syn",
        {"n_frames": 1000, "shape": (256, 256), "max_shift": 6.0, "motion": "jumps"},
        8,
        "rigid",
    ),
    "lowsnr-256": (
        "syn",
        {"n_frames": 1000, "shape": (256, 256), "max_shift": 3.0, "photons": 0.3, "read_noise": 6.0},
        6,
        "rigid",
    ),
    "walk10-256": ("syn", {"n_frames": 500, "shape": (256, 256), "max_shift": 10.0}, 12, "rigid"),
    "rigid-512": ("syn", {"n_frames": 1000, "shape": (512, 512), "max_shift": 2.0}, 6, "rigid"),
    "nonrigid-512": (
        "syn",
        {"n_frames": 1000, "shape": (512, 512), "max_shift": 3.0, "nonrigid": 2.0},
        6,
        "pw",
    ),
    "neurofinder-real": ("real", {"file": "neurofinder_crop_480x256x256.tif"}, 6, "all"),
    # not run by default
    "nonrigid-256": (
        "syn",
        {"n_frames": 1000, "shape": (256, 256), "max_shift": 3.0, "nonrigid": 2.0},
        6,
        "pw",
    ),
    "lowsnr-hot-256": (
        "syn",
        {
            "n_frames": 1000,
            "shape": (256, 256),
            "max_shift": 3.0,
            "photons": 0.3,
            "read_noise": 6.0,
            "hot_dead": True,
        },
        6,
        "rigid",
    ),
    "rigid-2000-512": ("syn", {"n_frames": 2000, "shape": (512, 512), "max_shift": 2.0}, 6, "rigid"),
    # the independent generator (xnormcorre.testing.simulate: oversampled tissue scene,
    # cubic B-spline motion, pixel integration, Poisson-Gaussian camera, calcium activity):
    # accuracy on a renderer the estimator was not tuned on
    "sim-256": (
        "sim",
        {"n_frames": 1000, "shape": (256, 256), "max_shift": 2.0, "photons_per_px": 5.0, "activity": 1.0},
        6,
        "rigid",
    ),
    "sim-512": (
        "sim",
        {
            "n_frames": 1000,
            "shape": (512, 512),
            "max_shift": 2.0,
            "photons_per_px": 5.0,
            "activity": 1.0,
            "oversample": 2,
        },
        6,
        "rigid",
    ),
}
DEFAULT_CASES = [
    "rigid-256",
    "jumps-256",
    "lowsnr-256",
    "walk10-256",
    "rigid-512",
    "nonrigid-512",
    "neurofinder-real",
    "sim-256",
    "sim-512",
]
QUICK_FRAMES = 120  # --quick: this many frames, frame sides halved (256 -> 128, 512 -> 256)

RIGID_ENGINES = ["xnormcorre", "opencv", "skimage", "jnormcorre", "pycorre"]
PW_ENGINES = ["xnormcorre-pw", "jnormcorre-pw", "pycorre-pw"]
OURS = {"xnormcorre", "xnormcorre-pw"}
# --baseline: the same engines from an earlier source tree (compiled, cached and timed
# like ours, compared like a peer: "xnormcorre ÷ engine" is then the speed-up)
BASELINE = {"xnormcorre@base", "xnormcorre-pw@base"}
JAX_ENGINES = OURS | BASELINE
# nothing to compile (NumPy/OpenCV/torch eager): one run per process; its time is both
# the fresh-process run and the steady state (a second run would only repeat it)
SINGLE_RUN = {"skimage", "pycorre", "pycorre-pw"}


def engines_for(group: str, baseline: bool = False) -> list[str]:
    rigid = RIGID_ENGINES + (["xnormcorre@base"] if baseline else [])
    pw = PW_ENGINES + (["xnormcorre-pw@base"] if baseline else [])
    return {"rigid": rigid, "pw": pw}.get(group, rigid + pw)


def ours_for(engine: str) -> str:
    """The xnormcorre engine a peer is compared with."""
    return "xnormcorre-pw" if engine.removesuffix("@base").endswith("-pw") else "xnormcorre"


# --------------------------------------------------------------------------- inputs
def _hot_dead(movie: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fixed hot (saturated) and dead (zero) pixels, 0.1 % each, in every frame."""
    rng = np.random.default_rng(seed)
    h, w = movie.shape[1:]
    n = max(1, h * w // 1000)
    hot = rng.choice(h * w, n, replace=False)
    dead = rng.choice(h * w, n, replace=False)
    flat = movie.reshape(len(movie), -1)
    flat[:, hot] = float(np.percentile(movie, 99.99)) * 4
    flat[:, dead] = 0.0
    return movie


def case_params(name: str, quick: bool, frames: int | None) -> dict:
    kind, kw, _, _ = CASES[name]
    kw = dict(kw)
    if quick:
        kw["n_frames"] = QUICK_FRAMES
        if kind in ("syn", "sim"):
            kw["shape"] = tuple(s // 2 for s in kw["shape"])
    if frames:
        kw["n_frames"] = frames
    return kw


def prepare(name: str, cache: Path, data_dir: Path, quick: bool, frames: int | None) -> Path | None:
    """Write the case's movie (``.npy``) and truth (``.npz``) once; return the ``.npy`` path."""
    kind, _, _, group = CASES[name]
    kw = case_params(name, quick, frames)
    key = hashlib.sha1(json.dumps([name, kw, PW], sort_keys=True, default=str).encode()).hexdigest()[:10]
    stem = cache / f"{name}-{kw.get('n_frames', 'all')}-{key}"
    movie_path, truth_path = Path(f"{stem}.npy"), Path(f"{stem}-truth.npz")
    if movie_path.exists() and truth_path.exists():
        return movie_path
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truth: dict[str, np.ndarray] = {}
    if kind == "real":
        src = data_dir / kw["file"]
        if not src.exists():
            print(f"[skip] {name}: {src} not found", file=sys.stderr)
            return None
        import tifffile

        movie = tifffile.imread(src).astype(np.float32)[: kw["n_frames"]]
    elif kind == "sim":
        from xnormcorre.testing.simulate import simulate_movie

        sim = simulate_movie(**kw, seed=0)
        movie = sim.frames.astype(np.float32)
        truth["true_shifts"] = sim.shifts.astype(np.float32)
        del sim
    else:
        import xnormcorre

        gen = {k: v for k, v in kw.items() if k != "hot_dead"}
        ds = xnormcorre.datasets.synthetic_movie(**gen, seed=0, as_dataset=True)
        movie = ds.movie.values.astype(np.float32)
        if kw.get("hot_dead"):
            movie = _hot_dead(movie)
        truth["true_shifts"] = ds.true_shifts.values.astype(np.float32)
        if "true_field" in ds:  # keep the field at the patch centres only (GBs otherwise)
            truth["true_patch"] = patch_truth(ds.true_field.values).astype(np.float32)
        del ds
    tmp = movie_path.with_suffix(".part.npy")
    np.save(tmp, np.ascontiguousarray(movie))
    np.savez(truth_path, **truth)
    tmp.replace(movie_path)
    print(f"[prep] {name}: {movie.shape} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return movie_path


# -------------------------------------------------------------------------- engines
# Each engine: an import step (timed apart) and a run on an in-memory float32 movie
# returning {"shifts": (T, 2) displacement, "patch_shifts": (T, Ny, Nx, 2), "corrected"}.
def _evenly(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def _subsample_template(movie, register, n_init=200, niter=2):
    """Template from ``n_init`` evenly spaced frames: their median, then ``niter`` times
    the mean of those frames registered to it.  Then the final pass over every frame."""
    sub = movie[_evenly(len(movie), n_init)]
    tmpl = np.median(sub, axis=0).astype(np.float32)
    for _ in range(niter):
        _, corrected = register(sub, tmpl)
        tmpl = corrected.mean(0).astype(np.float32)
    return register(movie, tmpl)


def import_opencv():
    import cv2

    cv2.setNumThreads(2)


def run_opencv(movie, max_shifts, **_):
    """``cv2.phaseCorrelate`` (no window) + ``cv2.warpAffine`` cubic, 2 threads.

    OpenCV's Hanning window is *not* used: with it, ``phaseCorrelate`` (OpenCV 5)
    returns shifts several pixels off on these photon-noise frames (checked against
    the truth: 4.5 px RMSE with it, 0.10 px without, on a 2 px walk).
    """
    import cv2

    h, w = movie.shape[1:]

    def register(mv, tmpl):
        shifts = np.empty((len(mv), 2), np.float32)
        out = np.empty_like(mv)
        for i, f in enumerate(mv):
            (dx, dy), _ = cv2.phaseCorrelate(tmpl, f)  # displacement of f relative to tmpl
            dy = float(np.clip(dy, -max_shifts, max_shifts))
            dx = float(np.clip(dx, -max_shifts, max_shifts))
            shifts[i] = (dy, dx)
            m = np.float32([[1, 0, dx], [0, 1, dy]])  # out(r) = f(r + shift)
            out[i] = cv2.warpAffine(
                f, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
            )
        return shifts, out

    shifts, corrected = _subsample_template(movie, register)
    return {"shifts": shifts, "corrected": corrected}


def import_skimage():
    import scipy.ndimage  # noqa: F401
    import skimage.filters  # noqa: F401
    import skimage.registration  # noqa: F401


def run_skimage(movie, max_shifts, **_):
    """``phase_cross_correlation(upsample_factor=10)`` + ``scipy.ndimage.fourier_shift``.

    A Hann window on the estimate's inputs (the shift is applied to the unwindowed
    frame): checked against the truth, 0.13 px RMSE with it and 0.29 px without on a
    2 px walk (the frame border's wrap-around pulls the peak towards zero), equal on
    jumps.
    """
    from scipy.ndimage import fourier_shift
    from skimage.filters import window
    from skimage.registration import phase_cross_correlation

    win = window("hann", movie.shape[1:]).astype(np.float32)

    def register(mv, tmpl):
        shifts = np.empty((len(mv), 2), np.float32)
        out = np.empty_like(mv)
        tw = np.fft.fft2(tmpl * win)
        for i, f in enumerate(mv):
            s, _, _ = phase_cross_correlation(
                tw, np.fft.fft2(f * win), upsample_factor=UPSAMPLE, space="fourier"
            )
            s = np.clip(-s, -max_shifts, max_shifts)  # skimage: the shift that registers f
            shifts[i] = s
            out[i] = np.real(np.fft.ifft2(fourier_shift(np.fft.fft2(f), -s)))
        return shifts, out

    shifts, corrected = _subsample_template(movie, register)
    return {"shifts": shifts, "corrected": corrected}


def import_jnormcorre():
    import jnormcorre.motion_correction  # noqa: F401


class _NumpyLoader:
    """In-memory jnormcorre ``lazy_data_loader``."""

    @staticmethod
    def make(movie):
        from jnormcorre.utils.lazy_array import lazy_data_loader

        class Loader(lazy_data_loader):
            def __init__(self, arr):
                self._arr = arr

            @property
            def dtype(self):
                return self._arr.dtype

            @property
            def shape(self):
                return self._arr.shape

            @property
            def ndim(self):
                return 3

            def _compute_at_indices(self, indices):
                return self._arr[indices]

        return Loader(movie)


def run_jnormcorre(movie, max_shifts, pw=False, **_):
    import jnormcorre.motion_correction as jm

    n, h, w = movie.shape
    ms = (max_shifts, max_shifts)
    kw = {
        "strides": PW["strides"],
        "overlaps": PW["overlaps"],
        "max_deviation_rigid": PW["max_deviation_rigid"],
    }
    mc = jm.MotionCorrect(
        _NumpyLoader.make(movie),
        max_shifts=ms,
        frames_per_split=1000,
        niter_rig=1,
        niter_els=1,
        pw_rigid=pw,
        **kw,
    )
    mc.motion_correct()
    tmpl = mc.total_template_els if pw else mc.total_template_rig
    add = np.float32(-mc.min_mov)
    step = jm.load_split_heuristic(h, w, n)  # jnormcorre's own batch heuristic
    shifts, corrected, pshifts = [], [], []
    for a in range(0, n, step):
        frames = movie[a : a + step]
        if pw:
            out, sh = jm.register_frames_to_template_pwrigid(
                frames, tmpl, kw["strides"][0], kw["strides"][1], kw["overlaps"][0], kw["overlaps"][1],
                ms, UPSAMPLE, kw["max_deviation_rigid"], add,
            )  # fmt: skip
            pshifts.append(-np.asarray(sh))  # applied correction -> displacement
        else:
            out, sh = jm.register_frames_to_template_rigid(frames, tmpl, ms, add)
            shifts.append(-np.asarray(sh))
        corrected.append(np.asarray(out))
    res = {"corrected": np.concatenate(corrected)}
    if pw:
        ps = np.concatenate(pshifts)  # (T, ny*nx, 2), tiles in row-major (y, x) order
        sy = _patch_starts(h, kw["strides"][0], kw["overlaps"][0])
        sx = _patch_starts(w, kw["strides"][1], kw["overlaps"][1])
        res["patch_shifts"] = ps.reshape(n, len(sy), len(sx), 2)
    else:
        res["shifts"] = np.concatenate(shifts)
    return res


def run_jnormcorre_pw(movie, max_shifts, **kw):
    return run_jnormcorre(movie, max_shifts, pw=True, **kw)


def import_pycorre():
    import pycorre  # noqa: F401
    import torch  # noqa: F401


def run_pycorre(movie, max_shifts, pw=False, **_):
    """pycorre's ``MotionCorrection.fit_transform`` with its own template scheme (mean of
    the first 400 frames, one batched registration pass averaged) on the CPU; torch's
    default threads (one per core)."""
    from pycorre import MotionCorrection

    mc = MotionCorrection(
        max_shifts=(max_shifts, max_shifts),
        upsample_factor_fft=UPSAMPLE,
        pw_rigid=pw,
        strides=PW["strides"],
        overlaps=PW["overlaps"],
        max_deviation_rigid=PW["max_deviation_rigid"],
        border_nan=False,  # its NaN border would poison the real-movie metrics
        device="cpu",
    )
    corrected = mc.fit_transform(movie)
    # pycorre's shifts are displacements (it samples the frame at r + shift)
    rigid = mc.rigid_shifts.cpu().numpy().astype(np.float32)
    res = {"shifts": rigid, "corrected": corrected}
    if pw:
        # patch shifts are found on the rigidly corrected frames (and applied after the
        # rigid shift): the total displacement of a patch is rigid + patch shift
        sr, sc = (s.cpu().numpy() for s in mc.pwrigid_shifts)
        res["patch_shifts"] = np.stack([sr, sc], axis=-1) + rigid[:, None, None, :]
    return res


def run_pycorre_pw(movie, max_shifts, **kw):
    return run_pycorre(movie, max_shifts, pw=True, **kw)


def import_xnormcorre():
    import xarray  # noqa: F401

    import xnormcorre
    import xnormcorre.core  # noqa: F401  (the lazy attributes' modules, JAX)

    try:  # enable the persistent compilation cache (idempotent where the engine already does)
        from xnormcorre.engine import compile_cache
    except ImportError:  # an xnormcorre without it: JAX's own configuration applies
        return
    compile_cache.enable()


def run_xnormcorre(movie, max_shifts, pw=False, **_):
    """xnormcorre's defaults (template scheme included) with the case's ``max_shifts``."""
    import xarray as xr

    import xnormcorre

    da = xr.DataArray(movie, dims=("time", "y", "x"))
    ms = (max_shifts, max_shifts)
    if pw:
        res = xnormcorre.pwrigid(da, max_shifts=ms, upsample_factor=UPSAMPLE, **PW)
        return {
            "shifts": res.rigid_shifts.values if "rigid_shifts" in res else None,
            "patch_shifts": res.shifts.values,
            "corrected": res.corrected.values,
        }
    res = xnormcorre.rigid(da, max_shifts=ms, upsample_factor=UPSAMPLE)
    return {"shifts": res.shifts.values, "corrected": res.corrected.values}


def run_xnormcorre_pw(movie, max_shifts, **kw):
    return run_xnormcorre(movie, max_shifts, pw=True, **kw)


ENGINES = {
    # name: (import step, run)
    "xnormcorre": (import_xnormcorre, run_xnormcorre),
    "xnormcorre-pw": (import_xnormcorre, run_xnormcorre_pw),
    "xnormcorre@base": (import_xnormcorre, run_xnormcorre),
    "xnormcorre-pw@base": (import_xnormcorre, run_xnormcorre_pw),
    "opencv": (import_opencv, run_opencv),
    "skimage": (import_skimage, run_skimage),
    "jnormcorre": (import_jnormcorre, run_jnormcorre),
    "jnormcorre-pw": (import_jnormcorre, run_jnormcorre_pw),
    "pycorre": (import_pycorre, run_pycorre),
    "pycorre-pw": (import_pycorre, run_pycorre_pw),
}


def _patch_starts(n: int, stride: int, overlap: int) -> list[int]:
    size = stride + overlap
    return sorted({*range(0, n - size, stride), n - size})


# --------------------------------------------------------------------------- worker
def _peak_rss_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (reset at exec, unlike ``ru_maxrss``, which a
    subprocess inherits from the driver that forked it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args) -> None:
    """One fresh process: import the engine, read the movie, run it ``repeats + 1`` times.

    Timestamps are ``time.monotonic()`` (CLOCK_MONOTONIC, shared by all processes), so
    the driver measures from the moment it started this process.
    """
    t_main = time.monotonic()
    imp, run = ENGINES[args.worker]
    imp()
    t_import = time.monotonic()
    movie = np.ascontiguousarray(np.load(args.movie), dtype=np.float32)
    t_load = time.monotonic()
    times, t_first, out, first_out = [], None, None, None
    for i in range(args.repeats + 1):
        mv = movie if i == 0 else movie.copy()  # later runs on fresh memory (no reuse of the input)
        t0 = time.monotonic()
        out = run(mv, args.max_shifts)
        t1 = time.monotonic()
        times.append(t1 - t0)
        if i == 0:
            t_first, first_out = t1, out
        del mv
    rss_mb = _peak_rss_mb()
    arrays = {k: np.asarray(v) for k, v in first_out.items() if v is not None and k != "corrected"}
    if args.keep_corrected:
        arrays["corrected"] = np.asarray(first_out["corrected"], np.float32)
    np.savez(args.out + ".npz", **arrays)
    with open(args.out + ".json", "w") as f:
        json.dump(
            {
                "t_main": t_main,
                "t_import": t_import,
                "t_load": t_load,
                "t_first": t_first,
                "times": times,
                "rss_mb": rss_mb,
                "n_frames": int(len(movie)),
            },
            f,
        )


# --------------------------------------------------------------------------- driver
def _bilinear(field: np.ndarray, y: float, x: float) -> np.ndarray:
    """Sample ``field (T, H, W, 2)`` at a subpixel point."""
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    ty, tx = y - y0, x - x0
    y1, x1 = min(y0 + 1, field.shape[1] - 1), min(x0 + 1, field.shape[2] - 1)
    return (
        (1 - ty) * (1 - tx) * field[:, y0, x0]
        + (1 - ty) * tx * field[:, y0, x1]
        + ty * (1 - tx) * field[:, y1, x0]
        + ty * tx * field[:, y1, x1]
    )


def patch_truth(field: np.ndarray) -> np.ndarray:
    """True displacement at each patch centre: ``(T, Ny, Nx, 2)``."""
    h, w = field.shape[1:3]
    sy = _patch_starts(h, PW["strides"][0], PW["overlaps"][0])
    sx = _patch_starts(w, PW["strides"][1], PW["overlaps"][1])
    cy = [s + (PW["strides"][0] + PW["overlaps"][0] - 1) / 2 for s in sy]
    cx = [s + (PW["strides"][1] + PW["overlaps"][1] - 1) / 2 for s in sx]
    return np.stack([np.stack([_bilinear(field, y, x) for x in cx], 1) for y in cy], 1)


def patch_rmse_local(est: np.ndarray, truth: np.ndarray) -> float:
    """Patch RMSE after removing each patch's own median offset over time.

    A template is an average of deformed frames, so its local geometry is the movie's
    mean deformation (not zero, for a finite movie): each patch's shifts are relative
    to it, a constant per patch that no template-based method can know.  Removing it
    per patch measures the frame-to-frame error only.
    """
    d = np.asarray(est, np.float64) - np.asarray(truth, np.float64)
    d = d - np.median(d, axis=0, keepdims=True)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=-1))))


def accuracy(truth_file: Path, arrays: dict, max_shifts: int) -> dict:
    from xnormcorre.testing import shift_rmse

    acc = {"rmse": None, "patch_rmse": None, "patch_rmse_local": None, "crisp": None, "corr": None}
    truth = np.load(truth_file)
    if "true_shifts" in truth and "shifts" in arrays and "patch_shifts" not in arrays:
        # (a pw engine's rigid shift is not the true rigid motion where the deformation's
        # mean is not zero: pw engines are judged by their patch RMSE)
        acc["rmse"] = shift_rmse(arrays["shifts"], truth["true_shifts"])
    if "true_patch" in truth and "patch_shifts" in arrays:
        acc["patch_rmse"] = shift_rmse(arrays["patch_shifts"], truth["true_patch"])
        acc["patch_rmse_local"] = patch_rmse_local(arrays["patch_shifts"], truth["true_patch"])
    if "corrected" in arrays:
        acc.update(image_metrics(arrays["corrected"], max_shifts))
    return acc


def image_metrics(movie: np.ndarray, max_shifts: int) -> dict:
    from xnormcorre import metrics

    return {
        "crisp": float(metrics.crispness(movie, crop=max_shifts)),
        "corr": float(np.nanmean(metrics.correlation_with_mean(movie, crop=max_shifts).values)),
    }


def _env_for(engine: str, jax_cache: Path | None, baseline: str | None = None) -> dict:
    env = {
        k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "XNORMCORRE_JAX_CACHE")
    }
    if engine in JAX_ENGINES:
        env["XNORMCORRE_JAX_CACHE"] = str(jax_cache) if jax_cache else "off"
    if engine in BASELINE:  # the earlier tree's package first on the path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (baseline, env.get("PYTHONPATH")) if p)
    return env


def run_process(args, name, engine, movie_path: Path, out: Path, jax_cache: Path | None) -> dict | None:
    """Start one fresh worker process; its timings (driver clock) or None on failure."""
    kind, _, max_shifts, _ = CASES[name]
    python = sys.executable if engine in JAX_ENGINES else args.peers_python
    repeats = 0 if engine in SINGLE_RUN else args.repeats
    cmd = [python, str(Path(__file__).resolve()), "--worker", engine, "--movie", str(movie_path)]
    cmd += ["--max-shifts", str(max_shifts), "--repeats", str(repeats), "--out", str(out)]
    if kind == "real":
        cmd.append("--keep-corrected")
    t_launch = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            env=_env_for(engine, jax_cache, getattr(args, "baseline", None)),
        )
    except subprocess.TimeoutExpired:
        print(f"[fail] {name} / {engine}: timed out after {args.timeout} s", file=sys.stderr)
        return None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"[fail] {name} / {engine}: {last[:300]}", file=sys.stderr)
        return None
    with open(str(out) + ".json") as f:
        r = json.load(f)
    steady = r["times"][1:] if len(r["times"]) > 1 else r["times"]
    return {
        "fresh_s": r["t_first"] - t_launch,
        "startup_s": r["t_main"] - t_launch,
        "import_s": r["t_import"] - r["t_main"],
        "load_s": r["t_load"] - r["t_import"],
        "first_run_s": r["times"][0],
        "steady_s": float(min(steady)),
        "rss_mb": r["rss_mb"],
        "n_frames": r["n_frames"],
        "arrays": str(out) + ".npz",
    }


def _best(runs: list[dict], key: str) -> dict | None:
    runs = [r for r in runs if r is not None]
    return min(runs, key=lambda r: r[key]) if runs else None


def run_case(args, name: str, movie_path: Path, wanted: list[str] | None, tmp: Path) -> list[dict]:
    """Every engine of a case, ``--rounds`` times interleaved; one row per engine/variant."""
    kind, _, max_shifts, group = CASES[name]
    truth_file = Path(str(movie_path)[: -len(".npy")] + "-truth.npz")
    engines = [
        e for e in engines_for(group, bool(args.baseline)) if not wanted or e in wanted or e in BASELINE
    ]
    runs: dict[tuple[str, str], list[dict]] = {}
    load = [os.getloadavg()[0]]
    for rnd in range(max(1, args.rounds)):
        for engine in engines if rnd % 2 == 0 else engines[::-1]:
            out = tmp / f"{name}-{engine}-{rnd}"
            if engine in JAX_ENGINES:
                cache = tmp / f"jax-cache-{name}-{engine}-{rnd}"  # empty: the first-ever run
                for variant in ("first-ever", "cached"):
                    r = run_process(args, name, engine, movie_path, Path(f"{out}-{variant}"), cache)
                    runs.setdefault((engine, variant), []).append(r)
                    _log(name, engine, variant, r)
                shutil.rmtree(cache, ignore_errors=True)
            else:
                r = run_process(args, name, engine, movie_path, out, None)
                runs.setdefault((engine, ""), []).append(r)
                _log(name, engine, "", r)
            load.append(os.getloadavg()[0])
    rows = []
    for engine in engines:
        variants = ("first-ever", "cached") if engine in JAX_ENGINES else ("",)
        all_runs = [r for v in variants for r in runs.get((engine, v), []) if r is not None]
        if not all_runs:
            continue
        steady = _best(all_runs, "steady_s")
        acc = accuracy(truth_file, dict(np.load(steady["arrays"])), max_shifts)
        for v in variants:
            fresh = _best(runs.get((engine, v), []), "fresh_s")
            if fresh is None:
                continue
            n = fresh["n_frames"]
            rows.append(
                {
                    "case": name,
                    "frames": n,
                    "engine": engine,
                    "variant": v,
                    "fresh_s": fresh["fresh_s"],
                    "fresh_fps": n / fresh["fresh_s"],
                    "startup_s": fresh["startup_s"],
                    "import_s": fresh["import_s"],
                    "load_s": fresh["load_s"],
                    "first_run_s": fresh["first_run_s"],
                    "steady_fps": n / steady["steady_s"],
                    "compile_s": max(0.0, fresh["first_run_s"] - steady["steady_s"])
                    if engine not in SINGLE_RUN
                    else None,
                    "rss_mb": max(r["rss_mb"] for r in all_runs),
                    "rounds": len([r for r in runs.get((engine, v), []) if r is not None]),
                    "load_avg": [min(load), max(load)],
                    **acc,
                }
            )
    if kind == "real":
        raw = image_metrics(np.load(movie_path), max_shifts)
        rows.insert(0, {"case": name, "frames": None, "engine": "(raw)", "variant": "", **raw})
    return rows


def _log(name, engine, variant, r):
    if r is None:
        return
    n = r["n_frames"]
    tag = f"{engine} {variant}".strip()
    print(
        f"[done] {name:16s} {tag:26s} fresh {r['fresh_s']:6.1f} s ({n / r['fresh_s']:6.1f} fr/s)"
        f"  steady {n / r['steady_s']:7.1f} fr/s",
        file=sys.stderr,
    )


# --------------------------------------------------------------------------- tables
def _fmt(v, spec):
    return "–" if v is None else format(v, spec)


def _label(r):
    return f"{r['engine']} ({r['variant']})" if r.get("variant") else r["engine"]


def _ref(rows, case, engine, variant, key):
    for r in rows:
        if r["case"] == case and r["engine"] == ours_for(engine) and r.get("variant") == variant:
            return r.get(key)
    return None


def _ratio(ref, fps):
    return None if ref is None or not fps else ref / fps


def fresh_table(rows: list[dict]) -> str:
    """Fresh process: ratios of xnormcorre's cached and first-ever runs to each engine."""
    head = (
        "| case | frames | engine | process s | fr/s | xnormcorre cached ÷ engine "
        "| xnormcorre first-ever ÷ engine | start + import s | read s | first run s "
        "| RMSE px | patch RMSE px |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        if r["engine"] == "(raw)":
            continue
        peer = r["engine"] not in OURS
        cached = _ref(rows, r["case"], r["engine"], "cached", "fresh_fps") if peer else None
        first = _ref(rows, r["case"], r["engine"], "first-ever", "fresh_fps") if peer else None
        lines.append(
            f"| {r['case']} | {r['frames']} | {_label(r)} | {r['fresh_s']:.2f} | {r['fresh_fps']:.0f}"
            f" | {_fmt(_ratio(cached, r['fresh_fps']), '.2f')} | {_fmt(_ratio(first, r['fresh_fps']), '.2f')}"
            f" | {r['startup_s'] + r['import_s']:.2f} | {r['load_s']:.2f} | {r['first_run_s']:.2f}"
            f" | {_fmt(r['rmse'], '.3f')} | {_fmt(r['patch_rmse'], '.3f')} |"
        )
    return "\n".join(lines)


def steady_table(rows: list[dict]) -> str:
    """Steady state (warm, in-process), one row per engine."""
    head = (
        "| case | frames | engine | fr/s | xnormcorre ÷ engine | compile s | peak RSS MB "
        "| RMSE px | patch RMSE px | patch RMSE, per-patch offset px | crispness | mean corr |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        if r.get("variant") == "first-ever":
            continue  # one steady row per engine (the best over both variants' processes)
        if r["engine"] == "(raw)":
            lines.append(
                f"| {r['case']} | – | (raw) | – | – | – | – | – | – | – | {_fmt(r['crisp'], '.4g')}"
                f" | {_fmt(r['corr'], '.4f')} |"
            )
            continue
        peer = r["engine"] not in OURS
        ref = _ref(rows, r["case"], r["engine"], "cached", "steady_fps") if peer else None
        comp = r["compile_s"]
        if r["engine"] in JAX_ENGINES:  # the JIT: first-ever first run minus steady
            first = next(
                (
                    q["first_run_s"]
                    for q in rows
                    if q["case"] == r["case"]
                    and q["engine"] == r["engine"]
                    and q.get("variant") == "first-ever"
                ),
                None,
            )
            comp = None if first is None else max(0.0, first - r["frames"] / r["steady_fps"])
        lines.append(
            f"| {r['case']} | {r['frames']} | {r['engine']} | {r['steady_fps']:.0f}"
            f" | {_fmt(_ratio(ref, r['steady_fps']), '.2f')} | {_fmt(comp, '.1f')} | {r['rss_mb']:.0f}"
            f" | {_fmt(r['rmse'], '.3f')} | {_fmt(r['patch_rmse'], '.3f')}"
            f" | {_fmt(r.get('patch_rmse_local'), '.3f')} | {_fmt(r['crisp'], '.4g')} | {_fmt(r['corr'], '.4f')} |"
        )
    return "\n".join(lines)


def machine() -> str:
    import jax

    vers = [f"Python {platform.python_version()}", f"JAX {jax.__version__}", f"NumPy {np.__version__}"]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (
        f"{os.cpu_count()} CPU cores ({cpu}); JAX backend {jax.default_backend()} ({devices}); "
        + ", ".join(vers)
    )


def first_touch(gb: float = 0.5) -> str:
    """Seconds per GiB for a new process to write ``gb`` GiB of fresh memory.

    On bare metal this is about 0.1-0.2 s/GiB (page faults and zeroing).  On a virtual
    machine whose host takes back the memory the guest frees (free-page reporting,
    ballooning) it can be tens of times more, and every engine pays it for each GiB it
    touches (a 1000-frame 512² movie is 1 GiB, its corrected copy another): wall times
    then vary with the host's memory state, not with the engines.  Measured at the start
    and the end of a run so that every table says what the machine's memory cost."""
    code = (
        "import time, numpy as np; t = time.perf_counter(); "
        f"a = np.empty({int(gb * 2**28)}, np.float32); a[:] = 1.0; print(time.perf_counter() - t)"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        return f"{float(out.stdout.strip()) / gb:.2f} s/GiB"
    except (subprocess.SubprocessError, ValueError):
        return "not measured"


# -------------------------------------------------------------------------- profile
def profile_worker(args) -> None:
    """One fresh process: where xnormcorre's time goes on one movie (printed as JSON)."""
    t_start = time.monotonic()
    import xarray as xr

    import xnormcorre
    import xnormcorre.core  # noqa: F401

    try:
        from xnormcorre.engine import compile_cache

        compile_cache.enable()
    except ImportError:
        pass
    import jax
    from jax import monitoring

    t_import = time.monotonic() - t_start
    compiles: list[tuple[str, float]] = []
    traces: list[float] = []
    hits: list[str] = []
    monitoring.register_event_listener(
        lambda ev, **kw: hits.append(ev) if ev.endswith("/cache_hits") else None
    )

    def on_duration(event, duration, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append((str(kw.get("fun_name", "?")), duration))
        elif event in (
            "/jax/core/compile/jaxpr_trace_duration",
            "/jax/core/compile/jaxpr_to_mlir_module_duration",
        ):
            traces.append(duration)

    monitoring.register_event_duration_secs_listener(on_duration)
    out: dict = {"import_s": t_import, "shape": None}
    t0 = time.monotonic()
    movie = np.ascontiguousarray(np.load(args.movie), dtype=np.float32)
    out["npy_read_s"] = time.monotonic() - t0
    n, h, w = movie.shape
    out["shape"] = [n, h, w]
    da = xr.DataArray(movie, dims=("time", "y", "x"))
    ms = (args.max_shifts, args.max_shifts)

    def timed(label, fn):
        c0, k0, h0 = len(compiles), len(traces), len(hits)
        t = time.monotonic()
        res = fn()
        out[label + "_s"] = time.monotonic() - t
        new = compiles[c0:]
        if new:
            out[label + "_compile_s"] = sum(d for _, d in new)
            out[label + "_trace_s"] = sum(traces[k0:])
            out[label + "_programs"] = [name for name, _ in new]
            out[label + "_cache_hits"] = len(hits) - h0
        return res

    kinds = {
        "rigid": lambda tmpl=None: xnormcorre.rigid(da, max_shifts=ms, template=tmpl),
        "pw": lambda tmpl=None: xnormcorre.pwrigid(da, max_shifts=ms, template=tmpl, **PW),
    }
    corrected = None
    for kind in args.profile_kinds.split(","):
        fn = kinds[kind]
        res = timed(f"{kind}_first", fn)  # fresh process: JIT compilation (or cache loads) included
        timed(f"{kind}_warm", fn)
        tmpl = res.template.values
        timed(f"{kind}_final_first", lambda fn=fn, tmpl=tmpl: fn(tmpl))
        timed(f"{kind}_final_warm", lambda fn=fn, tmpl=tmpl: fn(tmpl))
        out[f"{kind}_template_s"] = out[f"{kind}_warm_s"] - out[f"{kind}_final_warm_s"]
        corrected = res.corrected
    out["kinds"] = args.profile_kinds.split(",")
    if args.profile_cached:  # the second process (warm cache): its first calls are what matter
        print("PROFILE " + json.dumps(out))
        return
    # TIFF I/O as a user's pipeline does it (float32 TIFF in, corrected TIFF out)
    with tempfile.TemporaryDirectory(prefix="xnc-prof-") as tmp:
        import tifffile

        src = Path(tmp) / "movie.tif"
        tifffile.imwrite(src, movie)
        t = time.monotonic()
        np.asarray(xnormcorre.open_movie(src).values)
        out["tiff_read_s"] = time.monotonic() - t
        t = time.monotonic()
        xnormcorre.to_tiff(corrected, Path(tmp) / "out.tif", progress=False)
        out["tiff_write_s"] = time.monotonic() - t
    out["fft_bound"] = fft_bound((h, w))
    out["backend"] = jax.default_backend()
    print("PROFILE " + json.dumps(out))


def fft_bound(shape: tuple[int, int], n: int = 128, reps: int = 5) -> dict:
    """ms per frame of 1 rfft2 + 2 irfft2 (the FFTs of one registered frame), best of
    ``reps``: NumPy (one thread), SciPy (workers = cores), JAX (jitted on kernel
    batches, kernel_threads() calls in flight as the engine runs them)."""
    from concurrent.futures import ThreadPoolExecutor

    import jax
    import jax.numpy as jnp
    import scipy.fft

    h, w = shape
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((n, h, w)).astype(np.float32)
    res = {}

    def best(fn):
        fn()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return 1e3 * min(ts) / n

    def np_fft():
        for f in frames:
            s = np.fft.rfft2(f)
            np.fft.irfft2(s, (h, w))
            np.fft.irfft2(s * s.conj(), (h, w))

    res["numpy_ms"] = best(np_fft)
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def sp_fft():
        s = scipy.fft.rfft2(frames, workers=workers)
        scipy.fft.irfft2(s, (h, w), workers=workers)
        scipy.fft.irfft2(s * s.conj(), (h, w), workers=workers)

    res["scipy_ms"] = best(sp_fft)
    res["scipy_workers"] = workers
    try:
        from xnormcorre.engine.api import kernel_batch, kernel_threads

        b, threads = kernel_batch(shape), kernel_threads()
    except ImportError:
        b, threads = 16, 2

    @jax.jit
    def jfft(x):
        s = jnp.fft.rfft2(x)
        return jnp.fft.irfft2(s, (h, w)), jnp.fft.irfft2(s * s.conj(), (h, w))

    batches = [jnp.asarray(frames[i : i + b]) for i in range(0, n - b + 1, b)]
    pool = ThreadPoolExecutor(threads)

    def j_fft():
        list(pool.map(lambda x: jax.block_until_ready(jfft(x)), batches))

    res["jax_ms"] = best(j_fft) * n / (len(batches) * b)
    res["jax_batch"], res["jax_threads"] = b, threads
    pool.shutdown()
    return res


def run_profile(args, cache: Path, data_dir: Path) -> str:
    sizes = [int(s) for s in args.profile_sizes.split(",")]
    rows = []
    for size in sizes:
        name = {256: "rigid-256", 512: "rigid-512"}.get(size)
        if name is None:
            print(f"[skip] profile size {size}: no case (256 or 512)", file=sys.stderr)
            continue
        path = prepare(name, cache, data_dir, args.quick, args.frames)
        pair = []
        with tempfile.TemporaryDirectory(prefix="xnc-prof-cache-") as jc:
            for extra in ([], ["--profile-cached"]):  # empty cache, then the cache it filled
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--profile-worker",
                    "--movie",
                    str(path),
                ]
                cmd += ["--max-shifts", str(CASES[name][2]), "--profile-kinds", args.profile_kinds, *extra]
                env = _env_for("xnormcorre", Path(jc))
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
                if proc.returncode != 0:
                    print(f"[fail] profile {size}: {proc.stderr.strip()[-500:]}", file=sys.stderr)
                    break
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROFILE ")][-1]
                pair.append(json.loads(line[len("PROFILE ") :]))
                if not extra:
                    files = [f for f in Path(jc).rglob("*") if f.is_file()]
                    pair[0]["cache_entries"] = len([f for f in files if f.name.endswith("-cache")])
                    pair[0]["cache_bytes"] = sum(f.stat().st_size for f in files)
        if len(pair) == 2:
            pair[0]["cached"] = pair[1]
            rows.append(pair[0])
    return profile_table(rows)


def profile_table(rows: list[dict]) -> str:
    lines = [
        "| movie | step | s | ms/frame | note |",
        "|---|---|---|---|---|",
    ]
    for p in rows:
        n, h, w = p["shape"]
        mv = f"{n}×{h}×{w}"

        def add(step, s, note="", mv=mv, n=n):
            if s is None:
                return
            lines.append(f"| {mv} | {step} | {s:.2f} | {1e3 * s / n:.2f} | {note} |")

        add("import xnormcorre (+ JAX, xarray)", p["import_s"])
        add("read the movie (.npy)", p["npy_read_s"])
        add("read the movie (TIFF, open_movie)", p.get("tiff_read_s"))
        add("write corrected (TIFF, to_tiff)", p.get("tiff_write_s"))
        if "cache_entries" in p:
            lines.append(
                f"| {mv} | compilation cache after the first-ever process | – | – | "
                f"{p['cache_entries']} entries, {p['cache_bytes'] / 1e6:.1f} MB |"
            )
        c = p.get("cached", {})
        add("import xnormcorre, cached process", c.get("import_s"))
        for kind in p["kinds"]:
            label = {"rigid": "rigid", "pw": "pwrigid"}[kind]
            progs = p.get(f"{kind}_first_programs", []) + p.get(f"{kind}_final_first_programs", [])
            add(
                f"{label}(): first call, empty cache (first-ever)",
                p[f"{kind}_first_s"],
                f"JIT {p.get(f'{kind}_first_compile_s', 0.0):.2f} s backend compile + "
                f"{p.get(f'{kind}_first_trace_s', 0.0):.2f} s tracing/lowering; "
                f"{len(progs)} programs: {', '.join(progs) or 'none'}",
            )
            if f"{kind}_first_s" in c:
                add(
                    f"{label}(): first call, cached process",
                    c[f"{kind}_first_s"],
                    f"{c.get(f'{kind}_first_cache_hits', 0)} cache hits loaded in "
                    f"{c.get(f'{kind}_first_compile_s', 0.0):.2f} s + "
                    f"{c.get(f'{kind}_first_trace_s', 0.0):.2f} s tracing/lowering; saved "
                    f"{p[f'{kind}_first_s'] - c[f'{kind}_first_s']:.2f} s",
                )
            add(f"{label}(): warm", p[f"{kind}_warm_s"], f"{n / p[f'{kind}_warm_s']:.0f} fr/s")
            add(f"{label}(): template estimation (warm)", p[f"{kind}_template_s"], "warm total − final pass")
            add(
                f"{label}(): final pass (warm, template given)",
                p[f"{kind}_final_warm_s"],
                f"{n / p[f'{kind}_final_warm_s']:.0f} fr/s",
            )
        fb = p["fft_bound"]
        for key, label in (
            ("numpy_ms", "NumPy, 1 thread"),
            ("scipy_ms", f"scipy.fft, workers={fb.get('scipy_workers')}"),
            ("jax_ms", f"JAX, batch {fb.get('jax_batch')}, {fb.get('jax_threads')} calls in flight"),
        ):
            ms = fb[key]
            lines.append(
                f"| {mv} | FFT bound: 1 rfft2 + 2 irfft2 ({label}) | – | {ms:.3f} | {1e3 / ms:.0f} fr/s |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--peers-python", default="/tmp/peers/bin/python", help="interpreter of the peers' virtualenv"
    )
    ap.add_argument(
        "--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, from: {', '.join(CASES)}"
    )
    ap.add_argument("--engines", default=None, help="comma-separated engines (default: all that apply)")
    ap.add_argument(
        "--baseline",
        default=None,
        help="source tree of an earlier xnormcorre (e.g. a git worktree of an older commit): its engines "
        "run beside ours as xnormcorre@base / xnormcorre-pw@base, and the ratio columns give the speed-up",
    )
    ap.add_argument("--repeats", type=int, default=1, help="steady-state runs after each process's first run")
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="times each case's engines run, interleaved (order reversed every other round); "
        "each engine's best fresh process and best steady run are reported",
    )
    ap.add_argument("--frames", type=int, default=None, help="override every case's number of frames")
    ap.add_argument(
        "--quick", action="store_true", help=f"{QUICK_FRAMES} frames, frame sides halved, one round"
    )
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "xnormcorre-bench"))
    ap.add_argument("--data-dir", default=os.environ.get("XNORMCORRE_DATA", str(DEFAULT_DATA)))
    ap.add_argument("--markdown", default=None, help="also write the tables to this file")
    ap.add_argument("--json", default=None, help="also write every row's measurements to this file")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per process")
    ap.add_argument("--profile", action="store_true", help="profile xnormcorre instead of comparing")
    ap.add_argument("--profile-sizes", default="256,512", help="frame sides to profile (256, 512)")
    ap.add_argument("--profile-kinds", default="rigid,pw", help="what to profile: rigid, pw or both")
    # worker modes (internal)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--profile-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--profile-cached", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--movie", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--max-shifts", type=int, default=6, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--keep-corrected", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.profile_worker:
        profile_worker(args)
        return 0
    if args.quick:
        args.rounds = 1
    cache, data_dir = Path(args.cache_dir), Path(args.data_dir)
    t_start = time.perf_counter()
    header = [
        f"command: {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}",
        f"machine: {machine()}",
        f"load average at start: {os.getloadavg()[0]:.2f}",
        f"fresh memory at start (a new process writing 0.5 GiB): {first_touch()}",
    ]
    if args.profile:
        out = run_profile(args, cache, data_dir)
        text = "\n".join(header) + f"\nwall time {time.perf_counter() - t_start:.0f} s\n\n" + out
    else:
        wanted = args.engines.split(",") if args.engines else None
        rows: list[dict] = []
        with tempfile.TemporaryDirectory(prefix="xnc-bench-") as tmp:
            for name in args.cases.split(","):
                if name not in CASES:
                    ap.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
                path = prepare(name, cache, data_dir, args.quick, args.frames)
                if path is not None:
                    rows.extend(run_case(args, name, path, wanted, Path(tmp)))
        header.append(f"load average at end: {os.getloadavg()[0]:.2f}")
        header.append(f"fresh memory at end: {first_touch()}")
        text = (
            "\n".join(header)
            + f"\nwall time {time.perf_counter() - t_start:.0f} s\n\n### Fresh process\n\n"
            + fresh_table(rows)
            + "\n\n### Steady state\n\n"
            + steady_table(rows)
        )
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1, default=float) + "\n")
    print("\n" + text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
