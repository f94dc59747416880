"""Command line interface: ``xnormcorre demo | correct | apply | info``.

``xnormcorre correct IN -o OUT`` opens a TIFF or HDF5 movie lazily, registers it
(rigid or piecewise rigid), writes the corrected movie (TIFF, HDF5, zarr or NetCDF)
and the shifts NetCDF next to it; ``xnormcorre apply SHIFTS.nc IN -o OUT`` re-applies
saved shifts; ``xnormcorre info IN`` describes a movie without reading pixels;
``xnormcorre demo`` corrects a built-in synthetic movie.  ``xnormcorre COMMAND --help``
documents each command.

Every output is written under a temporary name in the target folder and renamed when
complete, so an error or Ctrl-C leaves no partial file; an existing output is replaced
only with ``--overwrite``; every output option and location is checked before any
compute.  Errors are reported as one line ``error: ...`` on stderr with exit status 1
(2 for command-line usage errors, 130 for Ctrl-C); ``--traceback`` shows the Python
traceback instead.  Warnings (e.g. pixels clipped by an integer ``--dtype``) are one
line ``warning: ...``.
"""

from __future__ import annotations

import sys
import warnings

from .output import CLIError, one_line
from .parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line ``warning: ...`` on stderr (as errors are ``error: ...``)."""
    text = message if isinstance(message, str) else one_line(message)
    print(f"warning: {text}", file=sys.stderr if file is None else file, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xnormcorre`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("xnormcorre: interrupted; no output written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, KeyError, ImportError, NotImplementedError) as exc:
        if args.traceback:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected failure: still one line, the traceback on request
        if args.traceback:
            raise
        kind = type(exc).__qualname__
        if type(exc).__module__ not in ("builtins", "__main__"):
            kind = f"{type(exc).__module__}.{kind}"
        print(
            f"error: unexpected {kind}: {one_line(exc)} (rerun with --traceback for details)",
            file=sys.stderr,
        )
        return 1
