"""Command line interface: ``xnormcorre demo | correct | apply | info``.

``xnormcorre correct IN -o OUT`` opens a TIFF or HDF5 movie lazily, registers it
(rigid or piecewise rigid), writes the corrected movie (TIFF, HDF5, zarr or NetCDF)
and the shifts NetCDF next to it; ``xnormcorre apply SHIFTS.nc IN -o OUT`` re-applies
saved shifts; ``xnormcorre info IN`` describes a movie without reading pixels;
``xnormcorre demo`` corrects a built-in synthetic movie.  ``xnormcorre COMMAND --help``
documents each command.

Every output is written under a temporary name in the target folder and renamed when
complete, so an error or Ctrl-C leaves no partial file; an existing output is replaced
only with ``--overwrite``.  Errors are reported as one line ``error: ...`` on stderr
with exit status 1 (2 for command-line usage errors, 130 for Ctrl-C); ``--traceback``
shows the Python traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: Output formats and the file suffixes that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "tiff": (".tif", ".tiff"),
    "hdf5": (".h5", ".hdf5", ".hdf"),
    "zarr": (".zarr",),
    "netcdf": (".nc", ".nc4"),
}
DTYPES = ("float32", "float64", "uint8", "uint16", "int16", "int32", "same")
BORDERS = ("copy", "nan", "zero", "min")

_EPILOG_CORRECT = """\
examples:
  xnormcorre correct session1.tif -o corrected.tif
  xnormcorre correct session1/*.tif -o corrected.h5 --max-shifts 12 12 --chunk 500
  xnormcorre correct green.h5 --dataset mov -o corrected.zarr --pw-rigid --strides 48 48 --overlaps 24 24
  xnormcorre correct gcamp.tif --reference tdtomato.tif -o corrected.tif   (estimate on one, apply to the other)
  xnormcorre correct session1.h5 --dataset green --reference red -o corrected.tif   (HDF5 channel)
  xnormcorre correct session1.tif --shifts-only -o shifts.nc

Outputs: the corrected movie at OUT (format from --format or OUT's suffix:
.tif/.tiff, .h5/.hdf5, .zarr, .nc) and its shifts NetCDF next to it as
<OUT stem>_shifts.nc (or --shifts PATH); with --shifts-only, OUT is the shifts file.
The shifts NetCDF is the result Dataset without the corrected movie: shifts
(time, axis) [piecewise rigid: (time, patch_y, patch_x, axis) and rigid_shifts],
template, correlation, quality flags, and every parameter in its attributes; a shift
is the displacement of the frame content relative to the template.
--format zarr needs the zarr package (pip install zarr).
"""

_EPILOG_APPLY = """\
examples:
  xnormcorre apply corrected_shifts.nc session1.tif -o again.tif
  xnormcorre apply green_shifts.nc red.tif -o red_corrected.tif   (second channel)

Rigid shifts are re-applied exactly as `correct` applied them (bit for bit with the
same border).  --format zarr needs the zarr package (pip install zarr).
"""


# --------------------------------------------------------------------------- argparse plumbing
class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (and exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class CLIError(ValueError):
    """A bad command-line value (reported as ``error: ...``)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _pair(values: Sequence[int] | None, option: str) -> tuple[int, int] | None:
    """``--option Y [X]``: one value for both axes, or (y, x)."""
    if values is None:
        return None
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    raise CLIError(f"{option} takes 1 or 2 integers (Y [X]), got {len(values)}: {' '.join(map(str, values))}")


def _log(args: argparse.Namespace, *lines: str) -> None:
    if not getattr(args, "quiet", False):
        for line in lines:
            print(line, flush=True)


#: Library phrasing -> command-line phrasing in error messages.
_CLI_WORDS = (
    ("pass dataset=<name>", "pass --dataset NAME"),
    ("pass overwrite=True", "pass --overwrite"),
)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, KeyError) and exc.args:
        text = f"missing key {exc.args[0]!r}"
    else:
        text = str(exc) or type(exc).__name__
    for python, cli in _CLI_WORDS:
        text = text.replace(python, cli)
    return " ".join(text.split())


# --------------------------------------------------------------------------- paths and formats
def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    suffix = path.suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for v in FORMATS.values() for s in v)
    raise CLIError(f"cannot tell the output format from {str(path)!r}: give --format or a suffix ({known})")


def _output(path: str) -> Path:
    p = Path(path).expanduser().absolute()
    if not p.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(p.parent)!r} does not exist")
    return p


def _check_targets(targets: Sequence[Path], overwrite: bool, inputs: Sequence[str] = ()) -> None:
    """Refuse to replace existing outputs (unless ``overwrite``) or any input."""
    if len(set(targets)) != len(targets):
        raise CLIError(f"two outputs would have the same name: {[str(t) for t in targets]}")
    resolved_inputs = set()
    for text in inputs:
        with contextlib.suppress(OSError):
            resolved_inputs.add(Path(text).expanduser().resolve())
    for t in targets:
        if t.resolve() in resolved_inputs:
            raise CLIError(f"output {str(t)!r} is one of the inputs; choose another output name")
        if t.exists() and not overwrite:
            raise FileExistsError(f"{str(t)!r} exists; pass --overwrite to replace it")


def _default_shifts_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_shifts.nc")


def _require(module: str, why: str, pip: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{why} needs the {module} package: pip install {pip}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _write_atomically(target: Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a temporary name beside ``target``, then rename it to ``target``.

    Works for files and folders (zarr stores); an existing ``target`` (the caller
    checked ``--overwrite``) is moved aside first and deleted after the rename.  On
    any error or interrupt the temporary is removed and ``target`` is left as it was.
    """
    tag = uuid.uuid4().hex[:12]
    tmp = target.with_name(f".{target.name}.{tag}.part")
    old = target.with_name(f".{target.name}.{tag}.old")
    try:
        write(tmp)
        if os.path.lexists(target):
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            _remove(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    return target


@contextlib.contextmanager
def _progress(args: argparse.Namespace, desc: str) -> Iterator[None]:
    """A tqdm bar over the dask tasks computed inside the block (none with --quiet)."""
    if getattr(args, "quiet", False):
        yield
        return
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc, unit="task", leave=True):
        yield


# --------------------------------------------------------------------------- movies in and out
def _open(paths: Sequence[str], chunk: int | None, dataset: str | None):
    import xnormcorre

    target: Any = paths[0] if len(paths) == 1 else list(paths)
    chunks = None if chunk is None else {"time": chunk}
    return xnormcorre.open_movie(target, chunks=chunks, dataset=dataset)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _describe(movie) -> str:
    n, h, w = movie.shape
    chunks = movie.chunks[0] if movie.chunks is not None else (n,)
    return f"{n} frames of {h}x{w} px, {movie.dtype}, time chunks of {max(chunks)} frames ({_plural(len(chunks), 'chunk')})"


def _out_dtype(name: str | None, movie) -> Any:
    import numpy as np

    if name is None:
        return None
    return movie.dtype if name == "same" else np.dtype(name)


def _cast(da, dtype):
    """Lazily cast a (dask-backed) movie as the writers do: integers rounded and clipped, NaN -> 0."""
    from xnormcorre.io.writers import cast_block

    if dtype is None or da.dtype == dtype:
        return da
    if da.chunks is None:
        return da.copy(data=cast_block(da.values, dtype))
    return da.copy(data=da.data.map_blocks(cast_block, dtype, dtype=dtype))


def _write_movie(args: argparse.Namespace, da, path: Path, fmt: str, attrs: dict | None = None) -> None:
    """Write the corrected movie ``da`` at ``path`` in ``fmt`` (atomically, with a progress bar)."""
    import xnormcorre

    dtype = _out_dtype(args.dtype, args._movie)
    progress = not args.quiet
    if fmt == "tiff":
        xnormcorre.to_tiff(da, path, overwrite=True, dtype=dtype, progress=progress)
        return
    if fmt == "hdf5":
        xnormcorre.to_hdf5(da, path, dataset=args.out_dataset, overwrite=True, dtype=dtype, progress=progress)
        return
    ds = _cast(da, dtype).rename("corrected").to_dataset()
    ds.attrs = dict(attrs or {})
    for name in ds.variables:
        ds[name].encoding = {}
    if fmt == "zarr":

        def write(tmp: Path) -> None:
            delayed = ds.to_zarr(tmp, mode="w-", compute=False, consolidated=True, zarr_format=2)
            with _progress(args, f"to_zarr {path.name}"):
                delayed.compute()

    else:

        def write(tmp: Path) -> None:
            delayed = ds.to_netcdf(tmp, compute=False, engine="netcdf4")
            with _progress(args, f"to_netcdf {path.name}"):
                delayed.compute()

    _write_atomically(path, write)


def _write_shifts(ds, path: Path) -> None:
    _write_atomically(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"))


def _flag_counts(ds) -> str:
    parts = []
    for name in ("at_max_shift", "low_correlation", "patch_jump"):
        if name in ds:
            flag = ds[name]
            if "time" in flag.dims and flag.ndim > 1:
                flag = flag.any([d for d in flag.dims if d != "time"])
            parts.append(f"{int(flag.sum())} {name.replace('_', ' ')}")
    return ", ".join(parts) if parts else "none computed"


def _shift_summary(ds) -> str:
    sh = ds["rigid_shifts"] if "rigid_shifts" in ds else ds["shifts"]
    ranges = []
    for comp in ("y", "x"):
        v = sh.sel(axis=comp)
        ranges.append(f"{comp} [{float(v.min()):+.2f}, {float(v.max()):+.2f}]")
    kind = "rigid shifts" if "rigid_shifts" not in ds else "rigid part of the shifts"
    return f"{kind}: {', '.join(ranges)} px; mean correlation with the template {float(ds.correlation.mean()):.3f}"


def _qc_plots(args: argparse.Namespace, raw, corrected, shifts_ds, stem: Path) -> list[Path]:
    """Write ``<stem>_before_after.png`` and ``<stem>_shifts.png``; [] without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        print('note: matplotlib is not installed, skipping the QC plots (pip install "xnormcorre[plot]")')
        return []
    from xnormcorre import plot

    out = []
    figs = (
        (
            "before_after",
            lambda: plot.plot_before_after(raw, corrected, crop=shifts_ds.attrs.get("max_shifts")),
        ),
        ("shifts", lambda: plot.plot_shifts(shifts_ds)),
    )
    for name, make in figs:
        target = stem.with_name(f"{stem.name}_{name}.png")
        fig = make()
        _write_atomically(target, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100))
        out.append(target)
    return out


def _reopen(path: Path, fmt: str, dataset: str):
    """The corrected movie just written, lazily (for QC without recomputing)."""
    import xarray as xr

    import xnormcorre

    if fmt in ("tiff", "hdf5"):
        return xnormcorre.open_movie(path, dataset=dataset if fmt == "hdf5" else None)
    if fmt == "zarr":
        return xr.open_zarr(path)["corrected"]
    return xr.open_dataset(path, chunks={})["corrected"]


# --------------------------------------------------------------------------- commands
def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    import xnormcorre
    from xnormcorre import metrics
    from xnormcorre.testing import shift_rmse

    out = Path(args.output).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output {str(out)!r} exists and is not a folder")
    nc, tif = out / "demo_rigid.nc", out / "demo_corrected.tif"
    pngs = [out / "demo_before_after.png", out / "demo_shifts.png"]
    _check_targets([nc, tif, *pngs], args.overwrite)
    args._movie = None
    movie = xnormcorre.datasets.synthetic_movie(
        n_frames=args.frames, shape=(args.size, args.size), max_shift=5, seed=args.seed
    )
    t0 = time.perf_counter()
    res = movie.normcorre.rigid(max_shifts=(8, 8))
    elapsed = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    shifts_ds = res.drop_vars("corrected")
    _write_shifts(shifts_ds, nc)
    xnormcorre.to_tiff(res.corrected, tif, overwrite=True, progress=not args.quiet)
    written = _qc_plots(args, movie, res, shifts_ds, out / "demo")

    truth = np.stack([movie.true_shift_y.values, movie.true_shift_x.values], axis=1)
    crop = 10
    print(f"corrected {movie.sizes['time']} frames of {args.size}x{args.size} px in {elapsed:.1f} s -> {out}")
    print(f"  shifts NetCDF:    {nc}")
    print(f"  corrected movie:  {tif}")
    for p in written:
        print(f"  QC plot:          {p}")
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


def _reference(args: argparse.Namespace, movie):
    """``--reference``: a movie file, or a dataset (channel) of the HDF5 input; then ``--highpass``."""
    import xnormcorre

    ref = None
    if args.reference_dataset is not None and args.reference is None:
        raise CLIError("--reference-dataset names a dataset of the --reference file: give --reference too")
    if args.reference is not None:
        text = args.reference
        looks_like_path = os.path.exists(os.path.expanduser(text)) or any(c in text for c in "*?[/\\")
        if looks_like_path:
            ref = _open([text], args.chunk, args.reference_dataset)
        elif movie.attrs.get("source_format") == "HDF5" and len(args.input) == 1:
            ref = _open(args.input, args.chunk, text)
        else:
            raise FileNotFoundError(
                f"--reference {text!r}: no such file (a channel name is a dataset of the same file and "
                "applies to HDF5 input only)"
            )
        if ref.shape != movie.shape:
            raise CLIError(f"--reference has shape {ref.shape}, the movie {movie.shape}; they must match")
        ref = ref.assign_coords({d: movie[d] for d in ("time", "y", "x")})
        if ref.chunks is not None and movie.chunks is not None:
            ref = ref.chunk({"time": movie.chunks[0]})
    if args.highpass is not None:
        ref = xnormcorre.highpass(movie if ref is None else ref, args.highpass)
    return ref


def _registration_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "max_shifts": _pair(args.max_shifts, "--max-shifts"),
        "upsample_factor": args.upsample_factor,
        "border": args.border,
        "seed": args.seed,
        "frames_per_split": args.frames_per_split,
    }
    if args.pw_rigid:
        kw["strides"] = _pair(args.strides, "--strides") or (96, 96)
        kw["overlaps"] = _pair(args.overlaps, "--overlaps") or (32, 32)
        kw["max_deviation_rigid"] = 3 if args.max_deviation_rigid is None else args.max_deviation_rigid
        kw["niter_rig"] = args.niter
        kw["num_splits_to_process_rig"] = args.num_splits
    else:
        for opt in ("strides", "overlaps", "max_deviation_rigid"):
            if getattr(args, opt) is not None:
                raise CLIError(f"--{opt.replace('_', '-')} applies to --pw-rigid only")
        kw["niter"] = args.niter
        kw["num_splits_to_process"] = args.num_splits
    return kw


def _correct(args: argparse.Namespace) -> int:
    import xnormcorre

    out = _output(args.output)
    kw = _registration_kwargs(args)
    if args.shifts_only:
        if args.format not in (None, "netcdf") or args.shifts is not None:
            raise CLIError("with --shifts-only, OUT is the shifts NetCDF: --format and --shifts do not apply")
        fmt, shifts_path, targets = None, out, [out]
    else:
        fmt = _format_of(out, args.format)
        shifts_path = _output(args.shifts) if args.shifts is not None else _default_shifts_path(out)
        targets = [out, shifts_path]
    if fmt == "zarr":
        _require("zarr", "--format zarr", "zarr")
    if args.qc:
        targets += [out.with_name(f"{out.stem}_{n}.png") for n in ("before_after", "shifts")]
    _check_targets(targets, args.overwrite, [*args.input, *([args.reference] if args.reference else [])])

    movie = _open(args.input, args.chunk, args.dataset)
    args._movie = movie
    _log(args, f"input: {_describe(movie)}")
    reference = _reference(args, movie)
    method = "pwrigid" if args.pw_rigid else "rigid"
    _log(args, f"estimating the template ({method}, max_shifts {' '.join(map(str, kw['max_shifts']))}) ...")
    t0 = time.perf_counter()
    register = xnormcorre.pwrigid if args.pw_rigid else xnormcorre.rigid
    res = register(movie, reference=reference, **kw)
    shifts_ds = res.drop_vars("corrected")
    with _progress(args, "registering"):
        shifts_ds = shifts_ds.load()
    if not args.shifts_only:
        try:  # estimate once, then apply: bit for bit res.corrected, without registering twice
            corrected = xnormcorre.apply_shifts(
                movie, shifts_ds, border=shifts_ds.attrs.get("border", "copy")
            )
        except NotImplementedError:  # kinds of shifts apply_shifts cannot re-apply yet
            corrected = res.corrected
        _write_movie(args, corrected, out, fmt, shifts_ds.attrs)
    _write_shifts(shifts_ds, shifts_path)
    elapsed = time.perf_counter() - t0
    n, h, w = movie.shape
    print(f"{method}: corrected {n} frames of {h}x{w} px in {elapsed:.1f} s")
    if not args.shifts_only:
        print(f"  corrected movie: {out} ({fmt})")
    print(f"  shifts NetCDF:   {shifts_path}")
    print(f"  {_shift_summary(shifts_ds)}")
    print(f"  flagged frames: {_flag_counts(shifts_ds)}")
    if args.qc:
        if args.shifts_only:
            raise CLIError("--qc needs the corrected movie: drop --shifts-only")
        again = _reopen(out, fmt, args.out_dataset)
        for p in _qc_plots(args, movie, again, shifts_ds, out.with_name(out.stem)):
            print(f"  QC plot:         {p}")
    if args.metrics and not args.shifts_only:
        from xnormcorre import metrics

        again = _reopen(out, fmt, args.out_dataset)
        s = metrics.summary(movie, again, crop=kw["max_shifts"], flow=False)
        raw_c, cor_c = s.mean_correlation.values.tolist()
        raw_k, cor_k = s.crispness.values.tolist()
        print(
            f"  before/after: mean correlation with mean image {raw_c:.3f} -> {cor_c:.3f}, "
            f"crispness {raw_k:.4g} -> {cor_k:.4g}"
        )
    return 0


def _apply(args: argparse.Namespace) -> int:
    import xarray as xr

    import xnormcorre

    shifts_file = Path(args.shifts_file).expanduser()
    if not shifts_file.is_file():
        raise FileNotFoundError(f"shifts file {str(shifts_file)!r} does not exist")
    out = _output(args.output)
    fmt = _format_of(out, args.format)
    if fmt == "zarr":
        _require("zarr", "--format zarr", "zarr")
    _check_targets([out], args.overwrite, [*args.input, str(shifts_file)])
    try:
        shifts = xr.open_dataset(shifts_file, engine="netcdf4")
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read shifts file {str(shifts_file)!r} as NetCDF: {_one_line(exc)}") from None
    if "shifts" not in shifts:
        raise CLIError(
            f"{str(shifts_file)!r} has no 'shifts' variable: pass the shifts NetCDF written by xnormcorre correct"
        )
    shifts = shifts.load()
    movie = _open(args.input, args.chunk, args.dataset)
    args._movie = movie
    _log(args, f"input: {_describe(movie)}")
    border = args.border or shifts.attrs.get("border", "copy")
    corrected = xnormcorre.apply_shifts(movie, shifts, border=border)
    t0 = time.perf_counter()
    _write_movie(args, corrected, out, fmt, shifts.attrs)
    n, h, w = movie.shape
    print(
        f"applied the shifts of {shifts_file} to {n} frames of {h}x{w} px in {time.perf_counter() - t0:.1f} s"
    )
    print(f"  corrected movie: {out} ({fmt})")
    return 0


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _info(args: argparse.Namespace) -> int:
    import xarray as xr

    first = Path(args.input[0]).expanduser()
    if len(args.input) == 1 and (first.suffix.lower() in (".nc", ".nc4", ".zarr")):
        if not first.exists():
            raise FileNotFoundError(f"{str(first)!r} does not exist")
        opener = xr.open_zarr if first.suffix.lower() == ".zarr" else xr.open_dataset
        ds = opener(first, chunks={}) if opener is xr.open_dataset else opener(first)
        print(f"path:      {first.absolute()}")
        print(f"dataset:   {', '.join(f'{k} {v}' for k, v in ds.sizes.items())}")
        for name, var in ds.data_vars.items():
            print(f"  {name} ({', '.join(map(str, var.dims))}) {var.dtype}")
        if "method" in ds.attrs:
            print(f"method:    {ds.attrs['method']}")
        ds.close()
        return 0
    movie = _open(args.input, args.chunk, args.dataset)
    n, h, w = movie.shape
    a = movie.attrs
    fmt = a.get("source_format", "?")
    engine = {"TIFF": "xnormcorre_tiff", "HDF5": "xnormcorre_hdf5"}.get(fmt, "?")
    chunks = movie.chunks[0] if movie.chunks is not None else (n,)
    sources = [str(Path(p).expanduser().absolute()) for p in args.input]
    print(f"path:      {sources[0]}" + (f" (+{len(sources) - 1} more)" if len(sources) > 1 else ""))
    print(
        f"format:    {fmt} (xarray engine {engine})"
        + (f", {_plural(a['n_files'], 'file')}" if "n_files" in a else "")
    )
    if "hdf5_dataset" in a:
        print(f"dataset:   {a['hdf5_dataset']}")
    print(f"shape:     {n} x {h} x {w} (time, y, x)")
    print(f"dtype:     {movie.dtype}")
    print(f"size:      {_fmt_bytes(movie.nbytes)}")
    print(f"chunks:    time {max(chunks)} frames ({_plural(len(chunks), 'chunk')}), y {h}, x {w}")
    t = movie["time"]
    units = t.attrs.get("units", "")
    units = "" if units == "1" else units
    span = f"{t.values[0]} .. {t.values[-1]}" if n else "-"
    print(f"time:      {span} ({t.attrs.get('long_name', 'time')}{', ' + units if units else ''})")
    movie.close()
    return 0


# --------------------------------------------------------------------------- parser
def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("messages")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress messages")
    g.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")


def _add_input(p: argparse.ArgumentParser, *, nargs: str = "+") -> None:
    p.add_argument(
        "input",
        nargs=nargs,
        metavar="IN",
        help="movie: a multi-page TIFF, an HDF5 file, or several TIFF files (or a quoted glob) as one movie",
    )
    p.add_argument(
        "--dataset", metavar="NAME", help="HDF5 dataset holding the movie (default: the only 3-D one)"
    )
    p.add_argument(
        "--chunk",
        type=_positive_int,
        metavar="N",
        help="frames per time chunk read and processed at once (default: about 2**24 pixels)",
    )


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (or folder for zarr)")
    p.add_argument(
        "--format", choices=tuple(FORMATS), help="output format (default: from OUT's suffix; zarr needs zarr)"
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="dtype of the corrected movie (default float32; 'same' = the input's; integers are rounded "
        "and clipped)",
    )
    p.add_argument(
        "--out-dataset", default="mov", metavar="NAME", help="HDF5 output dataset name (default: %(default)s)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def build_parser() -> argparse.ArgumentParser:
    """The ``xnormcorre`` argument parser.

    Examples
    --------
    >>> p = build_parser()
    >>> args = p.parse_args(["correct", "in.tif", "-o", "out.tif", "--max-shifts", "8", "12"])
    >>> args.command, args.input, args.max_shifts, args.pw_rigid
    ('correct', ['in.tif'], [8, 12], False)
    """
    from xnormcorre import __version__

    p = _Parser(
        prog="xnormcorre",
        description="NoRMCorre motion correction (rigid and piecewise rigid) of calcium-imaging movies, "
        "on JAX, speaking xarray.  Run 'xnormcorre COMMAND --help' for the options of a command.",
        epilog="Errors are reported as one line 'error: ...' (exit status 1); nothing is overwritten "
        "without --overwrite and no partial output file is ever left behind.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "demo",
        help="correct a built-in synthetic movie and write the results to a folder",
        description="Generate a synthetic two-photon movie with known motion, correct it (rigid) and write "
        "the shifts NetCDF (demo_rigid.nc), the corrected movie (demo_corrected.tif) and QC plots "
        "(demo_before_after.png, demo_shifts.png; needs matplotlib) to a folder; print the accuracy "
        "against the true motion and before/after metrics.",
    )
    d.add_argument("-o", "--output", default="xnormcorre_demo", help="output folder (default: %(default)s)")
    d.add_argument(
        "--frames", type=_positive_int, default=300, help="number of frames (default: %(default)s)"
    )
    d.add_argument(
        "--size", type=_positive_int, default=128, help="frame size in pixels (default: %(default)s)"
    )
    d.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default: %(default)s)")
    d.add_argument("--overwrite", action="store_true", help="replace existing output files")
    _add_common(d)
    d.set_defaults(func=_demo)

    c = sub.add_parser(
        "correct",
        help="motion-correct a TIFF/HDF5 movie; write the corrected movie and its shifts",
        description="Motion-correct a movie (rigid, or piecewise rigid with --pw-rigid) chunk by\n"
        "chunk and write the corrected movie and the shifts NetCDF.  The input is opened\n"
        "lazily: movies larger than memory work.",
        epilog=_EPILOG_CORRECT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input(c)
    _add_output(c)
    r = c.add_argument_group("registration (names follow CaImAn / jnormcorre)")
    r.add_argument("--pw-rigid", action="store_true", help="piecewise-rigid registration (default: rigid)")
    r.add_argument(
        "--max-shifts",
        type=int,
        nargs="+",
        default=[6, 6],
        metavar=("Y", "X"),
        help="largest displacement searched, px; one value for both axes or Y X (default: 6 6)",
    )
    r.add_argument(
        "--strides",
        type=int,
        nargs="+",
        metavar=("Y", "X"),
        help="pw-rigid: distance between patch starts, px (default: 96 96)",
    )
    r.add_argument(
        "--overlaps",
        type=int,
        nargs="+",
        metavar=("Y", "X"),
        help="pw-rigid: overlap added to each patch, px; patch = strides + overlaps (default: 32 32)",
    )
    r.add_argument(
        "--max-deviation-rigid",
        type=_nonneg_int,
        metavar="N",
        help="pw-rigid: largest deviation of a patch from the rigid shift, px (default: 3)",
    )
    r.add_argument(
        "--reference",
        metavar="CHANNEL_OR_FILE",
        help="estimate the shifts on this movie and apply them to IN: a file of the same shape, or the name "
        "of another dataset (channel) of the HDF5 input",
    )
    r.add_argument("--reference-dataset", metavar="NAME", help="HDF5 dataset of a --reference file")
    r.add_argument(
        "--highpass",
        type=_positive_float,
        metavar="SIGMA",
        help="estimate on a spatially high-passed copy (CaImAn gSig_filt, px; for 1-photon data)",
    )
    r.add_argument(
        "--upsample-factor",
        type=_positive_int,
        default=10,
        help="subpixel precision 1/N px (default: %(default)s)",
    )
    r.add_argument(
        "--border", choices=BORDERS, default="copy", help="fill of pixels moved in (default: copy)"
    )
    r.add_argument(
        "--frames-per-split",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="frames per split in template estimation (default: %(default)s)",
    )
    r.add_argument(
        "--num-splits",
        type=_positive_int,
        metavar="N",
        help="splits used per template iteration (num_splits_to_process; default: all)",
    )
    r.add_argument(
        "--niter", type=_nonneg_int, default=1, metavar="N", help="template iterations (default: %(default)s)"
    )
    r.add_argument(
        "--seed", type=_nonneg_int, default=0, help="seed of the split sampling (default: %(default)s)"
    )
    w = c.add_argument_group("outputs")
    w.add_argument("--shifts-only", action="store_true", help="write only the shifts NetCDF, at OUT")
    w.add_argument("--shifts", metavar="PATH", help="shifts NetCDF path (default: <OUT stem>_shifts.nc)")
    w.add_argument(
        "--qc",
        action="store_true",
        help="also write <OUT stem>_before_after.png and <OUT stem>_shifts.png (needs matplotlib)",
    )
    w.add_argument(
        "--metrics", action="store_true", help="print before/after metrics (reads both movies once)"
    )
    _add_common(c)
    c.set_defaults(func=_correct)

    a = sub.add_parser(
        "apply",
        help="re-apply saved shifts (a shifts NetCDF) to a movie",
        description="Move every frame of IN by -shift, with the shifts of a NetCDF written by\n"
        "'xnormcorre correct' (e.g. to correct a second channel with the shifts of the first).",
        epilog=_EPILOG_APPLY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("shifts_file", metavar="SHIFTS.nc", help="shifts NetCDF written by 'xnormcorre correct'")
    _add_input(a)
    _add_output(a)
    a.add_argument("--border", choices=BORDERS, help="fill of pixels moved in (default: the run's border)")
    _add_common(a)
    a.set_defaults(func=_apply)

    i = sub.add_parser(
        "info",
        help="describe a movie (shape, dtype, chunks, engine) without reading pixels",
        description="Print the shape, dtype, size, chunks and xarray engine of a TIFF/HDF5 movie without "
        "reading its pixels (or the variables of a NetCDF/zarr result).",
    )
    _add_input(i)
    _add_common(i)
    i.set_defaults(func=_info)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xnormcorre`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("xnormcorre: interrupted; no output written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, KeyError, ImportError, NotImplementedError) as exc:
        if args.traceback:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure: still one line, the traceback on request
        if args.traceback:
            raise
        kind = type(exc).__qualname__
        if type(exc).__module__ not in ("builtins", "__main__"):
            kind = f"{type(exc).__module__}.{kind}"
        print(
            f"error: unexpected {kind}: {_one_line(exc)} (rerun with --traceback for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
