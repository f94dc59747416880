"""Patch geometry of piecewise-rigid registration, in one place (NumPy only).

Patches (CaImAn/jnormcorre semantics): patch size = ``strides + overlaps``; patch starts
along an axis of length ``n`` are ``range(0, n - size, stride)`` plus a last patch
flush with the far edge (``n - size``), so every pixel is covered by full-size patches
and any frame at least one patch large works.  MATLAB NoRMCorre's ``grid_size``
corresponds to ``strides`` and its ``overlap_pre`` to ``overlaps / 2`` on each side.
Patch centres are ``start + (size - 1) / 2``; the dense displacement field interpolates
the patch shifts linearly between centres (:func:`interp_matrix`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["PatchAxis", "interp_matrix", "patch_axis", "patch_centres", "patch_starts"]


def patch_starts(n: int, stride: int, overlap: int) -> list[int]:
    """Start pixels of the patches along one axis (CaImAn ``sliding_window``).

    Examples
    --------
    >>> patch_starts(128, 48, 24)
    [0, 48, 56]
    >>> patch_starts(72, 48, 24)
    [0]
    """
    size = stride + overlap
    if n < size:
        raise ValueError(f"patch size strides + overlaps = {size} is larger than the frame ({n} px)")
    return sorted({*range(0, n - size, stride), n - size})


def patch_centres(starts, size: int) -> np.ndarray:
    """Patch centres in pixels (``start + (size - 1) / 2``)."""
    return np.asarray(starts, dtype=np.float64) + (size - 1) / 2.0


class PatchAxis(NamedTuple):
    """The patches along one axis: starts, stops (exclusive) and centres, in pixels."""

    starts: np.ndarray
    stops: np.ndarray
    centres: np.ndarray
    size: int


def patch_axis(n: int, stride: int, overlap: int) -> PatchAxis:
    """Every fact about the patches along an axis of ``n`` pixels.

    Examples
    --------
    >>> ax = patch_axis(128, 48, 24)
    >>> ax.starts.tolist(), ax.stops.tolist(), ax.centres.tolist()
    ([0, 48, 56], [72, 120, 128], [35.5, 83.5, 91.5])
    """
    size = stride + overlap
    starts = np.asarray(patch_starts(n, stride, overlap), np.int64)
    return PatchAxis(starts, starts + size, patch_centres(starts, size), size)


def interp_matrix(n: int, centres: np.ndarray) -> np.ndarray:
    """``(n, len(centres))`` linear-interpolation weights from patch centres to pixels.

    Constant extrapolation beyond the first/last centre; rows sum to one.
    """
    m = len(centres)
    wts = np.zeros((n, m), np.float32)
    if m == 1:
        wts[:, 0] = 1.0
        return wts
    pos = np.clip(np.arange(n, dtype=np.float64), centres[0], centres[-1])
    k = np.clip(np.searchsorted(centres, pos, side="right") - 1, 0, m - 2)
    t = (pos - centres[k]) / (centres[k + 1] - centres[k])
    wts[np.arange(n), k] = 1.0 - t
    wts[np.arange(n), k + 1] += t
    return wts
