"""Frame-wise filters, lazy on dask input: ``map_frames`` and the 1-photon ``highpass``.

These serve jnormcorre's ``FilteredArray(raw, filter_function, batching)``: filter a
movie for shift *estimation* and pass it as ``reference=`` to :func:`xnormcorre.rigid`
or :func:`xnormcorre.pwrigid`, which then apply the shifts to the raw movie.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from .. import validate as cv
from ..engine import filters as _flt
from ..engine.runner import iter_batches, pad_batch

__all__ = ["highpass", "map_frames"]


def map_frames(
    movie: xr.DataArray | np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int = 100,
    dtype: str | np.dtype = "float32",
    name: str | None = None,
) -> xr.DataArray:
    """Apply ``fn`` to batches of frames, lazily on dask-backed movies.

    ``fn`` takes a ``(B, H, W)`` NumPy array (``B <= batch_size``) and returns an array
    of the same shape (NumPy, JAX or anything ``numpy.asarray`` accepts).  On a
    dask-backed movie nothing is computed until the result is; each time chunk is
    processed ``batch_size`` frames at a time (jnormcorre's ``FilteredArray`` batching).

    Returns
    -------
    xarray.DataArray
        ``(time, y, x)`` with the movie's coordinates and ``dtype``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> m = xr.DataArray(np.arange(24.0).reshape(2, 3, 4), dims=("time", "y", "x"))
    >>> map_frames(m, lambda b: b - b.mean(axis=(1, 2), keepdims=True)).sum().item()
    0.0
    """
    movie = cv.as_movie(movie)
    batch_size = cv.integer(batch_size, "batch_size")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    out_dtype = np.dtype(dtype)

    def kernel(block: np.ndarray) -> np.ndarray:
        out = np.empty(block.shape, out_dtype)
        for a, b in iter_batches(block.shape[0], batch_size):
            res = np.asarray(fn(block[a:b]))
            if res.shape != (b - a, *block.shape[1:]):
                raise ValueError(
                    f"fn must return an array of the batch's shape {(b - a, *block.shape[1:])}, got {res.shape}"
                )
            out[a:b] = res
        return out

    data = movie.chunk({"y": -1, "x": -1}) if movie.chunks is not None else movie
    out = xr.apply_ufunc(
        kernel,
        data,
        input_core_dims=[["y", "x"]],
        output_core_dims=[["y", "x"]],
        dask="parallelized",
        output_dtypes=[out_dtype],
        keep_attrs=True,
    )
    out.name = name if name is not None else movie.name
    out.attrs = {**movie.attrs, "long_name": f"filtered {movie.attrs.get('long_name', 'movie')}"}
    out.attrs.setdefault("units", "a.u.")
    return out


def highpass(
    movie: xr.DataArray | np.ndarray,
    sigma: float | tuple[float, float] = 3.0,
    *,
    batch_size: int = 64,
) -> xr.DataArray:
    """Spatial high-pass for 1-photon data: CaImAn's ``gSig_filt`` filter.

    Each frame is correlated with a Gaussian of ``sigma`` px minus its mean over its
    central support (see :func:`xnormcorre.engine.filters.highpass_kernel`), with
    reflected borders: smooth background and vignetting are removed, cell-sized
    structure is kept.  Use it as ``reference=`` for shift estimation; apply the shifts
    to the raw movie.  Lazy on dask input; JAX, batched and padded to ``batch_size``
    frames (one compilation per frame shape).

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=4, shape=(32, 32))
    >>> hp = xnormcorre.highpass(movie, sigma=3)
    >>> hp.dims, abs(float(hp.mean())) < abs(float(movie.mean()))
    (('time', 'y', 'x'), True)
    """
    sig = (float(sigma), float(sigma)) if np.isscalar(sigma) else tuple(float(s) for s in sigma)
    if len(sig) != 2 or not all(np.isfinite(s) and s > 0 for s in sig):
        raise ValueError(f"sigma must be a positive number or a pair of them, got {sigma!r}")
    batch_size = cv.integer(batch_size, "batch_size")
    frame = tuple(int(n) for n in np.shape(movie)[-2:])
    window = tuple(int((3 * s) // 2 * 2 + 1) for s in sig)
    if len(frame) == 2 and any(k > n for k, n in zip(window, frame, strict=True)):
        limit = tuple(round(n / 3, 1) for n in frame)
        raise ValueError(
            f"sigma={sigma!r} is too large for frames of {frame[0]}x{frame[1]} px: the filter window "
            f"(3 sigma, {window[0]}x{window[1]} px) must fit in the frame (sigma <= {limit[0]:g}, {limit[1]:g})"
        )
    kernel = _flt.highpass_kernel(sig)

    def fn(batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        padded = pad_batch(np.asarray(batch, np.float32), batch_size)
        return np.asarray(_flt.convolve_reflect(padded, kernel))[:n]

    out = map_frames(movie, fn, batch_size=batch_size)
    out.attrs["long_name"] = f"high-passed movie (gSig_filt = {list(sig)})"
    out.attrs["highpass_sigma"] = list(sig)
    return out
