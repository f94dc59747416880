"""Bidirectional scan phase, labeled: :func:`scan_phase`, :func:`correct_scan_phase`.

Resonant two-photon microscopes write every other line while the mirror sweeps back;
a small timing error displaces the lines of one direction along ``x`` ("combed"
edges).  :func:`scan_phase` estimates that displacement to a fraction of a pixel from
a mean image (or from the mean of each time window, for an offset that drifts during a
long recording), :func:`correct_scan_phase` removes it lazily from every frame and
channel, and :func:`resolve_scan_phase` is the one-call form used by the registration
functions' ``scan_phase=`` option.

Sign convention: the phase is the displacement of the odd lines' content (rows 1, 3, 5
... of the full frame) relative to the even lines, along ``x``; the correction moves the
odd lines by ``-phase``.  NoRMCorre's ``col_shift`` and suite2p's ``bidiphase`` report
the correction, i.e. ``-phase``.  The numerics are in :mod:`xnormcorre.engine.scanphase`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as cv
from ..engine import scanphase as _sp
from .movie import check_reference
from .scanphase_estimate import (
    BASE_ATTRS,
    PHASE_NAME,
    as_data,
    check_real,
    line_parity,
    scan_phase,
)

__all__ = [
    "correct_scan_phase",
    "phase_attrs",
    "record_scan_phase",
    "resolve_scan_phase",
    "scan_phase",
    "scan_phase_inputs",
    "scan_phase_parameter",
]

#: Pixels per time chunk when a lazily opened (not dask-backed) movie is corrected.
_CHUNK_PIXELS = 2**24


_estimate = scan_phase  # resolve_scan_phase's argument shadows the name


def _phase_array(phase: Any, movie: xr.DataArray) -> float | xr.DataArray:
    """A scalar phase (float) or a per-frame ``(time,)`` DataArray in the movie's frame order."""
    if isinstance(phase, xr.DataArray):
        if phase.ndim == 0:
            return check_real(float(phase), "phase")
        if phase.dims != (cv.DIM_TIME,):
            raise ValueError(f"phase must be a scalar or have dims ('time',), got {phase.dims}")
    elif np.ndim(phase) == 0:
        return check_real(phase, "phase")
    else:
        arr = np.asarray(phase, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"phase must be a number or one value per frame, got shape {arr.shape}")
        phase = xr.DataArray(arr, dims=(cv.DIM_TIME,))
    if cv.DIM_TIME not in movie.dims:
        raise ValueError(f"a per-frame phase needs a movie with a 'time' dim, got dims {movie.dims}")
    n = movie.sizes[cv.DIM_TIME]
    if cv.DIM_TIME in phase.coords and cv.DIM_TIME in movie.coords:
        same = phase.sizes[cv.DIM_TIME] == n and np.array_equal(
            phase[cv.DIM_TIME].values, movie[cv.DIM_TIME].values
        )
        if not same:
            try:
                phase = phase.sel({cv.DIM_TIME: movie[cv.DIM_TIME].values})
            except KeyError as exc:
                raise ValueError(
                    "the per-frame phase does not cover the movie's time labels; estimate it on the same movie "
                    "(e.g. another channel of it) or pass one value"
                ) from exc
    elif phase.sizes[cv.DIM_TIME] != n:
        raise ValueError(f"phase has {phase.sizes[cv.DIM_TIME]} values for a movie of {n} frames")
    values = np.asarray(phase.values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("phase holds NaN or Inf values")
    return xr.DataArray(values, dims=(cv.DIM_TIME,))


def correct_scan_phase(movie: xr.DataArray | np.ndarray, phase: Any) -> xr.DataArray:
    """Remove a bidirectional scan phase: move the odd lines by ``-phase`` along ``x``.

    Lazy on dask-backed input (one task per time chunk) and on a lazily opened file
    (``xr.open_dataarray(..., engine=...)`` without chunks: the result is dask-backed,
    read in time chunks); every channel and any other dim is corrected with the same
    phase per frame.

    Parameters
    ----------
    movie : DataArray or array
        ``(time, y, x)``, ``(time, channel, y, x)``, or any DataArray with ``y`` and
        ``x`` dims.  Integer ``y`` labels set the line parity.
    phase : float, scalar DataArray, ``(time,)`` DataArray or array
        From :func:`scan_phase` (px; the sign convention is in its notes): one value,
        or one per frame (matched to the movie by ``time`` label when both have them,
        else by position).

    Returns
    -------
    xarray.DataArray
        float32, the movie's dims, coordinates and attrs; the odd lines are resampled
        at ``x + phase`` with a cubic B-spline (positions beyond the frame edge take
        the edge value), the even lines are unchanged.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xnormcorre
    >>> ramp = xr.DataArray(np.tile(np.arange(32.0), (2, 4, 1)), dims=("time", "y", "x"))
    >>> fixed = xnormcorre.correct_scan_phase(ramp, 2.0)
    >>> fixed.isel(time=0, x=5).values  # odd lines now sample x + 2
    array([5., 7., 5., 7.], dtype=float32)
    """
    movie = as_data(movie)
    first_row = line_parity(movie)
    ph = _phase_array(phase, movie)
    dims = movie.dims

    def kernel(frames: np.ndarray, p: Any = None, *, scalar: float | None = None) -> np.ndarray:
        value = scalar if scalar is not None else np.asarray(p)
        return _sp.shift_odd_rows(frames, value, first_row=first_row)

    if movie.chunks is not None:
        data = movie.chunk({cv.DIM_Y: -1, cv.DIM_X: -1})
    elif not movie.variable._in_memory and cv.DIM_TIME in movie.dims:
        # a lazily opened file (no dask): read and correct it chunk by chunk, not whole
        frame = int(np.prod([n for d, n in movie.sizes.items() if d != cv.DIM_TIME]))
        data = movie.chunk({cv.DIM_TIME: max(1, _CHUNK_PIXELS // max(frame, 1))})
    else:
        data = movie
    if isinstance(ph, float):
        out = xr.apply_ufunc(
            kernel,
            data,
            input_core_dims=[[cv.DIM_Y, cv.DIM_X]],
            output_core_dims=[[cv.DIM_Y, cv.DIM_X]],
            kwargs={"scalar": ph},
            dask="parallelized",
            output_dtypes=[np.float32],
            keep_attrs=True,
        )
        description = f"odd lines moved by {-ph:+.4f} px along x (scan phase {ph:+.4f} px)"
    else:
        if data.chunks is not None:
            ph = ph.chunk({cv.DIM_TIME: data.chunksizes[cv.DIM_TIME]})
        out = xr.apply_ufunc(
            kernel,
            data,
            ph,
            input_core_dims=[[cv.DIM_Y, cv.DIM_X], []],
            output_core_dims=[[cv.DIM_Y, cv.DIM_X]],
            dask="parallelized",
            output_dtypes=[np.float32],
            keep_attrs=True,
        )
        description = "odd lines moved by -phase along x, one phase per frame"
    out = out.transpose(*dims)
    out.name = movie.name
    out.attrs = {**movie.attrs, "scan_phase_correction": description}
    return out


def resolve_scan_phase(
    movie: xr.DataArray,
    scan_phase: None | str | float | xr.DataArray,
    *,
    window: int | None = None,
    max_phase: float = 10.0,
) -> tuple[xr.DataArray, xr.DataArray | None]:
    """Apply a registration's ``scan_phase=`` option: ``(corrected movie, phase used)``.

    Parameters
    ----------
    movie : DataArray
        The movie (lazy input stays lazy, except that ``"auto"`` computes the mean
        images the estimate needs).
    scan_phase : None, "auto", float or DataArray
        None: no correction, ``(movie, None)`` is returned unchanged.  ``"auto"``:
        estimated with :func:`scan_phase` (per time window if ``window`` is given).
        A number (px) or a DataArray from :func:`scan_phase` (scalar or ``(time,)``):
        applied as given, e.g. a phase estimated on another channel of the same
        recording.
    window, max_phase :
        Passed to :func:`scan_phase` for ``"auto"``.

    Returns
    -------
    (xarray.DataArray, xarray.DataArray or None)
        The corrected movie (float32, lazy on dask input) and the phase as a labeled
        ``scan_phase`` DataArray (with ``attrs["source"]`` = "estimated" or "given"),
        ready to be stored in a result Dataset.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> movie = xr.DataArray(np.zeros((3, 8, 32), np.uint16), dims=("time", "y", "x"))
    >>> fixed, phase = resolve_scan_phase(movie, 1.5)
    >>> fixed.dtype, float(phase), phase.attrs["source"]
    (dtype('float32'), 1.5, 'given')
    >>> resolve_scan_phase(movie, None)[1] is None
    True
    """
    if scan_phase is None:
        return movie, None
    movie = as_data(movie)
    if isinstance(scan_phase, str):
        if scan_phase != "auto":
            raise ValueError(
                f"scan_phase must be None, 'auto', a number (px) or a DataArray, got {scan_phase!r}"
            )
        phase = _estimate(movie, window=window, max_phase=max_phase)
        phase.attrs["source"] = "estimated"
    elif isinstance(scan_phase, xr.DataArray):
        phase = scan_phase.copy()
        phase.name = PHASE_NAME
        phase.attrs = {**BASE_ATTRS, **scan_phase.attrs, "source": "given"}
    elif isinstance(scan_phase, numbers.Real) and not isinstance(scan_phase, (bool, np.bool_)):
        value = check_real(scan_phase, "scan_phase")
        phase = xr.DataArray(np.float64(value), name=PHASE_NAME, attrs={**BASE_ATTRS, "source": "given"})
    else:
        raise TypeError(
            f"scan_phase must be None, 'auto', a number (px) or a DataArray, got {type(scan_phase).__name__}"
        )
    return correct_scan_phase(movie, phase), phase


def phase_attrs(phase: xr.DataArray | None) -> dict[str, Any]:
    """NetCDF-safe attrs describing the phase used, for a result Dataset (empty if None).

    Examples
    --------
    >>> phase_attrs(xr.DataArray(1.25, attrs={"source": "given"}))
    {'scan_phase': 1.25, 'scan_phase_source': 'given'}
    """
    if phase is None:
        return {}
    out: dict[str, Any] = {"scan_phase_source": str(phase.attrs.get("source", "given"))}
    if phase.ndim == 0:
        out = {"scan_phase": float(phase), **out}
    else:
        vals = np.asarray(phase.values, dtype=np.float64)
        out = {"scan_phase": "per frame", "scan_phase_range": [float(vals.min()), float(vals.max())], **out}
    if "window" in phase.attrs:
        out["scan_phase_window"] = int(phase.attrs["window"])
    return out


def scan_phase_inputs(
    movie: xr.DataArray, reference: Any, scan_phase: Any
) -> tuple[xr.DataArray, Any, xr.DataArray | None]:
    """A registration's ``scan_phase=`` option: ``(movie, reference, phase used or None)``.

    The phase is estimated on ``reference`` when one is given (the structural channel:
    the one the shifts come from), else on ``movie``, and removed from both; the
    movie keeps its ``source`` (the file it was read from).  ``scan_phase=None``
    returns the inputs unchanged.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> movie = xr.DataArray(np.zeros((3, 8, 32), np.uint16), dims=("time", "y", "x"))
    >>> fixed, ref, phase = scan_phase_inputs(movie, np.ones((3, 8, 32)), 0.5)
    >>> fixed.dtype, ref.dtype, float(phase)
    (dtype('float32'), dtype('float32'), 0.5)
    """
    if scan_phase is None:
        return movie, reference, None
    source = movie.encoding.get("source")
    if reference is None:
        fixed, phase = resolve_scan_phase(movie, scan_phase)
    else:
        ref, phase = resolve_scan_phase(check_reference(reference, movie), scan_phase)
        fixed = correct_scan_phase(movie, phase)
        reference = ref
    if source is not None:
        fixed.encoding["source"] = source
    if phase.ndim:  # one value per frame of the movie, in its frame order
        values = _phase_array(phase, movie).values
        phase = xr.DataArray(values, dims=(cv.DIM_TIME,), name=PHASE_NAME, attrs=phase.attrs)
    return fixed, reference, phase


def scan_phase_parameter(scan_phase: Any) -> Any:
    """The ``scan_phase`` option as a NetCDF-safe run parameter (to run it again).

    Examples
    --------
    >>> scan_phase_parameter("auto"), scan_phase_parameter(xr.DataArray(1.5)), scan_phase_parameter(None)
    ('auto', 1.5, None)
    """
    if scan_phase is None or isinstance(scan_phase, str):
        return scan_phase
    if isinstance(scan_phase, xr.DataArray):
        return float(scan_phase) if scan_phase.ndim == 0 else "given per frame"
    return float(scan_phase)


def record_scan_phase(ds: xr.Dataset, phase: xr.DataArray | None) -> xr.Dataset:
    """Add the phase used to a result: the ``scan_phase`` variable and :func:`phase_attrs`."""
    if phase is None:
        return ds
    ds[PHASE_NAME] = phase.drop_vars(list(phase.coords))
    ds.attrs.update(phase_attrs(phase))
    return ds
