"""Cost of the default template step relative to the final registration pass.

For ``xnormcorre.rigid`` and ``xnormcorre.pwrigid`` with default parameters, on
simulated two-photon movies (:func:`xnormcorre.testing.simulate.simulate_movie`, rigid
walk plus a smooth non-rigid deformation), this times a whole warm run and, inside the
same run, its template step (the run's own ``template_for_run`` call, timed by a
wrapper); the final pass is the rest.  It also reports the shift RMSE against the truth
(rigid shifts; for pwrigid also the patch shifts, offset removed), so that a cheaper
template can be checked for equal accuracy.

Movies are simulated once and cached in ``/tmp`` as ``.npy``.  Usage::

    python benchmarks/template_cost.py [--repeat 2] [--kinds rigid,pw]
        [--max-template-frames N] [--movies 2000x256,1000x512] [--stages]

``--stages`` adds the process CPU milliseconds of each stage of the template step (the functions the
template module calls: sensor-defect search, scale, frame similarity, noise fit, the sample's
registrations; stages nest: ``survey`` holds ``defects``, ``find_defects`` and ``scale_for``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import os
import time
from pathlib import Path

import numpy as np

_T0 = time.perf_counter()
import xnormcorre  # noqa: E402
from xnormcorre.engine import template as _engine_template  # noqa: E402
from xnormcorre.engine import template_sample as _engine_sample  # noqa: E402
from xnormcorre.testing.crlb import rmse  # noqa: E402
from xnormcorre.testing.simulate import simulate_movie  # noqa: E402

IMPORT_S = time.perf_counter() - _T0  # import of the package (for --fresh)

CACHE = Path(os.environ.get("XNORMCORRE_BENCH_CACHE", "/tmp"))
# the modules (``xnormcorre.core.rigid`` is also the name of the function)
_rigid, _pw = (importlib.import_module(f"xnormcorre.core.{m}") for m in ("rigid", "pwrigid"))
STRIDES, OVERLAPS = (96, 96), (32, 32)  # pwrigid defaults


def movie(n_frames: int, size: int):
    """``(frames, rigid shifts, patch shifts)`` of a cached simulated movie."""
    stem = CACHE / f"xnc_tcost_{n_frames}x{size}"
    files = [Path(f"{stem}_{k}.npy") for k in ("frames", "shifts", "patch")]
    for longer in sorted(CACHE.glob(f"xnc_tcost_*x{size}_frames.npy")):
        # the first frames of a longer cached movie of the same size (a walk: a movie itself)
        n_long = int(longer.name.split("_")[2].split("x")[0])
        if n_long > n_frames and not all(f.exists() for f in files):
            parts = [
                np.load(Path(str(longer).replace("_frames", f"_{k}")), mmap_mode="r")
                for k in ("frames", "shifts", "patch")
            ]
            return tuple(np.array(a[:n_frames]) for a in parts)
    if not all(f.exists() for f in files):
        sim = simulate_movie(
            (size, size),
            n_frames,
            motion="walk",
            max_shift=4.0,
            nonrigid=1.0,
            activity=0.5,
            oversample=2 if size <= 256 else 1,  # 512²: a lighter rendering
            seed=0,
        )
        grid = xnormcorre.patch_grid((size, size), STRIDES, OVERLAPS)
        yb = list(zip(grid.patch_y_start.values, grid.patch_y_stop.values, strict=True))
        xb = list(zip(grid.patch_x_start.values, grid.patch_x_stop.values, strict=True))
        for f, a in zip(files, (sim.frames, sim.shifts, sim.patch_shifts(yb, xb)), strict=True):
            np.save(f, a)
    return tuple(np.load(f) for f in files)


class Timed:
    """Wraps a module's ``template_for_run`` and records the seconds of its last call."""

    def __init__(self, module):
        self.module, self.orig, self.seconds, self.cpu = module, module.template_for_run, 0.0, 0.0

    def __enter__(self):
        def timed(*a, **k):
            t, c = time.perf_counter(), time.process_time()
            out = self.orig(*a, **k)
            self.seconds, self.cpu = time.perf_counter() - t, time.process_time() - c
            return out

        self.module.template_for_run = timed
        return self

    def __exit__(self, *exc):
        self.module.template_for_run = self.orig


#: stage label -> name of the function the template modules call
STAGES = {
    "survey": "survey",
    "defects": "_sensor_defects",
    "find_defects": "find_defects",
    "scale_for": "scale_for",
    "cluster": "densest_cluster",
    "median": "nanmedian",
    "first pass (sample)": "_first_pass",
    "pass (sample)": "_pass",
    "noise (register+fit)": "_noise",
    "noise fit": "fit_noise_model",
    "calibrate (final)": "calibrate_survey",
}


@contextlib.contextmanager
def stage_timer():
    """Time the template modules' stages (seconds per label, summed over calls): each
    stage's function is wrapped in every template module that calls it."""
    acc = collections.defaultdict(float)
    modules = (_engine_template, _engine_sample)
    orig = {(m, name): getattr(m, name) for m in modules for name in STAGES.values() if hasattr(m, name)}

    def timed(label, f):
        def g(*a, **k):
            t = time.process_time()
            try:
                return f(*a, **k)
            finally:
                acc[label] += time.process_time() - t

        return g

    label_of = {name: label for label, name in STAGES.items()}
    for (m, name), f in orig.items():
        setattr(m, name, timed(label_of[name], f))
    try:
        yield acc
    finally:
        for (m, name), f in orig.items():
            setattr(m, name, f)


def run(case: str, frames, shifts, patch, kw) -> dict:
    pw = case.startswith("pw")
    func, module = (xnormcorre.pwrigid, _pw) if pw else (xnormcorre.rigid, _rigid)
    with Timed(module) as tm:
        t, c = time.perf_counter(), time.process_time()
        res = func(frames, **kw)
        total, total_cpu = time.perf_counter() - t, time.process_time() - c
    rigid_key = "rigid_shifts" if pw else "shifts"
    out = {
        "template_s": tm.seconds,
        "final_s": total - tm.seconds,
        "template_cpu": tm.cpu,
        "final_cpu": total_cpu - tm.cpu,
        "rmse_rigid": float(rmse(res[rigid_key].values, shifts)),
    }
    if pw:
        n = len(frames)
        per_patch = rmse(res.shifts.values.reshape(n, -1, 2), patch.reshape(n, -1, 2))
        out["rmse_patch"] = float(np.sqrt(np.mean(np.square(per_patch))))
    return out


def fresh(case: str, spec: str, kw) -> None:
    """One default run in this (fresh) process: seconds of the run and the compiled programs.

    Every compilation JAX logs (``jax_log_compiles``: one per miss of its in-memory cache, i.e. one
    per distinct program: function, shapes and static arguments) is counted; with the persistent
    compilation cache filled, a program is loaded from disk instead of compiled."""
    import logging

    import jax

    names: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("Compiling "):
                names.append(msg.split(" with global shapes")[0][len("Compiling ") :])

    jax.config.update("jax_log_compiles", True)
    logging.getLogger("jax").addHandler(Grab())
    n, size = (int(v) for v in spec.split("x"))
    frames, shifts, patch = movie(n, size)
    r = run(case, frames, shifts, patch, kw)
    distinct = collections.Counter(names)
    extra = f" patch RMSE {r['rmse_patch']:.5f}" if "rmse_patch" in r else ""
    print(
        f"fresh {case} {spec}: import {IMPORT_S:.2f} s, run {r['template_s'] + r['final_s']:.2f} s "
        f"(template {r['template_s']:.2f} s wall / {r['template_cpu']:.2f} s CPU, final "
        f"{r['final_s']:.2f} / {r['final_cpu']:.2f}); rigid RMSE {r['rmse_rigid']:.5f}{extra}; "
        f"{len(names)} compiled programs (by function: {dict(distinct)})",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--movies", default="2000x256,1000x512")
    ap.add_argument("--kinds", default="rigid,pw")
    ap.add_argument("--max-template-frames", default=None, help="override (int or 'none')")
    ap.add_argument("--stages", action="store_true", help="per-stage ms of the template step")
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="one run of the first movie and kind in this process (run it in a new process): "
        "seconds and the compiled programs",
    )
    args = ap.parse_args()
    kw = {}
    if args.max_template_frames is not None:
        v = args.max_template_frames
        kw["max_template_frames"] = None if v.lower() == "none" else int(v)
    if args.fresh:
        fresh(args.kinds.split(",")[0], args.movies.split(",")[0], kw)
        return
    print(f"xnormcorre {xnormcorre.__version__} from {xnormcorre.__file__}; load {os.getloadavg()}")
    for spec in args.movies.split(","):
        n, size = (int(v) for v in spec.split("x"))
        frames, shifts, patch = movie(n, size)
        for kind in args.kinds.split(","):
            case = f"{kind}{size}"
            run(case, frames[:64], shifts[:64], patch[:64], kw)  # compile the small shapes
            run(case, frames, shifts, patch, kw)  # warm: compile every shape of the run
            for _ in range(args.repeat):
                with stage_timer() if args.stages else contextlib.nullcontext({}) as acc:
                    r = run(case, frames, shifts, patch, kw)
                extra = f" patch RMSE {r['rmse_patch']:.5f}" if "rmse_patch" in r else ""
                print(
                    f"{kind:5s} {n}x{size}^2: template {r['template_s']:6.2f} s, final pass {r['final_s']:6.2f} s, "
                    f"ratio {r['template_s'] / r['final_s']:5.1%}; CPU template {r['template_cpu']:6.2f} s, "
                    f"final {r['final_cpu']:6.2f} s, ratio {r['template_cpu'] / r['final_cpu']:5.1%}; rigid RMSE {r['rmse_rigid']:.5f}{extra} px; "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                if acc:
                    print(
                        "    stages ms: " + ", ".join(f"{k} {v * 1e3:.0f}" for k, v in acc.items()),
                        flush=True,
                    )


if __name__ == "__main__":
    main()
