"""Assertions on recovered shifts."""

from __future__ import annotations

import numpy as np
import xarray as xr


def _arr(a) -> np.ndarray:
    return np.asarray(a.values if isinstance(a, xr.DataArray) else a, dtype=np.float64)


def shift_rmse(estimated, true, *, remove_offset: bool = True) -> float:
    """Root-mean-square error of per-frame shift vectors ``(T, 2)`` in pixels.

    With ``remove_offset`` the median difference over frames (the constant offset of
    the estimated template relative to the true reference) is removed first, as in
    the benchmark convention of anchors.md §b M6.

    Examples
    --------
    >>> shift_rmse([[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [2.0, 3.0]])
    0.0
    """
    d = _arr(estimated) - _arr(true)
    if remove_offset:
        d = d - np.median(d.reshape(-1, d.shape[-1]), axis=0)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=-1))))


def assert_shifts_close(estimated, true, *, atol: float, remove_offset: bool = True) -> None:
    """Assert every shift is within ``atol`` px of the truth (after offset removal)."""
    d = _arr(estimated) - _arr(true)
    if remove_offset:
        d = d - np.median(d.reshape(-1, d.shape[-1]), axis=0)
    worst = float(np.abs(d).max())
    if worst > atol:
        idx = np.unravel_index(np.argmax(np.abs(d)), d.shape)
        raise AssertionError(f"shift error {worst:.4f} px > atol {atol} px at index {idx}")
