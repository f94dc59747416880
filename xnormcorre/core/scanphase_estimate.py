"""Estimation of the bidirectional scan phase, labeled: :func:`scan_phase` (from a mean
image, or from the mean of each time window), and the conventions and input checks
shared with its correction (:mod:`xnormcorre.core.scanphase`).

Sign convention: the phase is the displacement of the odd lines' content (rows 1, 3, 5
... of the full frame) relative to the even lines, along ``x``; the correction moves the
odd lines by ``-phase``.  The numerics are in :mod:`xnormcorre.engine.scanphase`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as cv
from ..engine import scanphase as _sp
from ..validate import integer

__all__ = [
    "BASE_ATTRS",
    "DEFAULT_N_FRAMES",
    "METHOD",
    "PHASE_NAME",
    "SCAN_PHASE_CONVENTION",
    "as_data",
    "check_real",
    "line_parity",
    "scan_phase",
]

PHASE_NAME = "scan_phase"

SCAN_PHASE_CONVENTION = (
    "displacement along x of the odd scan lines (rows 1, 3, 5, ... of the full frame) relative to "
    "the even lines: odd_line(x) = even_line(x - phase); corrected = odd lines moved by -phase"
)

METHOD = (
    "odd lines vs mean of the neighbouring even lines (and vice versa), Pearson correlation "
    "maximized over the offset, cubic B-spline, lines smoothed along x (1 px Gaussian)"
)

BASE_ATTRS = {
    "long_name": "bidirectional scan phase (odd-line offset along x)",
    "units": "pixel",
    "comment": SCAN_PHASE_CONVENTION,
}

#: Frames averaged for a single (whole-movie) estimate, evenly spaced over the movie.
DEFAULT_N_FRAMES = 500


def as_data(movie: Any, name: str = "movie") -> xr.DataArray:
    """``movie`` as a DataArray with ``y`` and ``x`` dims (2-D images and 3-D stacks from NumPy)."""
    if isinstance(movie, xr.Dataset):
        raise TypeError(
            f"{name} must be a DataArray or array, got a Dataset; select a variable, e.g. ds['movie']"
        )
    if not isinstance(movie, xr.DataArray):
        arr = movie if hasattr(movie, "shape") and hasattr(movie, "dtype") else np.asarray(movie)
        if arr.ndim == 2:
            movie = xr.DataArray(arr, dims=(cv.DIM_Y, cv.DIM_X), name=name)
        elif arr.ndim == 3:
            movie = xr.DataArray(arr, dims=cv.MOVIE_DIMS, name=name)
        else:
            raise ValueError(
                f"{name} must be a (y, x) image or a (time, y, x) movie, got shape {tuple(arr.shape)}; "
                "wrap other layouts in a DataArray with named dims"
            )
    for dim in (cv.DIM_Y, cv.DIM_X):
        if dim not in movie.dims:
            raise ValueError(f"{name} must have dims 'y' and 'x', got {movie.dims}")
    if movie.dtype.kind not in "iuf":
        raise TypeError(f"{name} must have an integer or floating dtype, got {movie.dtype}")
    return movie


def line_parity(movie: xr.DataArray) -> int:
    """Parity of the first row's scan line: from integer ``y`` labels when present, else 0.

    A crop ``movie.isel(y=slice(1, None))`` keeps its ``y`` labels, so its first row
    is known to be an odd scan line.
    """
    if cv.DIM_Y not in movie.coords:
        return 0
    y = np.asarray(movie[cv.DIM_Y].values)
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            return 0
    if y.size > 1 and not np.all(np.diff(y) == 1):
        raise ValueError(
            "the scan phase needs consecutive scan lines: the movie's 'y' labels must increase by 1 "
            f"(got {y[:4].tolist()}...); do not subsample or reverse y before correcting the scan phase"
        )
    return int(y[0]) % 2 if y.size else 0


def _mean_over(movie: xr.DataArray, *, time: Any = None) -> xr.DataArray:
    """Lazy float64 mean over every dim but ``y``/``x`` (time and channel), chunk by chunk."""
    sel = movie if time is None else movie.isel({cv.DIM_TIME: time})
    if sel.chunks is None and cv.DIM_TIME in sel.dims:
        sel = sel.chunk({cv.DIM_TIME: 64})  # bounded memory for backend arrays
    dims = [d for d in sel.dims if d not in (cv.DIM_Y, cv.DIM_X)]
    return sel.mean(dims, dtype=np.float64).transpose(cv.DIM_Y, cv.DIM_X)


def _sample_frames(movie: xr.DataArray, n_frames: int) -> np.ndarray:
    """About ``n_frames`` frames spread over the movie, read cheaply.

    NumPy or backend arrays: evenly spaced frames (each read on its own).  Dask arrays:
    whole time chunks, evenly spaced, then evenly spaced frames within them -- a
    scattered selection would read every chunk it touches in full.
    """
    n = movie.sizes[cv.DIM_TIME]
    if movie.chunks is None:
        return np.unique(np.linspace(0, n - 1, n_frames).round().astype(np.int64))
    sizes = np.asarray(movie.chunksizes[cv.DIM_TIME])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_chunks = min(sizes.size, max(1, int(np.ceil(n_frames / sizes.mean()))))
    picked = np.unique(np.linspace(0, sizes.size - 1, n_chunks).round().astype(np.int64))
    frames = np.concatenate([np.arange(starts[i], starts[i] + sizes[i]) for i in picked])
    if frames.size > n_frames:
        frames = frames[np.unique(np.linspace(0, frames.size - 1, n_frames).round().astype(np.int64))]
    return frames


def check_real(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r} (NaN or Inf)")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _time_coords(movie: xr.DataArray) -> dict[str, Any]:
    return {
        k: v.variable
        for k, v in movie.coords.items()
        if v.dims == (cv.DIM_TIME,) and k in (cv.DIM_TIME, "frame")
    }


def scan_phase(
    movie: xr.DataArray | np.ndarray,
    *,
    window: int | None = None,
    n_frames: int | None = DEFAULT_N_FRAMES,
    max_phase: float = 10.0,
    smooth: int = 3,
) -> xr.DataArray:
    """Estimate the bidirectional scan phase (odd/even line offset, px along ``x``).

    Parameters
    ----------
    movie : DataArray or array
        ``(time, y, x)``, ``(time, channel, y, x)`` (channels are averaged: they share
        the scan), or a ``(y, x)`` mean image.  Lazy input stays lazy until the mean
        images are computed; only the frames used are read.  Integer ``y`` labels set
        the line parity (a crop starting on an odd line is handled).
    window : int, optional
        Frames per time window.  Default (None): one phase for the whole movie, from
        the mean of ``n_frames`` frames evenly spaced over it.  Given: one phase per
        window (from the window's mean image), smoothed across windows by a running
        median of ``smooth`` windows and interpolated linearly to every frame, for an
        offset that drifts during the recording.
    n_frames : int or None
        Frames averaged for the whole-movie estimate (default 500, spread evenly over
        the movie; on a dask-backed movie, whole time chunks spread evenly, so that
        no more than about ``n_frames`` frames are read); None uses every frame.
        Ignored when ``window`` is given (every frame is used).
    max_phase : float
        Largest offset searched, in px (default 10; reduced to ``width - 20`` on
        narrow frames).
    smooth : int
        Odd number of windows of the running median (default 3; 1 = no smoothing).

    Returns
    -------
    xarray.DataArray
        ``scan_phase``: a scalar (px), or ``(time,)`` per frame when ``window`` is
        given, with ``long_name``, ``units="pixel"``, the sign convention in
        ``comment`` and the method and per-window estimates in attrs.

    Raises
    ------
    ValueError
        Frames smaller than 3 rows x 24 columns, non-consecutive ``y`` labels, bad
        parameters.

    Warns
    -----
    RuntimeWarning
        For a flat image (phase 0 reported) or an estimate at the edge of the search
        range.

    Notes
    -----
    The phase is the displacement of the odd lines' content (rows 1, 3, 5, ...)
    relative to the even lines; :func:`correct_scan_phase` moves the odd lines by
    ``-phase``.  NoRMCorre's ``col_shift`` and suite2p's ``bidiphase`` equal ``-phase``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xnormcorre
    >>> y, x = np.mgrid[:64, :64]
    >>> scene = lambda x, y: np.sin(x / 3.0) * np.cos(y / 5.0) + np.sin((x + y) / 7.0)
    >>> frame = np.where(y % 2 == 1, scene(x - 0.8, y), scene(x, y))
    >>> movie = xr.DataArray(np.stack([frame] * 4), dims=("time", "y", "x"))
    >>> phase = xnormcorre.scan_phase(movie)
    >>> round(float(phase), 2), phase.attrs["units"]
    (0.8, 'pixel')
    """
    movie = as_data(movie)
    max_phase = check_real(max_phase, "max_phase", positive=True)
    first_row = line_parity(movie)
    has_time = cv.DIM_TIME in movie.dims
    if window is not None and not has_time:
        raise ValueError(f"window= needs a movie with a 'time' dim, got dims {movie.dims}")
    extra = [d for d in movie.dims if d not in (cv.DIM_TIME, cv.DIM_Y, cv.DIM_X)]
    if extra and any(d != "channel" for d in extra):
        raise ValueError(
            f"scan_phase takes (time, y, x) or (time, channel, y, x) movies, got dims {movie.dims}; "
            "select the other dims first"
        )
    if window is None:
        n_frames = integer(n_frames, "n_frames", allow_none=True)
        idx = None
        n_used = movie.sizes.get(cv.DIM_TIME, 1)
        if has_time and n_frames is not None and movie.sizes[cv.DIM_TIME] > n_frames:
            idx = _sample_frames(movie, n_frames)
            n_used = int(idx.size)
        image = _mean_over(movie, time=idx).values if has_time or extra else movie.values
        phase, corr = _sp.estimate_scan_phase(image, max_phase=max_phase, first_row=first_row)
        attrs = {
            **BASE_ATTRS,
            "method": METHOD,
            "correlation": corr,
            "n_frames": int(n_used),
            "max_phase": max_phase,
        }
        return xr.DataArray(np.float64(phase), name=PHASE_NAME, attrs=attrs)

    window = integer(window, "window")
    smooth = integer(smooth, "smooth")
    if smooth % 2 == 0:
        raise ValueError(f"smooth must be an odd number of windows (1 = none), got {smooth}")
    n = movie.sizes[cv.DIM_TIME]
    bounds = _sp.window_bounds(n, window)
    means = xr.concat([_mean_over(movie, time=slice(a, b)) for a, b in bounds], dim="time_window")
    means = np.asarray(means.values)
    raw, corrs = [], []
    for image in means:
        p, c = _sp.estimate_scan_phase(image, max_phase=max_phase, first_row=first_row)
        raw.append(p)
        corrs.append(c)
    smoothed = _sp.smooth_window_phases(np.array(raw), smooth)
    per_frame = _sp.interpolate_window_phases(bounds, smoothed, n)
    attrs = {
        **BASE_ATTRS,
        "method": METHOD + f"; per window of {window} frames, running median of {smooth} windows, "
        "linear interpolation between window centres",
        "window": window,
        "smooth": smooth,
        "max_phase": max_phase,
        "window_start": [a for a, _ in bounds],
        "window_stop": [b for _, b in bounds],
        "window_phase": [float(p) for p in raw],
        "window_phase_smoothed": [float(p) for p in smoothed],
        "window_correlation": [float(c) for c in corrs],
    }
    return xr.DataArray(
        per_frame, dims=(cv.DIM_TIME,), coords=_time_coords(movie), name=PHASE_NAME, attrs=attrs
    )
