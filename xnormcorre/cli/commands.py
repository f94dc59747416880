"""The ``xnormcorre`` commands: ``demo``, ``correct``, ``apply`` and ``info`` (in
:mod:`xnormcorre.cli.info`)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from .info import info
from .output import (
    CLIError,
    check_outputs,
    check_shifts_fit,
    check_targets,
    log,
    max_shifts_option,
    one_line,
    open_input,
    out_dtype,
    pair_option,
    progress,
    qc_plots,
    reopen,
    write_movie,
    write_shifts,
)
from .report import (
    describe,
    flag_counts,
    plane_dim,
    shift_summary,
    verdict_line,
)
from .saving import check_nwb, register_into, store_target, write_nwb_output

__all__ = ["apply", "correct", "demo", "info"]


def demo(args: argparse.Namespace) -> int:
    import numpy as np

    import xnormcorre
    from xnormcorre import metrics

    out = Path(args.output).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output {str(out)!r} exists and is not a folder")
    nc, tif = out / "demo_rigid.nc", out / "demo_corrected.tif"
    pngs = [out / "demo_before_after.png", out / "demo_shifts.png"]
    check_targets([nc, tif, *pngs], args.overwrite)
    movie = xnormcorre.datasets.synthetic_movie(
        n_frames=args.frames, shape=(args.size, args.size), max_shift=5, seed=args.seed
    )
    t0 = time.perf_counter()
    res = movie.normcorre.rigid(max_shifts=(8, 8))
    elapsed = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    shifts_ds = res.drop_vars("corrected")
    write_shifts(shifts_ds, nc, overwrite=args.overwrite)
    xnormcorre.to_tiff(res.corrected, tif, overwrite=args.overwrite, progress=not args.quiet)
    written = qc_plots(args, movie, res, shifts_ds, out / "demo")

    truth = np.stack([movie.true_shift_y.values, movie.true_shift_x.values], axis=1)
    crop = 10
    print(f"corrected {movie.sizes['time']} frames of {args.size}x{args.size} px in {elapsed:.1f} s -> {out}")
    print(f"  shifts NetCDF:    {nc}")
    print(f"  corrected movie:  {tif}")
    for p in written:
        print(f"  QC plot:          {p}")
    print(f"rigid shift RMSE vs ground truth: {metrics.shift_rmse(res.shifts, truth):.3f} px")
    print(
        f"crispness of mean image: raw {metrics.crispness(movie, crop=crop):.1f} -> "
        f"corrected {metrics.crispness(res.corrected, crop=crop):.1f}"
    )
    print(
        f"mean correlation with mean image: raw {float(metrics.correlation_with_mean(movie, crop=crop).mean()):.3f} "
        f"-> corrected {float(metrics.correlation_with_mean(res.corrected, crop=crop).mean()):.3f}"
    )
    return 0


def _reference(args: argparse.Namespace, movie):
    """``--reference`` / ``--reference-channel``: a movie file (one channel of it), a dataset
    (channel) of the HDF5 input, or another channel of IN; ``None`` without them."""
    ref = None
    if args.reference_dataset is not None and args.reference is None:
        raise CLIError("--reference-dataset names a dataset of the --reference file: give --reference too")
    channel = args.reference_channel
    if args.reference is not None:
        text = args.reference
        looks_like_path = os.path.exists(os.path.expanduser(text)) or any(c in text for c in "*?[/\\")
        if looks_like_path:
            ref = open_input(
                [text], args.chunk, args.reference_dataset, channel, single="--reference-channel"
            )
        elif movie.attrs.get("source_format") == "HDF5" and len(args.input) == 1:
            if channel is not None:
                raise CLIError("--reference-channel selects a channel of a TIFF or Scanbox file, not of HDF5")
            ref = open_input(args.input, args.chunk, text)
        else:
            raise FileNotFoundError(
                f"--reference {text!r}: no such file (a channel name is a dataset of the same file and "
                "applies to HDF5 input only; use --reference-channel for a channel of IN)"
            )
    elif channel is not None:
        if args.channel is None:
            raise CLIError("--reference-channel needs --channel: the channel of IN to correct")
        ref = open_input(args.input, args.chunk, args.dataset, channel)
    if ref is None:
        return None
    if ref.shape != movie.shape:
        raise CLIError(f"the reference has shape {ref.shape}, the movie {movie.shape}; they must match")
    ref = ref.assign_coords({d: movie[d] for d in ("time", "y", "x")})
    if ref.chunks is not None and movie.chunks is not None:
        ref = ref.chunk({"time": movie.chunks[0]})
    return ref


def _prepared(args: argparse.Namespace, movie, ref):
    """The registration inputs: ``(movie, reference, scan_phase option)``, ``--highpass`` applied.

    A high-passed reference is made from the scan-phase-corrected movie (the filter mixes
    odd and even lines): the phase is then removed here and recorded in the result by the caller.
    """
    import xnormcorre
    from xnormcorre.core.scanphase import scan_phase_inputs

    if args.highpass is None:
        return movie, ref, args.scan_phase, None
    movie, ref, phase = scan_phase_inputs(movie, ref, args.scan_phase)
    return movie, xnormcorre.highpass(movie if ref is None else ref, args.highpass), None, phase


def _registration_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "max_shifts": args.max_shifts,  # Y [X], or Z Y X for a volume: see max_shifts_option
        "upsample_factor": args.upsample_factor,
        "border": args.border,
        "seed": args.seed,
        "frames_per_split": args.frames_per_split,
    }
    if args.planes is not None:
        kw["planes"] = args.planes
    if args.plane_dim != "z":
        kw["plane_dim"] = args.plane_dim
    if args.pw_rigid:
        # Z Y X for a volume: checked against the movie by _volume_grid once it is open
        kw["strides"] = _grid_option(args.strides, "--strides") or (96, 96)
        kw["overlaps"] = _grid_option(args.overlaps, "--overlaps") or (32, 32)
        kw["max_deviation_rigid"] = 3 if args.max_deviation_rigid is None else args.max_deviation_rigid
        kw["refine_patches"] = True if args.refine_patches else None  # None: on for volumes
        kw["niter_rig"] = args.niter
        kw["num_splits_to_process_rig"] = args.num_splits
    else:
        for opt in ("strides", "overlaps", "max_deviation_rigid"):
            if getattr(args, opt) is not None:
                raise CLIError(f"--{opt.replace('_', '-')} applies to --pw-rigid only")
        if args.refine_patches:
            raise CLIError("--refine-patches applies to --pw-rigid only")
        kw["niter"] = args.niter
        kw["num_splits_to_process"] = args.num_splits
    return kw


def _grid_option(values, option: str) -> tuple[int, ...] | None:
    """``--strides``/``--overlaps``: Y [X], or Z Y X (a volume's, checked by :func:`_volume_grid`)."""
    if values is not None and len(values) == 3:
        return tuple(int(v) for v in values)
    return pair_option(values, option)


def _volume_grid(args: argparse.Namespace, kw: dict[str, Any], movie) -> None:
    """``--max-shifts``, ``--strides`` and ``--overlaps`` against the movie and ``--planes``:
    Z Y X for a volume registered in 3-D, Y [X] for frames or planes registered alone."""
    volume = plane_dim(movie) is not None and args.planes != "independent"
    if args.planes is not None and plane_dim(movie) is None:
        raise CLIError(f"--planes {args.planes} applies to a movie with a plane dim (time, z, y, x) only")
    if plane_dim(movie) is not None and plane_dim(movie) != args.plane_dim:
        raise CLIError(f"the movie's plane dim is {plane_dim(movie)!r}: pass --plane-dim {plane_dim(movie)}")
    if volume or plane_dim(movie) is None:
        kw["max_shifts"] = max_shifts_option(kw["max_shifts"], movie)
    elif kw["max_shifts"] is not None and len(kw["max_shifts"]) == 3:
        raise CLIError(
            "--max-shifts takes 1 or 2 integers (Y [X]) with --planes independent (each plane registered "
            f"in 2-D), got {' '.join(map(str, kw['max_shifts']))}"
        )
    else:
        kw["max_shifts"] = pair_option(kw["max_shifts"], "--max-shifts") or (6, 6)
    if not args.pw_rigid:
        return
    for name in ("strides", "overlaps"):
        n = len(kw[name])
        if volume and (getattr(args, name) is None or n != 3):
            raise CLIError(
                f"--{name} takes 3 integers (Z Y X) for 3-D piecewise-rigid registration of a volume "
                f"({movie.sizes[plane_dim(movie)]} planes), e.g. --strides 4 48 48 --overlaps 2 16 16"
            )
        if not volume and n == 3:
            raise CLIError(f"--{name} takes 1 or 2 integers (Y [X]) for frames or planes registered in 2-D")


def _register_and_write(args: argparse.Namespace, movie, res, out: Path, fmt: str | None, shifts_path: Path):
    """One pass over the movie: each chunk is read, registered and warped once, and its
    corrected frames written as its shifts are collected; then the shifts NetCDF."""
    from .. import schema as sc
    from ..qc.flags import quality_flags

    time_vars = [v for v in (sc.SHIFTS, sc.RIGID_SHIFTS, sc.CORRELATION) if v in res]
    rest = res.drop_vars([sc.CORRECTED, *(f for f in sc.FLAGS if f in res)])
    if args.shifts_only:
        with progress(args, "registering"):
            computed = res[time_vars].load()
    elif fmt == "nwb":
        computed = write_nwb_output(args, res, out, dtype=out_dtype(args.dtype, movie), names=time_vars)
    else:
        attrs = rest.attrs
        computed = write_movie(
            args,
            res[sc.CORRECTED],
            out,
            fmt,
            dtype=out_dtype(args.dtype, movie),
            attrs=attrs,
            along=res[time_vars],
        )
    shifts_ds = rest.assign({v: computed[v] for v in time_vars})
    ms = tuple(shifts_ds.attrs["max_shifts"])
    if shifts_ds.attrs.get("planes") == "volume":
        from ..core.volume_pw import volume_result_flags

        flags = volume_result_flags(shifts_ds)
    else:
        flags = quality_flags(shifts_ds, max_shifts=ms)
    shifts_ds = shifts_ds.assign(flags)
    write_shifts(shifts_ds, shifts_path, overwrite=args.overwrite)
    return shifts_ds


def correct(args: argparse.Namespace) -> int:
    import xnormcorre

    out, fmt, shifts_path, _ = check_outputs(args)  # every output option and location, before any compute
    kw = _registration_kwargs(args)
    check_nwb(fmt)
    store = store_target(args, out)

    movie = open_input(args.input, args.chunk, args.dataset, args.channel, single="--channel")
    log(args, f"input: {describe(movie)}")
    _volume_grid(args, kw, movie)
    reference = _reference(args, movie)
    method = "pwrigid" if args.pw_rigid else "rigid"
    register = xnormcorre.pwrigid if args.pw_rigid else xnormcorre.rigid
    t0 = time.perf_counter()
    if args.scan_phase is not None:
        log(args, "removing the bidirectional scan phase ...")
    fixed, reference, scan_phase, phase = _prepared(args, movie, reference)
    log(args, f"estimating the template ({method}, max_shifts {' '.join(map(str, kw['max_shifts']))}) ...")
    res = register_into(args, register, store, fixed, reference=reference, scan_phase=scan_phase, **kw)
    if phase is not None:
        from xnormcorre.core.scanphase import record_scan_phase

        res = record_scan_phase(res, phase)
    shifts_ds = _register_and_write(args, movie, res, out, fmt, shifts_path)
    elapsed = time.perf_counter() - t0
    n, h, w = movie.sizes["time"], movie.sizes["y"], movie.sizes["x"]
    frames = f"{n} volumes of {movie.shape[1]}x{h}x{w}" if movie.ndim == 4 else f"{n} frames of {h}x{w}"
    print(f"{method}: corrected {frames} px in {elapsed:.1f} s")
    if "scan_phase" in res:
        print(f"  scan phase:      {_phase_text(res['scan_phase'])}")
    if not args.shifts_only:
        print(f"  corrected movie: {out} ({fmt})")
    print(f"  shifts NetCDF:   {shifts_path}")
    print(f"  {shift_summary(shifts_ds)}")
    print(f"  flagged frames: {flag_counts(shifts_ds)}")
    print(f"  {verdict_line(shifts_ds)}")
    if args.qc:
        again = reopen(out, fmt, args.out_dataset)
        for p in qc_plots(args, movie, again, shifts_ds, out.with_name(out.stem)):
            print(f"  QC plot:         {p}")
    if args.metrics and not args.shifts_only:
        from xnormcorre import metrics

        again = reopen(out, fmt, args.out_dataset)
        s = metrics.summary(movie, again, crop=tuple(kw["max_shifts"][-2:]), flow=False)
        s = s.mean([d for d in s.dims if d != "stage"])  # a volume: the mean over its planes
        raw_c, cor_c = s.mean_correlation.values.tolist()
        raw_k, cor_k = s.crispness.values.tolist()
        print(
            f"  before/after: mean correlation with mean image {raw_c:.3f} -> {cor_c:.3f}, "
            f"crispness {raw_k:.4g} -> {cor_k:.4g}"
        )
    return 0


def _phase_text(phase) -> str:
    """``+1.234 px (estimated)`` or the range of a per-frame phase."""
    how = phase.attrs.get("source", "")
    how = f" ({how})" if how else ""
    if phase.ndim == 0:
        return f"{float(phase):+.3f} px{how}"
    return f"{float(phase.min()):+.3f} .. {float(phase.max()):+.3f} px per frame{how}"


def apply(args: argparse.Namespace) -> int:
    import xarray as xr

    import xnormcorre

    shifts_file = Path(args.shifts_file).expanduser()
    if not shifts_file.is_file():
        raise FileNotFoundError(f"shifts file {str(shifts_file)!r} does not exist")
    out, fmt, _, _ = check_outputs(args)
    check_nwb(fmt)
    if args.resume and fmt not in ("tiff", "hdf5", "zarr"):
        raise CLIError(f"--resume writes a TIFF, HDF5 or zarr output resumably; OUT is {fmt}")
    try:
        shifts = xr.open_dataset(shifts_file, engine="netcdf4")
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read shifts file {str(shifts_file)!r} as NetCDF: {one_line(exc)}") from None
    if "shifts" not in shifts:
        raise CLIError(
            f"{str(shifts_file)!r} has no 'shifts' variable: pass the shifts NetCDF written by xnormcorre correct"
        )
    shifts = shifts.load()
    movie = open_input(args.input, args.chunk, args.dataset, args.channel, single="--channel")
    log(args, f"input: {describe(movie)}")
    check_shifts_fit(shifts, movie, shifts_file)
    border = args.border or shifts.attrs.get("border", "copy")
    # the run's scan phase, unless --scan-phase says otherwise
    scan_phase = getattr(args, "scan_phase", shifts.get("scan_phase"))
    corrected = xnormcorre.apply_shifts(movie, shifts, border=border, scan_phase=scan_phase)
    t0 = time.perf_counter()
    if fmt == "nwb":  # the shifts file holds the rest of the result (template, flags, parameters)
        write_nwb_output(
            args, shifts.assign(corrected=corrected), out, dtype=out_dtype(args.dtype, movie), names=[]
        )
    else:
        write_movie(args, corrected, out, fmt, dtype=out_dtype(args.dtype, movie), attrs=shifts.attrs)
    n, h, w = movie.sizes["time"], movie.sizes["y"], movie.sizes["x"]
    frames = f"{n} volumes of {movie.shape[1]}x{h}x{w}" if movie.ndim == 4 else f"{n} frames of {h}x{w}"
    print(f"applied the shifts of {shifts_file} to {frames} px in {time.perf_counter() - t0:.1f} s")
    print(f"  corrected movie: {out} ({fmt})")
    return 0
