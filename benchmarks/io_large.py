"""End-to-end benchmark of the larger-than-memory path: TIFF on disk -> lazy rigid -> TIFF.

Writes a synthetic movie of the requested size as a multi-page TIFF (streamed: the
movie is never in memory), then times, in one process,

    movie = xnormcorre.open_movie(src)                 # lazy, dask time chunks
    res = movie.normcorre.rigid(max_shifts=...)        # template estimate (eager part)
    xnormcorre.to_tiff(res.corrected, dst)             # registration, streamed to disk

and reports frames/s and the peak resident memory (RSS, sampled every 10 ms), both
absolute and as growth over the RSS before the run.  Run it by hand, e.g.::

    python benchmarks/io_large.py --size-gb 5 --frame 512 --dir /scratch
    python benchmarks/io_large.py --size-gb 0.2            # quick check

The RSS growth includes JAX's one-off cost (backend start-up and kernel compilation,
a few hundred MB), which does not grow with the movie; the data part stays at about
two time chunks (tests/test_memory.py measures it after a warm-up).

The input (and output) are deleted at the end unless ``--keep`` is given.  Expect
about twice ``--size-gb`` of free disk (uint16 input, float32 output: three times).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile

import xnormcorre


class PeakRSS:
    """Peak resident set size of this process, sampled in a background thread."""

    def __init__(self, interval: float = 0.01) -> None:
        self.proc = psutil.Process()
        self.interval = interval
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def write_movie(
    path: Path, n_frames: int, size: int, dtype: np.dtype, max_shift: int, seed: int
) -> np.ndarray:
    """Stream a textured scene moved by random integer shifts (plus noise) to a TIFF; return the shifts."""
    rng = np.random.default_rng(seed)
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.fftfreq(size)[None, :]
    img = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(size, size))) * np.exp(-100 * (ky**2 + kx**2))))
    scene = ((img - img.min()) / np.ptp(img) * 1000 + 100).astype(np.float32)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n_frames, 2))

    def frames():
        for s in shifts:
            frame = np.roll(scene, tuple(s), axis=(0, 1)) + rng.normal(scale=10.0, size=scene.shape)
            yield frame.astype(dtype) if dtype.kind == "f" else np.clip(np.rint(frame), 0, None).astype(dtype)

    tifffile.imwrite(
        path,
        frames(),
        shape=(n_frames, size, size),
        dtype=dtype,
        photometric="minisblack",
        bigtiff=n_frames * size * size * dtype.itemsize > 2**32 - 2**25,
    )
    return shifts


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a human summary and a JSON line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gb", type=float, default=5.0, help="input size on disk, GB (default %(default)s)")
    p.add_argument("--frame", type=int, default=512, help="frame side, px (default %(default)s)")
    p.add_argument("--dtype", default="uint16", help="input dtype (default %(default)s)")
    p.add_argument("--max-shifts", type=int, default=5, help="max_shifts of rigid (default %(default)s)")
    p.add_argument("--niter", type=int, default=1, help="template iterations (default %(default)s)")
    p.add_argument(
        "--num-splits",
        type=int,
        default=4,
        help="num_splits_to_process of the template (default %(default)s)",
    )
    p.add_argument("--chunk", type=int, default=None, help="frames per dask chunk (default: open_movie's)")
    p.add_argument("--dir", default=None, help="folder for the files (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the input and output files")
    args = p.parse_args(argv)

    dtype = np.dtype(args.dtype)
    n_frames = max(1, int(args.size_gb * 1e9 // (args.frame**2 * dtype.itemsize)))
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="xnormcorre_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    src, dst = workdir / "bench_input.tif", workdir / "bench_corrected.tif"
    need = n_frames * args.frame**2 * (dtype.itemsize + 4)
    free = shutil.disk_usage(workdir).free
    if need > free:
        print(
            f"error: needs {need / 1e9:.1f} GB of disk in {workdir}, {free / 1e9:.1f} GB free",
            file=sys.stderr,
        )
        return 2

    print(f"writing {n_frames} frames of {args.frame}x{args.frame} {dtype} to {src} ...", flush=True)
    t0 = time.perf_counter()
    write_movie(src, n_frames, args.frame, dtype, max_shift=max(1, args.max_shifts - 2), seed=0)
    t_write = time.perf_counter() - t0
    size = src.stat().st_size

    try:
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            movie = xnormcorre.open_movie(src, chunks=None if args.chunk is None else {"time": args.chunk})
            res = movie.normcorre.rigid(
                max_shifts=args.max_shifts, niter=args.niter, num_splits_to_process=args.num_splits
            )
            t_template = time.perf_counter() - t0
            xnormcorre.to_tiff(res.corrected, dst, overwrite=True, progress=True)
            t_total = time.perf_counter() - t0
        report = {
            "n_frames": n_frames,
            "frame": args.frame,
            "dtype": str(dtype),
            "input_bytes": size,
            "chunk_frames": int(movie.chunks[0][0]),
            "write_input_s": round(t_write, 2),
            "open_and_template_s": round(t_template, 2),
            "end_to_end_s": round(t_total, 2),
            "frames_per_s": round(n_frames / t_total, 1),
            "mb_per_s": round(size / 1e6 / t_total, 1),
            "rss_start_mb": round(mem.start / 1e6, 1),
            "rss_peak_mb": round(mem.peak / 1e6, 1),
            "rss_growth_mb": round((mem.peak - mem.start) / 1e6, 1),
            "cpus": os.cpu_count(),
            "xnormcorre": xnormcorre.__version__,
        }
        print(
            f"{n_frames} frames ({size / 1e9:.2f} GB) corrected end to end in {t_total:.1f} s: "
            f"{report['frames_per_s']} frames/s, {report['mb_per_s']} MB/s; "
            f"peak RSS {report['rss_peak_mb']:.0f} MB (+{report['rss_growth_mb']:.0f} MB over the start)"
        )
        print(json.dumps(report))
    finally:
        if not args.keep:
            for f in (src, dst):
                f.unlink(missing_ok=True)
            if args.dir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
