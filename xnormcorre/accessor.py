"""The ``.normcorre`` DataArray accessor: a thin, stateless shim over :mod:`xnormcorre.core`."""

from __future__ import annotations

import xarray as xr

from . import core


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
        return core.rigid(self._obj, **kwargs)

    def template(self, **kwargs) -> xr.DataArray:
        """Estimate a template; see :func:`xnormcorre.estimate_template`."""
        return core.estimate_template(self._obj, **kwargs)
