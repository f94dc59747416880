"""xnormcorre: NoRMCorre motion correction of calcium-imaging movies, on JAX, for xarray.

Sign convention: a shift is the displacement of the frame content relative to the
template; the corrected frame is the frame moved by -shift.
"""

from importlib.metadata import PackageNotFoundError, version

from . import accessor, datasets, metrics, plot  # noqa: F401  (registers the .normcorre accessors)
from .conventions import parameters_from_attrs
from .core import (
    apply_shifts,
    estimate_template,
    get_patch_start_and_end_coords,
    highpass,
    map_frames,
    patch_grid,
    pwrigid,
    rigid,
)
from .io import open_movie, to_hdf5, to_tiff

try:
    __version__ = version("xnormcorre")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "apply_shifts",
    "datasets",
    "estimate_template",
    "get_patch_start_and_end_coords",
    "highpass",
    "map_frames",
    "metrics",
    "open_movie",
    "parameters_from_attrs",
    "patch_grid",
    "plot",
    "pwrigid",
    "rigid",
    "to_hdf5",
    "to_tiff",
]
