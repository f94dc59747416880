"""Command line interface: ``xnormcorre demo`` (more subcommands follow)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    import xnormcorre
    from xnormcorre import metrics
    from xnormcorre.testing import shift_rmse

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "demo_rigid.nc"
    if target.exists() and not args.overwrite:
        print(f"error: {target} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    movie = xnormcorre.datasets.synthetic_movie(
        n_frames=args.frames, shape=(args.size, args.size), max_shift=5, seed=args.seed
    )
    res = movie.normcorre.rigid(max_shifts=(8, 8))
    tmp = target.with_name(target.name + ".part")
    res.to_netcdf(tmp)
    tmp.replace(target)
    truth = np.stack([movie.true_shift_y.values, movie.true_shift_x.values], axis=1)
    crop = 10
    print(f"corrected {movie.sizes['time']} frames of {args.size}x{args.size} px -> {target}")
    print(f"rigid shift RMSE vs ground truth: {shift_rmse(res.shifts, truth):.3f} px")
    print(
        f"crispness of mean image: raw {metrics.crispness(movie, crop=crop):.1f} -> "
        f"corrected {metrics.crispness(res.corrected, crop=crop):.1f}"
    )
    print(
        f"mean correlation with mean image: raw {float(metrics.correlation_with_mean(movie, crop=crop).mean()):.3f} "
        f"-> corrected {float(metrics.correlation_with_mean(res.corrected, crop=crop).mean()):.3f}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``xnormcorre`` argument parser."""
    p = argparse.ArgumentParser(prog="xnormcorre", description="NoRMCorre motion correction on JAX + xarray")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="correct a built-in synthetic movie and write the result")
    d.add_argument("-o", "--output", default="xnormcorre_demo", help="output folder (default: %(default)s)")
    d.add_argument("--frames", type=int, default=300, help="number of frames (default: %(default)s)")
    d.add_argument("--size", type=int, default=128, help="frame size in pixels (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    d.add_argument("--overwrite", action="store_true", help="replace existing output")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xnormcorre`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
