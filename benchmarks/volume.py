"""Speed and accuracy of 3-D rigid registration of volumetric movies ``(time, z, y, x)``.

Run by hand, never as a timed test::

    python benchmarks/volume.py                        # 200 x 16 x 256 x 256 (about 0.8 GB float32)
    python benchmarks/volume.py --frames 50 --shape 16 128 128
    python benchmarks/volume.py --accuracy             # also the pixel-integrated accuracy case
    python benchmarks/volume.py --shape 16 128 128 --lazy 100 400 1000   # RSS of lazy runs from a file
    python benchmarks/volume.py --pw --frames 50 --shape 16 128 128      # 3-D piecewise rigid (z patches)

Speed: a smooth random volume moved by known subpixel 3-D shifts (Fourier shift, Poisson
noise); ``xnormcorre.rigid`` end to end (template estimated, volumes registered and moved)
and in steady state (a given template, second run: compiled kernels reused).  Prints
volumes/s and the peak RSS.  Accuracy: :func:`xnormcorre.testing.volume.simulate_volume`
(independent of the registration's interpolation: B-spline motion on an oversampled
scene, voxel integration, camera noise), RMSE per axis after removing the constant offset
of the estimated template.  ``--pw``: 3-D piecewise-rigid registration instead (patches
along z too), its speed, and the patch accuracy on
:func:`xnormcorre.testing.volume.simulate_deformed_volume` (a smooth 3-D deformation).
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
from scipy import ndimage

import xnormcorre


def _movie(n: int, shape: tuple[int, int, int], max_shift: tuple[float, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random(shape), (1.0, 2.0, 2.0))
    base = 50.0 * (base - base.min()) / (np.ptp(base) + 1e-12) + 5.0
    spec = np.fft.rfftn(base)
    k = np.meshgrid(*[np.fft.fftfreq(m) for m in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij")
    shifts = (rng.uniform(-1, 1, (n, 3)) * np.asarray(max_shift)).astype(np.float64)
    out = np.empty((n, *shape), np.float32)
    for t, s in enumerate(shifts):
        ramp = np.exp(-2j * np.pi * sum(ki * si for ki, si in zip(k, s, strict=True)))
        out[t] = rng.poisson(np.maximum(np.fft.irfftn(spec * ramp, s=shape, axes=(0, 1, 2)), 0.0))
    return out, shifts, base.astype(np.float32)


def _rmse(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    err = est - true
    err -= np.median(err, axis=0)
    return np.sqrt((err**2).mean(axis=0))


def _lazy_rss(n: int, shape: tuple[int, int, int], chunk: int = 20) -> None:
    """RSS growth of a lazy run from an ImageJ TZYX file (template estimated, the corrected
    movie reduced chunk by chunk), after a warm-up on the same shapes."""
    import tempfile
    import threading
    from pathlib import Path

    import psutil
    import tifffile

    base = _movie(1, shape, (0.0, 0.0, 0.0))[2]
    rng = np.random.default_rng(1)
    path = Path(tempfile.mkdtemp(prefix="xnormcorre_bench_")) / "volumes.tif"

    def volumes():
        for _ in range(n):
            s = tuple(int(v) for v in rng.integers(-2, 3, 3))
            yield np.roll(base * 20, s, axis=(0, 1, 2)).astype(np.uint16)

    tifffile.imwrite(
        path, volumes(), shape=(n, *shape), dtype=np.uint16, imagej=True, metadata={"axes": "TZYX"}
    )
    warm = xnormcorre.open_movie(path, chunks={"time": chunk}).isel(time=slice(0, chunk))
    _ = float(xnormcorre.rigid(warm, max_shifts=(2, 8, 8)).corrected.mean())
    proc, peak, stop = psutil.Process(), [0], threading.Event()
    start = proc.memory_info().rss

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    res = xnormcorre.rigid(xnormcorre.open_movie(path, chunks={"time": chunk}), max_shifts=(2, 8, 8))
    _ = float(res.corrected.mean())
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    print(
        f"lazy {n} x {shape} uint16 TZYX, chunks of {chunk}: {n / elapsed:.2f} volumes/s, "
        f"RSS growth {(peak[0] - start) / 2**20:.0f} MiB (movie {n * np.prod(shape) * 4 / 2**20:.0f} MiB as float32)"
    )
    path.unlink()


def _pw(args, shape: tuple[int, int, int]) -> None:
    """3-D piecewise-rigid: volumes/s (template given, compile excluded) and patch RMSE per
    axis on a pixel-integrated movie under a smooth 3-D deformation."""
    from xnormcorre.testing.volume import simulate_deformed_volume

    kw = dict(max_shifts=(2, 8, 8), strides=(6, 48, 48), overlaps=(4, 16, 16), max_deviation_rigid=(1, 3, 3))
    frames, _, base = _movie(args.frames, shape, (1.5, 5.0, 5.0))
    print(f"# 3-D piecewise rigid, volumes {args.frames} x {shape}, {kw}")
    for refine in (True, False):
        for run in ("first", "steady"):
            t0 = time.perf_counter()
            res = xnormcorre.pwrigid(frames, template=base, refine_patches=refine, **kw)
            _ = res.corrected.values
            t1 = time.perf_counter()
            print(
                f"refine_patches={refine}, given template, {run} run: {args.frames / (t1 - t0):.2f} volumes/s "
                f"(grid {tuple(res.shifts.shape[1:4])})"
            )
    sim = simulate_deformed_volume((16, 64, 64), 20, seed=0, n_cells=300)
    kw = dict(max_shifts=(3, 6, 6), strides=(6, 24, 24), overlaps=(4, 8, 8), max_deviation_rigid=(1, 3, 3))
    for refine in (True, False):
        for given in (True, False):
            res = xnormcorre.pwrigid(
                sim.frames, template=sim.template if given else None, refine_patches=refine, **kw
            )
            starts = [res[f"patch_{d}_start"].values for d in "zyx"]
            size = [int(res[f"patch_{d}_stop"][0] - res[f"patch_{d}_start"][0]) for d in "zyx"]
            err = res.shifts.values - sim.patch_displacement(starts, size)
            if not given:
                err -= np.median(err, axis=0)  # an estimated template's own offset per patch
            rmse = np.sqrt((err**2).reshape(-1, 3).mean(axis=0))
            print(
                f"deformed 20 x 16 x 64^2, refine_patches={refine}, template {'given' if given else 'estimated'}: "
                f"patch RMSE z {rmse[0]:.3f} planes, y {rmse[1]:.3f}, x {rmse[2]:.3f} px "
                f"(grid {tuple(res.shifts.shape[1:4])})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--shape", type=int, nargs=3, default=(16, 256, 256), metavar=("Z", "Y", "X"))
    ap.add_argument("--accuracy", action="store_true", help="also run the pixel-integrated accuracy case")
    ap.add_argument(
        "--lazy",
        type=int,
        nargs="+",
        metavar="N",
        help="only the RSS growth of lazy runs of N volumes from a file",
    )
    ap.add_argument("--pw", action="store_true", help="3-D piecewise-rigid registration (z patches)")
    args = ap.parse_args()
    shape = tuple(args.shape)
    if args.pw:
        _pw(args, shape)
        return
    if args.lazy:
        for n in args.lazy:
            _lazy_rss(n, shape)
        return
    max_shifts = (2, 8, 8)
    print(
        f"# volumes {args.frames} x {shape}, max_shifts {max_shifts}; {platform.processor() or platform.machine()}"
    )
    frames, true, base = _movie(args.frames, shape, (1.5, 5.0, 5.0))
    t0 = time.perf_counter()
    res = xnormcorre.rigid(frames, max_shifts=max_shifts)
    _ = res.corrected.values
    t1 = time.perf_counter()
    print(f"end to end (template estimated, compile included): {args.frames / (t1 - t0):.2f} volumes/s")
    for run in ("first", "steady"):
        t0 = time.perf_counter()
        again = xnormcorre.rigid(frames, max_shifts=max_shifts, template=base)
        _ = again.corrected.values
        t1 = time.perf_counter()
        print(f"given template, {run} run: {args.frames / (t1 - t0):.2f} volumes/s")
    print(
        "shift RMSE (z, y, x) voxels, Fourier-shifted Poisson volumes:",
        np.round(_rmse(again.shifts.values, true), 4),
    )
    print(
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (movie {frames.nbytes / 2**30:.2f} GiB)"
    )
    if args.accuracy:
        from xnormcorre.testing.volume import simulate_volume

        sim = simulate_volume((16, 64, 64), 40, seed=0)
        est = xnormcorre.rigid(sim.frames, max_shifts=(3, 6, 6)).shifts.values
        rmse = _rmse(est, sim.shifts)
        print(
            f"pixel-integrated 40 x 16 x 64^2, template estimated: RMSE z {rmse[0]:.4f} planes, "
            f"y {rmse[1]:.4f}, x {rmse[2]:.4f} px (targets 0.1 / 0.05)"
        )


if __name__ == "__main__":
    main()
