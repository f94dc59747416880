"""Labeled API: xarray in, xarray out.  Each function wraps one engine step."""

from .apply import apply_shifts
from .convention import shifts_from
from .corrector import Corrector
from .filters import highpass, map_frames
from .grid import get_patch_start_and_end_coords, patch_grid
from .loader import as_movie
from .online import online
from .pwrigid import pwrigid
from .rigid import rigid
from .template import estimate_template

__all__ = [
    "Corrector",
    "apply_shifts",
    "as_movie",
    "estimate_template",
    "get_patch_start_and_end_coords",
    "highpass",
    "map_frames",
    "online",
    "patch_grid",
    "pwrigid",
    "rigid",
    "shifts_from",
]
