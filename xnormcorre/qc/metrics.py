"""Quality metrics of a registration, on DataArrays.

* :func:`correlation_with_mean` (M1): Pearson correlation of every frame with the mean
  image (NoRMCorre ``motion_metrics.m``) or another reference.
* :func:`crispness` (M2): Frobenius norm of the gradient magnitude of the mean image.
* :func:`residual_optical_flow` (M3): dense optical flow of temporally binned frames
  against a reference (CaImAn ``compute_metrics_motion_correction``); OpenCV Farnebäck
  when ``cv2`` is importable, a built-in pyramidal Lucas-Kanade otherwise.
* :func:`summary`: all of them before and after correction, as a small labeled Dataset
  (:mod:`xnormcorre.qc.summary`).

Common rules
------------
``crop``
    Border removed before computing, in pixels: an int (same on every side) or a pair
    ``(crop_y, crop_x)``.  Compare methods only with the same ``crop``.
NaN
    NaN pixels are ignored: the mean image is a NaN-mean over time, correlations leave
    NaN pixels out pairwise (as MATLAB ``corr(..., 'rows', 'pairwise')``).
Laziness
    A dask-backed movie is never loaded whole: the mean image is one reduction pass
    (computed when it is needed), per-frame correlations a second pass that stays lazy
    until computed; the optical flow reads the movie one batch of frames at a time.
    In-memory movies are processed in batches of frames, so temporaries stay small.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .common import (
    crispness_of_mean,
    crop_attr,
    crop_frames,
    frame_correlation,
    mean_image,
    prepare,
    reference_image,
)
from .flow import residual_optical_flow
from .summary import result_qc, summary

__all__ = [
    "correlation_with_mean",
    "crispness",
    "residual_optical_flow",
    "result_qc",
    "shift_errors",
    "shift_rmse",
    "summary",
]


# --------------------------------------------------------------------------- M2
def crispness(movie: xr.DataArray | np.ndarray, *, crop: int | tuple[int, int] = 0) -> float:
    """Crispness of the mean image (M2; NoRMCorre ``motion_metrics.m``, CaImAn ``smoothness``).

    ``crisp(m) = ‖ |∇m| ‖_F = sqrt( Σ_p (∂y m)² + (∂x m)² )`` over the cropped frame, where
    ``m`` is the NaN-mean over time and ``∂`` the :func:`numpy.gradient` stencil with unit
    spacing (central differences inside, one-sided at the edges).  Gradients touching a
    NaN pixel are left out.  Higher is sharper.  The value scales with intensity and
    with the number of pixels: compare only runs on the same data with the same ``crop``.

    Parameters
    ----------
    movie : xarray.DataArray or array-like
        ``(time, y, x)`` movie, or a ``(y, x)`` image used as the mean image itself
        (e.g. a template).  A dask-backed movie is reduced in one pass, never loaded whole.
    crop : int or (int, int)
        Pixels removed on each side (along y and x) before the mean is taken.

    Returns
    -------
    float
        The crispness, in intensity units per pixel.

    Examples
    --------
    A horizontal ramp of slope 1 on a 4 x 4 frame: ``|∇m| = 1`` at 16 pixels.

    >>> import numpy as np, xarray as xr
    >>> m = xr.DataArray(np.tile(np.arange(4.0), (2, 4, 1)), dims=("time", "y", "x"))
    >>> crispness(m)
    4.0
    >>> crispness(m, crop=1)  # the central 2 x 2 pixels
    2.0
    >>> crispness(m.isel(time=0))  # a (y, x) image is used as the mean image
    4.0
    """
    if (isinstance(movie, xr.DataArray) and movie.ndim == 2) or (
        not isinstance(movie, xr.DataArray) and np.ndim(movie) == 2
    ):
        img = movie if isinstance(movie, xr.DataArray) else xr.DataArray(np.asarray(movie), dims=("y", "x"))
        if set(img.dims) != {"y", "x"}:
            raise ValueError(f"movie must have dims ('time', 'y', 'x') or ('y', 'x'), got {img.dims}")
        if img.dtype.kind not in "iuf":
            raise TypeError(f"movie must have an integer or floating dtype, got {img.dtype}")
        mean = np.asarray(crop_frames(img.transpose("y", "x"), crop).values, dtype=np.float64)
    else:
        mean = mean_image(prepare(movie, crop))
    return crispness_of_mean(mean)


# --------------------------------------------------------------------------- M1
def correlation_with_mean(
    movie: xr.DataArray | np.ndarray,
    *,
    crop: int | tuple[int, int] = 0,
    reference: str | xr.DataArray | np.ndarray | None = None,
) -> xr.DataArray:
    """Pearson correlation of each frame with the mean image (M1, ``c_t``).

    ``c_t = Σ_p (Y_t(p) − Ȳ_t)(R(p) − R̄) / sqrt(Σ_p (Y_t(p) − Ȳ_t)² · Σ_p (R(p) − R̄)²)``
    over the cropped frame.  Pixels where the frame or the reference is NaN are left out
    of that frame's sums (pairwise, as NoRMCorre); a frame with fewer than two such
    pixels, or constant over them, gets NaN.

    Parameters
    ----------
    movie : xarray.DataArray or array-like, (time, y, x)
        Movie of any integer or float dtype, in memory or dask-backed.
    crop : int or (int, int)
        Pixels removed on each side (along y and x); applied to ``reference`` too.
    reference : {"mean", "bin_median"} or (y, x) DataArray/array, optional
        ``R``: the NaN-mean over time of the (cropped) movie (default, NoRMCorre), the
        median of 10-frame bin means (``"bin_median"``, CaImAn), or a given image of the
        movie's (uncropped) frame shape, e.g. a registration template.

    Returns
    -------
    xarray.DataArray
        ``(time,)`` float64 with the movie's time coordinates.  Lazy for a dask-backed
        movie: the mean image is computed at call time (one pass over the data) and the
        correlations when the result is computed (a second pass); the whole movie is
        never held in memory.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> frames = np.array([[[0.0, 1.0], [2.0, 3.0]], [[0.0, 1.0], [2.0, 5.0]]])
    >>> movie = xr.DataArray(frames, dims=("time", "y", "x"))
    >>> c = correlation_with_mean(movie)
    >>> c.round(4).values.tolist()
    [0.9827, 0.9939]
    >>> c.attrs["units"]
    '1'
    >>> bool(np.isclose(c[1], np.corrcoef(frames[1].ravel(), frames.mean(0).ravel())[0, 1]))
    True
    """
    mv = prepare(movie, crop)
    ref, how = reference_image(mv, reference, crop, "mean")
    attrs = {
        "long_name": "Pearson correlation of the frame with the reference image",
        "units": "1",
        "reference": how,
        "crop": crop_attr(crop),
        "comment": "NaN pixels excluded pairwise (NoRMCorre motion_metrics)",
    }
    c = frame_correlation(mv, ref)
    c.attrs = attrs
    return c.rename("correlation_with_mean")


# --------------------------------------------------------------------------- against ground truth
def shift_errors(estimated: Any, true: Any, *, remove_offset: bool = True) -> np.ndarray:
    """Estimated minus true shifts ``(T, ..., 2)`` in pixels (float64).

    With ``remove_offset`` the median difference over frames (the constant offset of the
    estimated template relative to the true reference) is removed first.
    """

    def arr(a: Any) -> np.ndarray:
        return np.asarray(a.values if isinstance(a, xr.DataArray) else a, dtype=np.float64)

    d = arr(estimated) - arr(true)
    if remove_offset:
        d = d - np.median(d.reshape(-1, d.shape[-1]), axis=0)
    return d


def shift_rmse(estimated: Any, true: Any, *, remove_offset: bool = True) -> float:
    """Root-mean-square error of per-frame shift vectors ``(T, 2)`` against known shifts, in pixels.

    Examples
    --------
    >>> shift_rmse([[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [2.0, 3.0]])
    0.0
    """
    d = shift_errors(estimated, true, remove_offset=remove_offset)
    return float(np.sqrt(np.mean(np.sum(d**2, axis=-1))))
