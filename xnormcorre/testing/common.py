"""Argument checks and the finite-difference stencil shared by the movie simulator
(:mod:`xnormcorre.testing.simulate`) and the Cramér-Rao bound (:mod:`xnormcorre.testing.crlb`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["FIVE_POINT", "check_bounds", "derivative", "finite", "integer", "nonnegative", "positive"]

#: Fourth-order central difference (the 5-point first-derivative stencil).
FIVE_POINT = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0


def derivative(a: np.ndarray, axis: int) -> np.ndarray:
    """First derivative of ``a`` along ``axis`` by the 5-point stencil (edges replicated)."""
    return ndimage.correlate1d(a, FIVE_POINT, axis=axis, mode="nearest")


def finite(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {v!r}") from None
    if not np.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


def positive(v, name: str) -> float:
    f = finite(v, name)
    if f <= 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return f


def nonnegative(v, name: str) -> float:
    f = finite(v, name)
    if f < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return f


def integer(v, name: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return int(v)


def check_bounds(bounds, n: int, name: str) -> list[tuple[int, int]]:
    out = []
    for b in bounds:
        a, c = (int(x) for x in b)
        if not 0 <= a < c <= n:
            raise ValueError(f"{name} entries must satisfy 0 <= start < stop <= {n}, got {tuple(b)}")
        out.append((a, c))
    if not out:
        raise ValueError(f"{name} must hold at least one (start, stop) pair")
    return out
