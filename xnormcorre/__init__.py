"""xnormcorre: NoRMCorre motion correction of calcium-imaging movies, on JAX, for xarray.

Sign convention: a shift is the displacement of the frame content relative to the
template; the corrected frame is the frame moved by -shift.

``import xnormcorre`` registers the ``.normcorre`` accessors and is light: JAX, SciPy
and the I/O libraries are imported on first use of the functions that need them (so
that xarray, which imports every installed backend plugin, stays fast for everyone).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import accessor  # noqa: F401  (registers the .normcorre accessors; imports xarray only)
from .schema import parameters_from_attrs

try:
    __version__ = version("xnormcorre")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0+unknown"

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "Corrector": "xnormcorre.core",
    "apply_shifts": "xnormcorre.core",
    "as_movie": "xnormcorre.core",
    "online": "xnormcorre.core",
    "estimate_template": "xnormcorre.core",
    "get_patch_start_and_end_coords": "xnormcorre.core",
    "highpass": "xnormcorre.core",
    "map_frames": "xnormcorre.core",
    "patch_grid": "xnormcorre.core",
    "pwrigid": "xnormcorre.core",
    "quality_flags": "xnormcorre.qc",
    "RegistrationWarning": "xnormcorre.qc.diagnose",
    "rigid": "xnormcorre.core",
    "shifts_from": "xnormcorre.core",
    "correct_scan_phase": "xnormcorre.core.scanphase",
    "scan_phase": "xnormcorre.core.scanphase",
    "open_movie": "xnormcorre.io",
    "to_hdf5": "xnormcorre.io",
    "to_tiff": "xnormcorre.io",
    "to_nwb": "xnormcorre.io.nwb",
}
_SUBMODULES = ("core", "datasets", "engine", "io", "metrics", "plot", "qc", "testing", "cli")

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets, metrics, plot
    from .core import (
        Corrector,
        apply_shifts,
        as_movie,
        estimate_template,
        get_patch_start_and_end_coords,
        highpass,
        map_frames,
        online,
        patch_grid,
        pwrigid,
        rigid,
        shifts_from,
    )
    from .core.scanphase import correct_scan_phase, scan_phase
    from .io import open_movie, to_hdf5, to_tiff
    from .qc import quality_flags


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"xnormcorre.{name}")
    else:
        raise AttributeError(f"module 'xnormcorre' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


__all__ = [
    "RegistrationWarning",
    "__version__",
    "apply_shifts",
    "correct_scan_phase",
    "Corrector",
    "as_movie",
    "datasets",
    "estimate_template",
    "get_patch_start_and_end_coords",
    "highpass",
    "map_frames",
    "metrics",
    "online",
    "open_movie",
    "parameters_from_attrs",
    "patch_grid",
    "plot",
    "pwrigid",
    "quality_flags",
    "rigid",
    "scan_phase",
    "shifts_from",
    "to_hdf5",
    "to_nwb",
    "to_tiff",
]
