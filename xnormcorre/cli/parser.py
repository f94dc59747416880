"""The ``xnormcorre`` argument parser: commands, options, help texts."""

from __future__ import annotations

import argparse

from ..schema import BORDERS
from . import commands
from .output import DTYPES, FORMATS

__all__ = ["build_parser"]

_EPILOG_CORRECT = """\
examples:
  xnormcorre correct session1.tif -o corrected.tif
  xnormcorre correct session1/*.tif -o corrected.h5 --max-shifts 12 12 --chunk 500
  xnormcorre correct green.h5 --dataset mov -o corrected.zarr --pw-rigid --strides 48 48 --overlaps 24 24
  xnormcorre correct gcamp.tif --reference tdtomato.tif -o corrected.tif   (estimate on one, apply to the other)
  xnormcorre correct session1.h5 --dataset green --reference red -o corrected.tif   (HDF5 channel)
  xnormcorre correct rig.tif --channel 1 --reference-channel 0 --scan-phase auto -o out.tif
      (two-channel file: shifts from channel 0, applied to channel 1; bidirectional scan phase removed)
  xnormcorre correct session1.tif --shifts-only -o shifts.nc
  xnormcorre correct session1.tif -o session1.nwb   (NWB: ophys MotionCorrection, needs pynwb)
  xnormcorre correct session1.tif -o corrected.tif --resume
      (shifts kept chunk by chunk in corrected_shifts.zarr; after a crash, the same
      command registers only the chunks not done)

Outputs: the corrected movie at OUT (format from --format or OUT's suffix:
.tif/.tiff, .h5/.hdf5, .zarr, .nc, .nwb) and its shifts NetCDF next to it as
<OUT stem>_shifts.nc (or --shifts PATH); with --shifts-only, OUT is the shifts file.
The shifts NetCDF is the result Dataset without the corrected movie: shifts
(time, axis) [piecewise rigid: (time, patch_y, patch_x, axis) and rigid_shifts],
template, correlation, quality flags, the scan phase used (with --scan-phase), and
every parameter in its attributes; a shift is the displacement of the frame content
relative to the template.  The scan phase is the displacement along x of the odd
scan lines relative to the even lines (px); the odd lines are moved by -phase.
--format zarr needs the zarr package (pip install zarr).
"""

_EPILOG_APPLY = """\
examples:
  xnormcorre apply corrected_shifts.nc session1.tif -o again.tif
  xnormcorre apply green_shifts.nc red.tif -o red_corrected.tif   (second channel)

Rigid shifts are re-applied exactly as `correct` applied them (bit for bit with the
same border), with the scan phase `correct` removed (--scan-phase overrides it).  --format zarr needs the zarr package (pip install zarr).
"""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (and exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(convert: type, ok, expected: str):
    """An argparse ``type``: ``convert(text)``, accepted where ``ok(value)``, else the error
    "expected <expected>, got <text>"."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: v > 0 and v != float("inf"), "a positive number")


def _channel(text: str) -> int | str:
    """A channel index (an integer) or name."""
    try:
        return int(text)
    except ValueError:
        return text


def _scan_phase(text: str) -> str | float | None:
    """``auto``, ``none`` or a number of pixels."""
    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'none' or a number of pixels, got {text!r}"
        ) from None
    if value != value or abs(value) == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of pixels, got {text!r}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("messages")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress messages")
    g.add_argument("--traceback", action="store_true", help="show the Python traceback of an error")


def _add_input(p: argparse.ArgumentParser, *, nargs: str = "+") -> None:
    p.add_argument(
        "input",
        nargs=nargs,
        metavar="IN",
        help="movie: a multi-page TIFF, an HDF5 file, a Scanbox .sbx file, or several TIFF files (or a quoted "
        "glob) as one movie",
    )
    p.add_argument(
        "--dataset", metavar="NAME", help="HDF5 dataset holding the movie (default: the only 3-D one)"
    )
    p.add_argument(
        "--channel",
        type=_channel,
        metavar="C",
        help="channel of a multi-channel file (ImageJ hyperstack, OME-TIFF, ScanImage, Scanbox): index "
        "from 0 or name",
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


def _add_pair(g, flag: str, help: str, default: list[int] | None = None) -> None:
    """An option of (y, x) pixels: one value for both axes, or Y X."""
    g.add_argument(flag, type=int, nargs="+", default=default, metavar=("Y", "X"), help=help)


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
    d.set_defaults(func=commands.demo)

    c = sub.add_parser(
        "correct",
        help="motion-correct a TIFF/HDF5/Scanbox movie; write the corrected movie and its shifts",
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
        "--planes",
        choices=("volume", "independent"),
        help="a movie with a plane dim (time, z, y, x): 'volume' registers each volume in 3-D (the default; "
        "--max-shifts Z Y X, with --pw-rigid also --strides/--overlaps Z Y X), 'independent' each plane "
        "alone in 2-D (--max-shifts Y [X])",
    )
    r.add_argument(
        "--plane-dim", default="z", metavar="NAME", help="name of the plane dim of the movie (default: z)"
    )
    _add_pair(
        r,
        "--max-shifts",
        "largest displacement searched, px; one value for both axes or Y X (default: 6 6); "
        "Z Y X for a volume (a movie with a z dim; default: 2 6 6, z below half the planes)",
    )
    _add_pair(
        r, "--strides", "pw-rigid: distance between patch starts, px (default: 96 96); Z Y X for a volume"
    )
    _add_pair(
        r,
        "--overlaps",
        "pw-rigid: overlap added to each patch, px; patch = strides + overlaps (default: 32 32); Z Y X for "
        "a volume",
    )
    r.add_argument(
        "--max-deviation-rigid",
        type=_nonneg_int,
        metavar="N",
        help="pw-rigid: largest deviation of a patch from the rigid shift, px (default: 3)",
    )
    r.add_argument(
        "--refine-patches",
        action="store_true",
        help="pw-rigid: refine each patch's shift by a noise-weighted Gauss-Newton step (closer to the "
        "noise limit on simulated movies; about 1.3x slower; default: off, on for a volume)",
    )
    r.add_argument(
        "--reference",
        metavar="CHANNEL_OR_FILE",
        help="estimate the shifts on this movie and apply them to IN: a file of the same shape, or the name "
        "of another dataset (channel) of the HDF5 input",
    )
    r.add_argument("--reference-dataset", metavar="NAME", help="HDF5 dataset of a --reference file")
    r.add_argument(
        "--reference-channel",
        type=_channel,
        metavar="C",
        help="estimate the shifts on this channel (index or name) of IN -- or of the --reference file -- "
        "and apply them to IN's --channel",
    )
    r.add_argument(
        "--scan-phase",
        type=_scan_phase,
        metavar="auto|PX",
        help="remove a bidirectional scan phase first: 'auto' estimates it (on the reference when there is "
        "one), or the odd lines' offset along x in px (default: none)",
    )
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
    w.add_argument(
        "--fps",
        type=_positive_float,
        metavar="HZ",
        help="frame rate written to an NWB output (default: from the input file's metadata)",
    )
    w.add_argument(
        "--resume",
        action="store_true",
        help="keep the per-chunk results in a zarr store (<OUT stem>_shifts.zarr or --store) and continue "
        "it if it exists: after a crash only the chunks not done are registered (same result, bit for bit); "
        "a TIFF, HDF5 or zarr OUT is written resumably too: an interrupted write continues from its first "
        "missing frame",
    )
    w.add_argument(
        "--store",
        metavar="PATH",
        help="zarr store of the per-chunk results (default with --resume: "
        "<OUT stem>_shifts.zarr); needs zarr",
    )
    _add_common(c)
    c.set_defaults(func=commands.correct)

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
    a.add_argument(
        "--resume",
        action="store_true",
        help="write a TIFF, HDF5 or zarr OUT resumably: after a crash, the same command continues the "
        "interrupted write from its first missing frame (the same file as an uninterrupted run)",
    )
    a.add_argument(
        "--fps",
        type=_positive_float,
        metavar="HZ",
        help="frame rate written to an NWB output (default: from the input file's metadata)",
    )
    a.add_argument(
        "--scan-phase",
        type=_scan_phase,
        metavar="auto|PX|none",
        default=argparse.SUPPRESS,
        help="bidirectional scan phase removed first (default: the one the run removed, if any)",
    )
    _add_common(a)
    a.set_defaults(func=commands.apply)

    i = sub.add_parser(
        "info",
        help="describe a movie (shape, channels, dtype, chunks, engine) without reading pixels",
        description="Print the shape, channels, dtype, size, chunks, xarray engine and acquisition metadata "
        "(frame rate, zoom, pixel size, bidirectional scanning) of a TIFF/HDF5/Scanbox movie without "
        "reading its pixels (or the variables of a NetCDF/zarr result).",
    )
    _add_input(i)
    _add_common(i)
    i.set_defaults(func=commands.info)
    return p
