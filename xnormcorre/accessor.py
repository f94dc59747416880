"""The ``.normcorre`` DataArray accessor: a thin, stateless shim over :mod:`xnormcorre.core`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import xarray as xr


def _core():
    """:mod:`xnormcorre.core`, imported on first use (keeps ``import xnormcorre`` light)."""
    return importlib.import_module("xnormcorre.core")


if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


@xr.register_dataarray_accessor("normcorre")
class NormCorreAccessor:
    """Motion correction of a ``(time, y, x)`` movie: ``movie.normcorre.rigid(...)``.

    The accessor keeps no state: each method is one call into the functional API
    with the DataArray as first argument, so ``movie.normcorre.rigid(**kw)`` is
    identical to ``xnormcorre.rigid(movie, **kw)``.
    """

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def rigid(self, **kwargs) -> xr.Dataset:
        """Rigid registration; see :func:`xnormcorre.rigid` for the parameters.

        Examples
        --------
        >>> import xnormcorre
        >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=10, shape=(64, 64), max_shift=2)
        >>> movie.normcorre.rigid(max_shifts=4).shifts.shape
        (10, 2)
        """
        return _core().rigid(self._obj, **kwargs)

    def pwrigid(self, **kwargs) -> xr.Dataset:
        """Piecewise-rigid registration; see :func:`xnormcorre.pwrigid` for the parameters.

        Examples
        --------
        >>> import xnormcorre
        >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=8, shape=(96, 96), max_shift=2)
        >>> movie.normcorre.pwrigid(max_shifts=4, strides=48, overlaps=24).shifts.shape
        (8, 2, 2, 2)
        """
        return _core().pwrigid(self._obj, **kwargs)

    def apply_shifts(self, shifts, **kwargs) -> xr.DataArray:
        """Re-apply known shifts; see :func:`xnormcorre.apply_shifts` for the parameters.

        Examples
        --------
        >>> import xnormcorre
        >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=10, shape=(64, 64), max_shift=2)
        >>> res = movie.normcorre.rigid(max_shifts=4)
        >>> bool((movie.normcorre.apply_shifts(res) == res.corrected).all())
        True
        """
        return _core().apply_shifts(self._obj, shifts, **kwargs)

    def template(self, **kwargs) -> xr.DataArray:
        """Estimate a template; see :func:`xnormcorre.estimate_template`."""
        return _core().estimate_template(self._obj, **kwargs)


@xr.register_dataset_accessor("normcorre")
class NormCorreDatasetAccessor:
    """Quality-control plots of a registration result: ``res.normcorre.plot_shifts()``.

    Stateless, like the DataArray accessor: each method is one call into
    :mod:`xnormcorre.plot` with the result Dataset as first argument.  Needs matplotlib
    (``pip install "xnormcorre[plot]"``); every method returns a matplotlib Figure.
    """

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    def plot_shifts(self) -> Figure:
        """Shift traces over time; see :func:`xnormcorre.plot.plot_shifts`.

        Examples
        --------
        >>> import xnormcorre
        >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=10, shape=(64, 64), max_shift=2)
        >>> len(movie.normcorre.rigid(max_shifts=4).normcorre.plot_shifts().axes)
        2
        """
        from . import plot

        return plot.plot_shifts(self._obj)

    def plot_patch_field(self, t: int = 0, **kwargs: Any) -> Figure:
        """Quiver of the shifts of frame ``t``; see :func:`xnormcorre.plot.plot_patch_field`."""
        from . import plot

        return plot.plot_patch_field(self._obj, t, **kwargs)

    def plot_before_after(self, raw: xr.DataArray, **kwargs: Any) -> Figure:
        """Mean images and correlation traces; see :func:`xnormcorre.plot.plot_before_after`."""
        from . import plot

        return plot.plot_before_after(raw, self._obj, **kwargs)
