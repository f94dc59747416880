"""Labeled API: xarray in, xarray out.  Each function wraps one engine step."""

from .apply import apply_shifts
from .filters import highpass, map_frames
from .pwrigid import get_patch_start_and_end_coords, patch_grid, pwrigid
from .rigid import estimate_template, rigid

__all__ = [
    "apply_shifts",
    "estimate_template",
    "get_patch_start_and_end_coords",
    "highpass",
    "map_frames",
    "patch_grid",
    "pwrigid",
    "rigid",
]
