"""Side-by-side benchmark: xnormcorre vs OpenCV, scikit-image and jnormcorre (issue 7, part B).

Runs every engine on the same inputs in one run and prints one table: steady-state
frames/s (end to end, template estimation included, file I/O excluded), JIT compile time
(first call minus steady state), peak RSS, rigid/patch shift RMSE against the ground truth
of synthetic movies, crispness and mean correlation with the mean image on real movies,
and xnormcorre's speed as a ratio to each peer.

It installs nothing.  Each engine runs in its own subprocess (so that its peak RSS and
compile time are its own): xnormcorre with this interpreter, the peers with
``--peers-python`` (a separate virtualenv, see ``benchmarks/README.md``).  Peers that are
not importable there are reported as "n/a".

Usage::

    python benchmarks/compare.py --peers-python /tmp/peers/bin/python
    python benchmarks/compare.py --quick            # smaller movies, one steady-state repeat
    python benchmarks/compare.py --cases rigid-small-256 --engines xnormcorre,opencv

Synthetic movies are generated once with ``xnormcorre.datasets.synthetic_movie`` and
cached (``--cache-dir``, default ``~/.cache/xnormcorre-bench``); generation is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"

# ----------------------------------------------------------------------------- cases
# Every engine gets the same parameters: max_shifts, niter (template iterations: 1),
# frames_per_split 1000 (all frames of these movies in one split), upsample 10, and for
# pw-rigid strides/overlaps/max_deviation_rigid.
PW = {"strides": (48, 48), "overlaps": (24, 24), "max_deviation_rigid": 3}

CASES = {
    # name: (kind, generator kwargs, max_shifts, engines group)
    "rigid-small-256": ("syn", {"n_frames": 300, "shape": (256, 256), "max_shift": 2.0}, 6, "rigid"),
    "rigid-small-512": ("syn", {"n_frames": 160, "shape": (512, 512), "max_shift": 2.0}, 6, "rigid"),
    "walk10-256": ("syn", {"n_frames": 300, "shape": (256, 256), "max_shift": 10.0}, 12, "rigid"),
    "jumps-256": (
        "syn",
        {"n_frames": 300, "shape": (256, 256), "max_shift": 6.0, "motion": "jumps"},
        8,
        "rigid",
    ),
    "lowsnr-hot-256": (
        "syn",
        {"n_frames": 300, "shape": (256, 256), "max_shift": 3.0, "photons": 0.3, "read_noise": 6.0},
        6,
        "rigid",
    ),
    "nonrigid-256": (
        "syn",
        {"n_frames": 200, "shape": (256, 256), "max_shift": 3.0, "nonrigid": 2.0},
        6,
        "pw",
    ),
    "neurofinder-real": ("real", {"file": "neurofinder_crop_480x256x256.tif"}, 6, "all"),
}
QUICK = {"n_frames": 100}
CLEAN = ("rigid-small-256", "rigid-small-512", "walk10-256", "jumps-256")
RIGID_ENGINES = ["xnormcorre", "opencv", "skimage", "jnormcorre"]
PW_ENGINES = ["xnormcorre-pw", "jnormcorre-pw"]
PEERS = {"opencv", "skimage", "jnormcorre", "jnormcorre-pw"}
# NumPy-speed peers with nothing to compile: one run (keeps a full run under ~15 min)
SINGLE_RUN = {"skimage"}


def engines_for(group: str) -> list[str]:
    if group == "rigid":
        return RIGID_ENGINES
    if group == "pw":
        return RIGID_ENGINES + PW_ENGINES
    return RIGID_ENGINES + PW_ENGINES


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


def prepare(name: str, cache: Path, data_dir: Path, quick: bool) -> Path | None:
    """Write the case's inputs to ``cache/<name>.npz`` (once) and return the path."""
    kind, kw, _, group = CASES[name]
    kw = dict(kw)
    if quick and kind == "syn":
        kw.update(QUICK)
    tag = "-quick" if quick and kind == "syn" else ""
    path = cache / f"{name}{tag}.npz"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if kind == "real":
        src = data_dir / kw["file"]
        if not src.exists():
            print(f"[skip] {name}: {src} not found", file=sys.stderr)
            return None
        import tifffile

        movie = tifffile.imread(src).astype(np.float32)
        np.savez(path, movie=movie)
    else:
        import xnormcorre

        ds = xnormcorre.datasets.synthetic_movie(**kw, seed=0, as_dataset=True)
        movie = ds.movie.values.astype(np.float32)
        if name.startswith("lowsnr-hot"):
            movie = _hot_dead(movie)
        out = {"movie": movie, "true_shifts": ds.true_shifts.values.astype(np.float32)}
        if "true_field" in ds:
            out["true_field"] = ds.true_field.values.astype(np.float32)
        np.savez(path, **out)
    print(f"[prep] {name}: {movie.shape} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


# -------------------------------------------------------------------------- engines
def _template_init(movie: np.ndarray, n_init: int = 100) -> np.ndarray:
    idx = np.unique(np.linspace(0, len(movie) - 1, min(len(movie), n_init)).round().astype(int))
    return np.median(movie[idx], axis=0).astype(np.float32)


def _simple_pipeline(movie, register, niter=1):
    """Template = median of <= 100 evenly spaced frames; ``niter`` times: register every
    frame and take the mean of the corrected frames; then the final pass."""
    tmpl = _template_init(movie)
    for _ in range(niter):
        _, corrected = register(movie, tmpl)
        tmpl = corrected.mean(0).astype(np.float32)
    return register(movie, tmpl)


def run_opencv(movie, max_shifts, **_):
    import cv2

    h, w = movie.shape[1:]
    win = cv2.createHanningWindow((w, h), cv2.CV_32F)

    def register(mv, tmpl):
        shifts = np.empty((len(mv), 2), np.float32)
        out = np.empty_like(mv)
        for i, f in enumerate(mv):
            (dx, dy), _ = cv2.phaseCorrelate(tmpl, f, win)
            dy = float(np.clip(dy, -max_shifts, max_shifts))
            dx = float(np.clip(dx, -max_shifts, max_shifts))
            shifts[i] = (dy, dx)
            m = np.float32([[1, 0, dx], [0, 1, dy]])  # out(r) = f(r + shift)
            out[i] = cv2.warpAffine(
                f, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
            )
        return shifts, out

    shifts, corrected = _simple_pipeline(movie, register)
    return {"shifts": shifts, "corrected": corrected}


def run_skimage(movie, max_shifts, **_):
    from scipy.ndimage import fourier_shift
    from skimage.filters import window
    from skimage.registration import phase_cross_correlation

    # Hann window on the estimate's inputs (as OpenCV's phaseCorrelate): without it the
    # frame border's wrap-around discontinuity pins the phase-correlation peak at zero.
    win = window("hann", movie.shape[1:]).astype(np.float32)

    def register(mv, tmpl):
        shifts = np.empty((len(mv), 2), np.float32)
        out = np.empty_like(mv)
        tw = np.fft.fft2(tmpl * win)
        for i, f in enumerate(mv):
            s, _, _ = phase_cross_correlation(tw, np.fft.fft2(f * win), upsample_factor=10, space="fourier")
            s = np.clip(-s, -max_shifts, max_shifts)  # skimage: shift that registers f to tmpl
            shifts[i] = s
            out[i] = np.real(np.fft.ifft2(fourier_shift(np.fft.fft2(f), -s)))
        return shifts, out

    shifts, corrected = _simple_pipeline(movie, register)
    return {"shifts": shifts, "corrected": corrected}


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
                ms, 10, kw["max_deviation_rigid"], add,
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


def run_xnormcorre(movie, max_shifts, pw=False, **_):
    import xarray as xr

    import xnormcorre

    da = xr.DataArray(movie, dims=("time", "y", "x"))
    common = {"max_shifts": (max_shifts, max_shifts), "frames_per_split": 1000}
    if pw:
        res = xnormcorre.pwrigid(da, niter_rig=1, niter_els=1, **PW, **common)
        return {
            "shifts": res.rigid_shifts.values if "rigid_shifts" in res else None,
            "patch_shifts": res.shifts.values,
            "corrected": res.corrected.values,
        }
    res = xnormcorre.rigid(da, niter=1, **common)
    return {"shifts": res.shifts.values, "corrected": res.corrected.values}


def run_xnormcorre_pw(movie, max_shifts, **kw):
    return run_xnormcorre(movie, max_shifts, pw=True, **kw)


RUNNERS = {
    "xnormcorre": run_xnormcorre,
    "xnormcorre-pw": run_xnormcorre_pw,
    "opencv": run_opencv,
    "skimage": run_skimage,
    "jnormcorre": run_jnormcorre,
    "jnormcorre-pw": run_jnormcorre_pw,
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
    """Run one engine on one case ``repeats + 1`` times; write timings and outputs."""
    if args.compile_cache:
        import jax

        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    data = np.load(args.case_file)
    movie = np.ascontiguousarray(data["movie"], dtype=np.float32)
    run = RUNNERS[args.worker]
    times = []
    out = None
    for _ in range(args.repeats + 1):
        mv = movie.copy()  # each run gets fresh memory (no engine may reuse its input)
        t0 = time.perf_counter()
        out = run(mv, args.max_shifts)
        times.append(time.perf_counter() - t0)
        del mv
    rss_mb = _peak_rss_mb()
    arrays = {k: np.asarray(v) for k, v in out.items() if v is not None and k != "corrected"}
    if args.keep_corrected:
        arrays["corrected"] = np.asarray(out["corrected"], np.float32)
    np.savez(args.out + ".npz", **arrays)
    with open(args.out + ".json", "w") as f:
        json.dump({"times": times, "rss_mb": rss_mb, "n_frames": int(len(movie))}, f)


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


def evaluate(name: str, engine: str, case_file: Path, result: dict, arrays: dict, max_shifts: int) -> dict:
    from xnormcorre.testing import shift_rmse

    times = result["times"]
    n = result["n_frames"]
    # best steady-state run: on a shared machine load only ever slows a run down
    warm = float(np.min(times[1:])) if len(times) > 1 else times[0]
    row = {
        "case": name,
        "engine": engine,
        "fps": n / warm,
        "compile_s": max(0.0, times[0] - warm) if len(times) > 1 else None,
        "rss_mb": result["rss_mb"],
        "rmse": None,
        "patch_rmse": None,
        "patch_rmse_local": None,
        "crisp": None,
        "corr": None,
    }
    data = np.load(case_file)
    if "true_shifts" in data:
        if "shifts" in arrays:
            row["rmse"] = shift_rmse(arrays["shifts"], data["true_shifts"])
        if "patch_shifts" in arrays and "true_field" in data:
            truth = patch_truth(data["true_field"])
            row["patch_rmse"] = shift_rmse(arrays["patch_shifts"], truth)
            row["patch_rmse_local"] = patch_rmse_local(arrays["patch_shifts"], truth)
    if "corrected" in arrays:
        from xnormcorre import metrics

        c = arrays["corrected"]
        row["crisp"] = metrics.crispness(c, crop=max_shifts)
        row["corr"] = float(np.nanmean(metrics.correlation_with_mean(c, crop=max_shifts).values))
    return row


def run_one(args, name: str, engine: str, case_file: Path, tmp: Path) -> dict | None:
    kind, _, max_shifts, _ = CASES[name]
    python = args.peers_python if engine in PEERS else sys.executable
    out = tmp / f"{name}-{engine}"
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        engine,
        "--case-file",
        str(case_file),
        "--max-shifts",
        str(max_shifts),
        "--repeats",
        str(0 if engine in SINGLE_RUN else args.repeats),
        "--out",
        str(out),
    ]
    if kind == "real":
        cmd.append("--keep-corrected")
    if args.compile_cache and engine.startswith("xnormcorre"):
        cmd += ["--compile-cache", args.compile_cache]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"[fail] {name} / {engine}: {last[:200]}", file=sys.stderr)
        return None
    with open(str(out) + ".json") as f:
        result = json.load(f)
    arrays = dict(np.load(str(out) + ".npz"))
    row = evaluate(name, engine, case_file, result, arrays, max_shifts)
    print(
        f"[done] {name:18s} {engine:14s} {row['fps']:8.1f} fr/s  ({time.perf_counter() - t0:.0f} s)",
        file=sys.stderr,
    )
    return row


def raw_row(name: str, case_file: Path, max_shifts: int) -> dict:
    from xnormcorre import metrics

    movie = np.load(case_file)["movie"]
    return {
        "case": name,
        "engine": "(raw)",
        "fps": None,
        "compile_s": None,
        "rss_mb": None,
        "rmse": None,
        "patch_rmse": None,
        "patch_rmse_local": None,
        "crisp": metrics.crispness(movie, crop=max_shifts),
        "corr": float(np.nanmean(metrics.correlation_with_mean(movie, crop=max_shifts).values)),
    }


def _fmt(v, spec):
    return "–" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    """Markdown table; ``x ratio`` = xnormcorre fr/s / this engine's fr/s (same case;
    rigid engines compare with xnormcorre rigid, pw engines with xnormcorre-pw)."""
    ours = {(r["case"], r["engine"]): r["fps"] for r in rows if r["engine"].startswith("xnormcorre")}
    head = (
        "| case | engine | fr/s | xnormcorre ÷ engine | compile s | peak RSS MB | rigid RMSE px "
        "| patch RMSE px | patch RMSE, per-patch offset px | crispness | mean corr |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        ref = ours.get((r["case"], "xnormcorre-pw" if r["engine"].endswith("-pw") else "xnormcorre"))
        ratio = (
            None if (ref is None or not r["fps"] or r["engine"].startswith("xnormcorre")) else ref / r["fps"]
        )
        lines.append(
            f"| {r['case']} | {r['engine']} | {_fmt(r['fps'], '.0f')} | {_fmt(ratio, '.2f')}"
            f" | {_fmt(r['compile_s'], '.1f')} | {_fmt(r['rss_mb'], '.0f')} | {_fmt(r['rmse'], '.3f')}"
            f" | {_fmt(r['patch_rmse'], '.3f')} | {_fmt(r.get('patch_rmse_local'), '.3f')}"
            f" | {_fmt(r['crisp'], '.4g')} | {_fmt(r['corr'], '.4f')} |"
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
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), accelerator: none (JAX backend {jax.default_backend()}); "
        + ", ".join(vers)
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--peers-python", default="/tmp/peers/bin/python", help="interpreter of the peers' virtualenv"
    )
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--engines", default=None, help="comma-separated engines (default: all that apply)")
    ap.add_argument(
        "--repeats", type=int, default=2, help="steady-state runs after the first (compiling) one"
    )
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "xnormcorre-bench"))
    ap.add_argument("--data-dir", default=os.environ.get("XNORMCORRE_DATA", str(DEFAULT_DATA)))
    ap.add_argument(
        "--compile-cache", default=None, help="opt-in persistent JAX compilation cache for xnormcorre"
    )
    ap.add_argument(
        "--quick", action="store_true", help="100-frame synthetic movies, one steady-state repeat"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="times each case's engines are run, interleaved (order reversed every other "
        "round); each engine's best round is reported",
    )
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    ap.add_argument("--timeout", type=int, default=900)
    # worker mode (internal)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--case-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--max-shifts", type=int, default=6, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--keep-corrected", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.quick:
        args.repeats = 1
        args.rounds = 1
    cache = Path(args.cache_dir)
    wanted = args.engines.split(",") if args.engines else None
    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xnc-bench-") as tmp:
        for name in args.cases.split(","):
            path = prepare(name, cache, Path(args.data_dir), args.quick)
            if path is None:
                continue
            kind, _, max_shifts, group = CASES[name]
            if kind == "real":
                rows.append(raw_row(name, path, max_shifts))
            engines = [e for e in engines_for(group) if not wanted or e in wanted]
            best: dict[str, dict] = {}
            for r in range(max(1, args.rounds)):
                for engine in engines if r % 2 == 0 else engines[::-1]:
                    row = run_one(args, name, engine, path, Path(tmp))
                    if row is not None and (engine not in best or row["fps"] > best[engine]["fps"]):
                        best[engine] = row
            rows.extend(best[e] for e in engines if e in best)
    out = table(rows)
    print(f"\n{machine()}\nwall time {time.perf_counter() - t_start:.0f} s\n")
    print(out)
    if args.markdown:
        Path(args.markdown).write_text(out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
