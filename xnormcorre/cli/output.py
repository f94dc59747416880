"""Command-line plumbing: errors, messages, output paths and formats, option values, writing results
(what is printed about a movie and a result: :mod:`xnormcorre.cli.report`)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .report import channel_list, plane_dim

#: Output formats and the file suffixes that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "tiff": (".tif", ".tiff"),
    "hdf5": (".h5", ".hdf5", ".hdf"),
    "zarr": (".zarr",),
    "netcdf": (".nc", ".nc4"),
    "nwb": (".nwb",),
}
DTYPES = ("float32", "float64", "uint8", "uint16", "int16", "int32", "same")


class CLIError(ValueError):
    """A bad command-line value (reported as ``error: ...``)."""


def log(args: argparse.Namespace, *lines: str) -> None:
    if not getattr(args, "quiet", False):
        for line in lines:
            print(line, flush=True)


#: Library phrasing -> command-line phrasing in error messages.
_CLI_WORDS = (
    ("pass dataset=<name>", "pass --dataset NAME"),
    ("overwrite=True", "--overwrite"),
    ("with resume=True", "with --resume"),
    ("or write with resume=False", "or run without --resume"),
)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, KeyError) and exc.args:
        text = f"missing key {exc.args[0]!r}"
    else:
        text = str(exc) or type(exc).__name__
    for python, cli in _CLI_WORDS:
        text = text.replace(python, cli)
    return " ".join(text.split())


def format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    suffix = path.suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for v in FORMATS.values() for s in v)
    raise CLIError(f"cannot tell the output format from {str(path)!r}: give --format or a suffix ({known})")


def output_path(path: str) -> Path:
    p = Path(path).expanduser().absolute()
    if not p.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(p.parent)!r} does not exist")
    return p


def check_targets(
    targets: Sequence[Path], overwrite: bool, inputs: Sequence[str] = (), stores: Sequence[Path] = ()
) -> None:
    """Refuse before any compute an output that may not be written: an existing one (unless
    ``overwrite``), a folder (unless a zarr store listed in ``stores``; a folder is never
    deleted), one in a missing or non-writable folder, any input, two outputs of one name."""
    from ..io.atomic import check_target

    if len(set(targets)) != len(targets):
        raise CLIError(f"two outputs would have the same name: {[str(t) for t in targets]}")
    resolved_inputs = set()
    for text in inputs:
        with contextlib.suppress(OSError):
            resolved_inputs.add(Path(text).expanduser().resolve())
    for t in targets:
        if t.resolve() in resolved_inputs:
            raise CLIError(f"output {str(t)!r} is one of the inputs; choose another output name")
        if t.parent.is_dir():  # else the command makes the folder (demo)
            check_target(t, overwrite, store=t in stores)


class Outputs(NamedTuple):
    """Where a command writes: the movie (or, with ``--shifts-only``, the shifts) ``out``, its
    format (None with ``--shifts-only``), the shifts NetCDF (None for ``apply``), the QC plots."""

    out: Path
    fmt: str | None
    shifts: Path | None
    plots: list[Path]


#: Default of ``--out-dataset``.
OUT_DATASET = "mov"


def _netcdf_name(path: Path, what: str) -> None:
    if path.suffix.lower() not in FORMATS["netcdf"]:
        raise CLIError(
            f"{what} is the shifts NetCDF: give it a {' or '.join(FORMATS['netcdf'])} name, got {str(path)!r}"
        )


def check_outputs(args: argparse.Namespace) -> Outputs:
    """Validate every output option and location of ``correct`` / ``apply`` before any compute.

    Options that do not apply together (``--shifts-only`` with ``--qc``, ``--metrics``,
    ``--dtype``, ``--format``, ``--shifts`` or ``--out-dataset``; ``--out-dataset`` for a
    format other than HDF5), a bad HDF5 dataset name, a shifts NetCDF with another suffix,
    an output format whose package is missing, and every target that
    :func:`check_targets` refuses are reported here, not after the registration.
    """
    out = output_path(args.output)
    shifts_only = getattr(args, "shifts_only", False)
    fmt: str | None = None
    shifts: Path | None = None
    plots: list[Path] = []
    if shifts_only:
        given = [
            opt
            for opt, on in (
                ("--qc", args.qc),
                ("--metrics", args.metrics),
                ("--dtype", args.dtype is not None),
                ("--format", args.format not in (None, "netcdf")),
                ("--shifts", args.shifts is not None),
                ("--out-dataset", args.out_dataset != OUT_DATASET),
            )
            if on
        ]
        if given:
            raise CLIError(
                f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply with --shifts-only "
                "(OUT is then the shifts NetCDF and no corrected movie is written): drop "
                f"{'it' if len(given) == 1 else 'them'} or drop --shifts-only"
            )
        _netcdf_name(out, "with --shifts-only, OUT")
        shifts = out
    else:
        fmt = format_of(out, args.format)
        if fmt == "hdf5":
            from ..io.writers_hdf5 import check_dataset_name

            try:
                check_dataset_name(args.out_dataset)
            except ValueError:
                raise CLIError(f"--out-dataset must name an HDF5 dataset, got {args.out_dataset!r}") from None
        elif args.out_dataset != OUT_DATASET:
            raise CLIError(f"--out-dataset names the dataset of an HDF5 output; OUT is {fmt}")
        if fmt == "zarr":
            require("zarr", "--format zarr", "zarr")
        if hasattr(args, "shifts"):
            shifts = output_path(args.shifts) if args.shifts is not None else default_shifts_path(out)
            _netcdf_name(shifts, "--shifts")
        if getattr(args, "qc", False):
            plots = [out.with_name(f"{out.stem}_{n}.png") for n in ("before_after", "shifts")]
    targets = [out] if shifts_only else [out, *([shifts] if shifts is not None else []), *plots]
    inputs = [*args.input]
    inputs += [v for v in (getattr(args, "reference", None), getattr(args, "shifts_file", None)) if v]
    check_targets(targets, args.overwrite, inputs, stores=[out] if fmt == "zarr" else [])
    return Outputs(out, fmt, shifts, plots)


def check_shifts_fit(shifts, movie, shifts_file: Path) -> None:
    """Refuse the shifts of another movie: ``xnormcorre apply`` applies a shifts file to a
    whole movie file, so it must have as many frames and the same frame size as the run.

    (Every movie file's ``time`` starts at its first frame: matching the run's frames by
    label would silently give a shorter file the shifts of the run's first frames.)
    """
    n, h, w = movie.sizes["time"], movie.sizes["y"], movie.sizes["x"]
    problems = []
    if "time" in shifts.sizes and shifts.sizes["time"] != n:
        problems.append(f"{shifts.sizes['time']} frames, not {n}")
    if "y" in shifts.sizes and "x" in shifts.sizes and (shifts.sizes["y"], shifts.sizes["x"]) != (h, w):
        problems.append(f"frames of {shifts.sizes['y']}x{shifts.sizes['x']} px, not {h}x{w}")
    if problems:
        raise CLIError(
            f"the shifts in {str(shifts_file)!r} were estimated on a movie of {' and '.join(problems)} "
            "as IN: they belong to another movie"
        )


def default_shifts_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_shifts.nc")


def require(module: str, why: str, pip: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{why} needs the {module} package: pip install {pip}")


def open_input(
    paths: Sequence[str],
    chunk: int | None,
    dataset: str | None,
    channel: int | str | None = None,
    *,
    single: str | None = None,
):
    """The movie (one channel of it with ``channel``).  ``single`` (the option that selects a
    channel, e.g. ``"--channel"``): a movie with several channels and none selected is an error."""
    import xnormcorre

    target: Any = paths[0] if len(paths) == 1 else list(paths)
    chunks = None if chunk is None else {"time": chunk}
    movie = xnormcorre.open_movie(target, chunks=chunks, dataset=dataset, channel=channel)
    if single is not None and "channel" in movie.dims:
        n = movie.sizes["channel"]
        movie.close()
        raise CLIError(f"{paths[0]!r} holds {n} channels ({channel_list(movie)}): choose one with {single} C")
    return movie


def _in_plane(max_shifts):
    """The (y, x) part of a run's ``max_shifts`` (a volume's are z, y, x)."""
    return None if max_shifts is None else tuple(int(v) for v in list(max_shifts)[-2:])


def qc_plots(args: argparse.Namespace, raw, corrected, shifts_ds, stem: Path) -> list[Path]:
    """Write ``<stem>_before_after.png`` and ``<stem>_shifts.png``; [] without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        print('note: matplotlib is not installed, skipping the QC plots (pip install "xnormcorre[plot]")')
        return []
    from xnormcorre import plot

    out = []
    figs = (
        (
            "before_after",
            lambda: plot.plot_before_after(raw, corrected, crop=_in_plane(shifts_ds.attrs.get("max_shifts"))),
        ),
        ("shifts", lambda: plot.plot_shifts(shifts_ds)),
    )
    from ..io.atomic import write_atomically

    for name, make in figs:
        target = stem.with_name(f"{stem.name}_{name}.png")
        fig = make()
        write_atomically(
            target, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100), overwrite=args.overwrite
        )
        out.append(target)
    return out


def reopen(path: Path, fmt: str, dataset: str):
    """The corrected movie just written, lazily (for QC without recomputing)."""
    import xarray as xr

    import xnormcorre

    if fmt in ("tiff", "hdf5"):
        return xnormcorre.open_movie(path, dataset=dataset if fmt == "hdf5" else None)
    if fmt == "nwb":
        from .saving import reopen_nwb

        return reopen_nwb(path)
    if fmt == "zarr":
        return xr.open_zarr(path)["corrected"]
    return xr.open_dataset(path, chunks={})["corrected"]


def max_shifts_option(values: Sequence[int] | None, movie) -> tuple[int, ...]:
    """``--max-shifts``: Y [X] for a movie (default 6 6), Z Y X for a volume (default: 2 6 6,
    the z bound lowered below half the planes)."""
    plane = plane_dim(movie)
    if plane is None:
        if values is not None and len(values) == 3:
            raise CLIError(
                "--max-shifts takes 1 or 2 integers (Y [X]) for a movie of frames; 3 (Z Y X) only for a "
                f"volume, got {' '.join(map(str, values))}"
            )
        return pair_option(values, "--max-shifts") or (6, 6)
    if values is None:
        return (max(0, min(2, (movie.sizes[plane] - 1) // 2)), 6, 6)
    if len(values) != 3:
        raise CLIError(
            f"--max-shifts takes 3 integers (Z Y X) for a volume ({movie.sizes[plane]} planes along "
            f"{plane!r}), got {len(values)}: {' '.join(map(str, values))}"
        )
    return tuple(int(v) for v in values)


def pair_option(values: Sequence[int] | None, option: str) -> tuple[int, int] | None:
    """``--option Y [X]``: one value for both axes, or (y, x)."""
    if values is None:
        return None
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    raise CLIError(f"{option} takes 1 or 2 integers (Y [X]), got {len(values)}: {' '.join(map(str, values))}")


def out_dtype(name: str | None, movie) -> Any:
    """``--dtype``: None (float32), the input's (``same``) or a NumPy dtype."""
    import numpy as np

    if name is None:
        return None
    return movie.dtype if name == "same" else np.dtype(name)


def write_movie(args: argparse.Namespace, da, path: Path, fmt: str, *, dtype, attrs=None, along=None):
    """Write the corrected movie ``da`` at ``path`` in ``fmt`` (atomically, with a progress bar;
    resumably with ``--resume`` for TIFF and HDF5); ``along``: variables computed in the same
    pass and returned (see :func:`xnormcorre.io.writers.write_movie`)."""
    from ..io.resumable import partial_status
    from ..io.writers import RESUMABLE_FORMATS
    from ..io.writers import write_movie as write

    resume = bool(getattr(args, "resume", False)) and fmt in RESUMABLE_FORMATS
    status = partial_status(path) if resume else None
    if status is not None:
        log(
            args,
            f"resuming the write of {path}: {status['frames_done']} of {status['n_frames']} frames written",
        )
    return write(
        da,
        path,
        fmt=fmt,
        overwrite=args.overwrite,
        dtype=dtype,
        dataset=args.out_dataset,
        attrs=attrs,
        progress=not args.quiet,
        along=along,
        resume=resume,
    )


def write_shifts(ds, path: Path, *, overwrite: bool) -> None:
    """Write the shifts NetCDF (the result without the corrected movie), atomically."""
    from ..io.writers_store import to_netcdf

    to_netcdf(ds, path, overwrite=overwrite)


@contextlib.contextmanager
def progress(args: argparse.Namespace, desc: str) -> Iterator[None]:
    """A tqdm bar over the dask tasks computed inside the block (none with --quiet)."""
    if getattr(args, "quiet", False):
        yield
        return
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc, unit="task", leave=True):
        yield
