"""The ``.normcorre`` DataArray accessor: a thin, stateless shim over :mod:`xnormcorre.core`."""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import xarray as xr


def _core():
    """:mod:`xnormcorre.core`, imported on first use (keeps ``import xnormcorre`` light)."""
    return importlib.import_module("xnormcorre.core")


if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


class _Delegate:
    """An accessor method that is one call of a function of :mod:`xnormcorre.core` with the
    accessor's object as first argument.

    The function is imported on first use (``import xnormcorre`` stays light) and the
    method carries its docstring and signature (less the first parameter), so that
    ``help()``, Jupyter's Shift-Tab and ``inspect.signature`` show the real parameters.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def _function(self) -> Callable:
        return getattr(_core(), self.name)

    def __get__(self, obj: Any, objtype: type | None = None) -> Callable:
        fn = self._function()
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())[1:]

        if obj is None:  # on the class (documentation): the unbound form, (self, ...)

            @functools.wraps(fn)
            def unbound(accessor, *args, **kwargs):
                return fn(accessor._obj, *args, **kwargs)

            self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
            unbound.__signature__ = sig.replace(parameters=[self_param, *params])
            return unbound

        @functools.wraps(fn)
        def method(*args, **kwargs):
            return fn(obj._obj, *args, **kwargs)

        method.__signature__ = sig.replace(parameters=params)
        return method


@xr.register_dataarray_accessor("normcorre")
class NormCorreAccessor:
    """Motion correction of a ``(time, y, x)`` movie: ``movie.normcorre.rigid(...)``.

    The accessor keeps no state: each method is one call into the functional API
    with the DataArray as first argument, so ``movie.normcorre.rigid(**kw)`` is
    identical to ``xnormcorre.rigid(movie, **kw)``, with the same parameters and
    documentation.

    Examples
    --------
    >>> import inspect, xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=10, shape=(64, 64), max_shift=2)
    >>> res = movie.normcorre.rigid(max_shifts=4)
    >>> res.shifts.shape
    (10, 2)
    >>> bool((movie.normcorre.apply_shifts(res) == res.corrected).all())
    True
    >>> "max_shifts" in inspect.signature(movie.normcorre.rigid).parameters
    True
    >>> pw = xnormcorre.datasets.synthetic_movie(n_frames=8, shape=(96, 96), max_shift=2)
    >>> pw.normcorre.pwrigid(max_shifts=4, strides=48, overlaps=24).shifts.shape
    (8, 2, 2, 2)
    """

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    #: Rigid registration: :func:`xnormcorre.rigid`.
    rigid = _Delegate("rigid")
    #: Piecewise-rigid registration: :func:`xnormcorre.pwrigid`.
    pwrigid = _Delegate("pwrigid")
    #: Re-apply known shifts: :func:`xnormcorre.apply_shifts`.
    apply_shifts = _Delegate("apply_shifts")
    #: Estimate a template: :func:`xnormcorre.estimate_template`.
    template = _Delegate("estimate_template")


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
