"""Per-frame latency of the single-frame path (``Corrector.correct_frame``) and the accuracy of ``online``.

Run by hand, never as a timed test::

    python benchmarks/latency.py             # the full table (a few minutes on 2 cores)
    python benchmarks/latency.py --quick     # fewer frames
    python benchmarks/latency.py --profile   # also where a frame's time goes

For each case a corrector is calibrated on a simulated movie
(:func:`xnormcorre.testing.simulate.simulate_movie`), warmed up (compilation and the
first calls are not timed), then ``correct_frame`` -- shift estimate and corrected
frame, NumPy in and out -- is timed frame by frame with ``time.perf_counter``.  Prints a
markdown table of p50 / p99 / p99.9 against the targets, then the shift RMSE (px,
against the simulated truth, constant offset removed) of ``online()`` next to the
batch ``rigid()`` on a 2000-frame walk.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import xnormcorre
from xnormcorre.testing.crlb import rmse
from xnormcorre.testing.simulate import simulate_movie

#: (name, frame side, Corrector keywords, target p50 ms or None, target p99 ms)
CASES = [
    ("rigid 256²", 256, {"max_shifts": 8}, 1.0, 2.0),
    ("rigid 512²", 512, {"max_shifts": 8}, None, 8.0),
    ("pw-rigid 256²", 256, {"max_shifts": 8, "strides": (96, 96), "overlaps": (32, 32)}, None, 10.0),
]


def _corrector(n: int, kw: dict, n_frames: int):
    sim = simulate_movie((n, n), n_frames, max_shift=4.0, seed=0, oversample=2)
    corr = xnormcorre.Corrector(sim.template, **kw).calibrate(sim.frames)
    return corr, sim


def _timings(fn, frames: np.ndarray, n_calls: int, warmup: int) -> np.ndarray:
    for i in range(warmup):
        fn(frames[i % len(frames)])
    out = np.empty(n_calls)
    for i in range(n_calls):
        f = frames[i % len(frames)]
        t0 = time.perf_counter()
        fn(f)
        out[i] = time.perf_counter() - t0
    return out * 1e3


def _fmt(target, value) -> str:
    if target is None:
        return f"{value:.2f}"
    return f"{value:.2f} {'✓' if value <= target else '✗'} (≤ {target:g})"


def latency_table(n_calls: int, warmup: int) -> list[str]:
    rows = [
        "| case | call | p50 ms | p99 ms | p99.9 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, n, kw, t50, t99 in CASES:
        corr, sim = _corrector(n, kw, 64)
        frames = np.ascontiguousarray(sim.frames)
        for call, fn, targets in (
            ("correct_frame", corr.correct_frame, (t50, t99)),
            ("shift", corr.shift, (None, None)),
        ):
            ms = _timings(fn, frames, n_calls, warmup)
            p50, p99, p999 = np.percentile(ms, [50, 99, 99.9])
            rows.append(
                f"| {name} | {call} | {_fmt(targets[0], p50)} | {_fmt(targets[1], p99)} | {p999:.2f} | "
                f"{ms.max():.2f} |"
            )
    return rows


def online_accuracy(n_frames: int) -> list[str]:
    sim = simulate_movie((128, 128), n_frames, max_shift=5.0, seed=2, oversample=2)
    batch = xnormcorre.rigid(sim.frames, max_shifts=8)
    rows = [
        f"Online accuracy: {n_frames}-frame walk (±5 px, 128², 5 photons/px), shift RMSE vs truth (px)",
        "",
        "| method | shift RMSE px | ratio to batch | frames/s (initial template included) |",
        "|---|---|---|---|",
    ]
    b = rmse(batch.shifts.values, sim.shifts)
    rows.append(f"| rigid() batch (template from the whole movie) | {b:.4f} | 1.00 | – |")
    list(xnormcorre.online(sim.frames[:250], max_shifts=8))  # compile outside the timing
    for update in ("running_median", "running_mean", None):
        t0 = time.perf_counter()
        stream = xnormcorre.online(sim.frames, max_shifts=8, update=update)
        shifts = np.array([s for _, s in stream])
        dt = time.perf_counter() - t0
        e = rmse(shifts, sim.shifts)
        rows.append(f"| online(update={update!r}) | {e:.4f} | {e / b:.2f} | {n_frames / dt:.0f} |")
    return rows


def profile(n_calls: int, warmup: int) -> list[str]:
    """Where a rigid frame's time goes: dispatch, the FFTs, the estimate, the correction, the copies."""
    import jax
    import jax.numpy as jnp

    noop = jax.jit(lambda x: x[0, 0])
    fft = jax.jit(lambda x: jnp.fft.rfft2(x))
    roundtrip = jax.jit(lambda x: jnp.fft.irfft2(jnp.fft.rfft2(x), s=x.shape))
    rows = ["| frame | step | median ms |", "|---|---|---|"]
    for n in (256, 512):
        corr, sim = _corrector(n, {"max_shifts": 8}, 64)
        frames = np.ascontiguousarray(sim.frames)
        corr.shift(frames[0])
        reg = corr._fast  # noqa: SLF001 - the benchmark looks inside
        steps = [
            ("jit dispatch + 1 scalar back (no work)", lambda f: np.asarray(noop(f))),
            ("rfft2 of the frame", lambda f: np.asarray(fft(f))),
            ("rfft2 + irfft2 (one spectrum round trip)", lambda f: np.asarray(roundtrip(f))),
            ("shift only (estimate + refinement)", reg.shift),
            ("shift + corrected frame", reg.correct),
            ("Corrector.correct_frame (the public call)", corr.correct_frame),
        ]
        for label, fn in steps:
            ms = _timings(fn, frames, n_calls, warmup)
            rows.append(f"| {n}² | {label} | {np.median(ms):.3f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames (a rough table)")
    ap.add_argument("--profile", action="store_true", help="also time the steps of a rigid frame")
    args = ap.parse_args()
    n_calls, warmup, n_online = (300, 30, 1000) if args.quick else (3000, 200, 2000)
    import jax

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    print(
        f"xnormcorre {xnormcorre.__version__}, JAX {jax.__version__} on {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"load average before the run {load[0]:.2f}"
    )
    print(f"{n_calls} timed calls per row after {warmup} warm-up calls\n")
    print("\n".join(latency_table(n_calls, warmup)))
    print()
    if args.profile:
        print("\n".join(profile(max(200, n_calls // 5), warmup)))
        print()
    print("\n".join(online_accuracy(n_online)))


if __name__ == "__main__":
    main()
