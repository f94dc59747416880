"""Assertions on recovered shifts."""

from __future__ import annotations

import numpy as np

from ..qc.metrics import shift_errors, shift_rmse

__all__ = ["assert_shifts_close", "shift_rmse"]


def assert_shifts_close(estimated, true, *, atol: float, remove_offset: bool = True) -> None:
    """Assert every shift is within ``atol`` px of the truth (after offset removal).

    Examples
    --------
    >>> assert_shifts_close([[1.0, 2.0], [3.0, 4.1]], [[0.0, 1.0], [2.0, 3.0]], atol=0.2)
    """
    d = shift_errors(estimated, true, remove_offset=remove_offset)
    worst = float(np.abs(d).max())
    if worst > atol:
        idx = np.unravel_index(np.argmax(np.abs(d)), d.shape)
        raise AssertionError(f"shift error {worst:.4f} px > atol {atol} px at index {idx}")
