"""Quality metrics of a registration, on DataArrays (definitions: anchors.md §b).

* :func:`correlation_with_mean` (M1): Pearson correlation of every frame with the mean
  image (NoRMCorre ``motion_metrics.m``) or another reference.
* :func:`crispness` (M2): Frobenius norm of the gradient magnitude of the mean image.
* :func:`residual_optical_flow` (M3): dense optical flow of temporally binned frames
  against a reference (CaImAn ``compute_metrics_motion_correction``); OpenCV Farnebäck
  when ``cv2`` is importable, a built-in pyramidal Lucas-Kanade otherwise.
* :func:`summary`: all of them before and after correction, as a small labeled Dataset.

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

import importlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from . import conventions as cv

__all__ = ["correlation_with_mean", "crispness", "residual_optical_flow", "summary"]

_BATCH = 256  # frames per in-memory batch
_FLOW_METHODS = ("auto", "farneback", "builtin")
#: Farnebäck parameters of CaImAn's ``compute_metrics_motion_correction`` (anchors §b, M3).
FARNEBACK_PARAMS: dict[str, Any] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 100,
    "iterations": 15,
    "poly_n": 5,
    "poly_sigma": 1.2 / 5,
    "flags": 0,
}


# --------------------------------------------------------------------------- helpers
def _crop_pair(crop: Any) -> tuple[int, int]:
    return cv.pair(crop, "crop", minimum=0)


def _crop(da: xr.DataArray, crop: Any) -> xr.DataArray:
    """Remove ``crop`` pixels on each side along y and x (validated)."""
    cy, cx = _crop_pair(crop)
    h, w = da.sizes["y"], da.sizes["x"]
    if 2 * cy >= h or 2 * cx >= w:
        raise ValueError(f"crop={crop!r} removes the whole {h}x{w} frame; use crop < half the frame size")
    return da.isel(y=slice(cy, h - cy), x=slice(cx, w - cx))


def _prepare(movie: Any, crop: Any, name: str = "movie") -> xr.DataArray:
    """Validated ``(time, y, x)`` movie, cropped; dask chunks made whole along y and x."""
    mv = _crop(cv.as_movie(movie, name), crop)
    if mv.chunks is not None:
        mv = mv.chunk({"y": -1, "x": -1})
    return mv


def _batches(n: int, size: int = _BATCH) -> Iterator[slice]:
    for a in range(0, n, size):
        yield slice(a, min(n, a + size))


def _is_lazy(da: xr.DataArray) -> bool:
    return da.chunks is not None


def _mean_image(mv: xr.DataArray) -> np.ndarray:
    """NaN-mean over time as float64 ``(y, x)``; NaN where a pixel is never finite.

    Dask: one reduction pass (sum and count computed together); in memory: by batches.
    """
    if _is_lazy(mv):
        import dask

        data = mv.astype(np.float64)
        s, n = dask.compute(data.sum("time", skipna=True), data.count("time"))
        s, n = s.values, n.values
    else:
        shape = (mv.sizes["y"], mv.sizes["x"])
        s, n = np.zeros(shape), np.zeros(shape, np.int64)
        for sl in _batches(mv.sizes["time"]):
            block = np.asarray(mv.isel(time=sl).values, dtype=np.float64)
            ok = np.isfinite(block)
            s += np.where(ok, block, 0.0).sum(0)
            n += ok.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _nanmedian0(stack: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        return np.nanmedian(stack, axis=0)


def _bin_median(mv: xr.DataArray, window: int = 10) -> np.ndarray:
    """Median over contiguous bins of ``window`` frames of the bin means (CaImAn ``bin_median``).

    CaImAn's reshape averages *interleaved* frames (k, k + T//window, ...); we use contiguous
    bins, as intended.  Fewer than ``window`` frames: one bin, i.e. the mean image.
    Holds ``T // window`` float32 bin means in memory.
    """
    t = mv.sizes["time"]
    if t < window:
        return _mean_image(mv)
    nb = t // window
    if _is_lazy(mv):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = (
                mv.isel(time=slice(0, nb * window))
                .astype(np.float64)
                .coarsen(time=window)
                .mean()  # NaN-skipping for floats
                .astype(np.float32)
                .values
            )
    else:
        means = np.empty((nb, mv.sizes["y"], mv.sizes["x"]), np.float32)
        step = max(1, _BATCH // window)
        for b0 in range(0, nb, step):
            b1 = min(nb, b0 + step)
            block = np.asarray(mv.isel(time=slice(b0 * window, b1 * window)).values, np.float64)
            block = block.reshape(b1 - b0, window, *block.shape[1:])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means[b0:b1] = np.nanmean(block, axis=1)
    return _nanmedian0(means).astype(np.float64)


def _reference_image(mv: xr.DataArray, reference: Any, crop: Any, default: str) -> tuple[np.ndarray, str]:
    """Resolve ``reference`` to a cropped float64 image and a description for attrs."""
    if reference is None:
        reference = default
    if isinstance(reference, str):
        if reference == "mean":
            return _mean_image(mv), "mean"
        if reference == "bin_median":
            return _bin_median(mv), "bin_median"
        raise ValueError(f"reference must be 'mean', 'bin_median' or a (y, x) image, got {reference!r}")
    if isinstance(reference, xr.Dataset):
        raise TypeError("reference must be a (y, x) DataArray or array, got a Dataset")
    if isinstance(reference, xr.DataArray):
        if set(reference.dims) != {"y", "x"}:
            raise ValueError(f"reference must have dims ('y', 'x'), got {reference.dims}")
        ref = reference.transpose("y", "x")
    else:
        arr = np.asarray(reference)
        if arr.ndim != 2:
            raise ValueError(f"reference must be a 2-D (y, x) image, got shape {arr.shape}")
        ref = xr.DataArray(arr, dims=("y", "x"))
    if ref.dtype.kind not in "iuf":
        raise TypeError(f"reference must be numeric, got dtype {ref.dtype}")
    cy, cx = _crop_pair(crop)
    full = (mv.sizes["y"] + 2 * cy, mv.sizes["x"] + 2 * cx)
    if ref.shape != full:
        raise ValueError(f"reference must have the movie's frame shape {full}, got {ref.shape}")
    return np.asarray(_crop(ref, crop).values, dtype=np.float64), "user"


def _pearson_block(block: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Pearson correlation of each frame of ``block (T, H, W)`` with ``ref (H, W)``, NaN pairwise."""
    if block.shape[0] == 0:
        return np.empty((0,), np.float64)
    a = np.asarray(block, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(ref)
    n = ok.sum(axis=(1, 2))
    b = np.where(ok, ref, 0.0)
    a = np.where(ok, a, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        nn = np.maximum(n, 1)[:, None, None]
        da = np.where(ok, a - a.sum(axis=(1, 2))[:, None, None] / nn, 0.0)
        db = np.where(ok, b - b.sum(axis=(1, 2))[:, None, None] / nn, 0.0)
        num = (da * db).sum(axis=(1, 2))
        den = np.sqrt((da * da).sum(axis=(1, 2)) * (db * db).sum(axis=(1, 2)))
        c = num / den
    return np.where((n >= 2) & (den > 0), c, np.nan)


def _time_coords(mv: xr.DataArray) -> dict[str, xr.DataArray]:
    return {k: c for k, c in mv.coords.items() if set(c.dims) <= {"time"}}


def _crop_attr(crop: Any) -> list[int]:
    return list(_crop_pair(crop))


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
        mean = np.asarray(_crop(img.transpose("y", "x"), crop).values, dtype=np.float64)
    else:
        mean = _mean_image(_prepare(movie, crop))
    return _crispness_of(mean)


def _crispness_of(mean: np.ndarray) -> float:
    if min(mean.shape) < 2:
        raise ValueError(f"crispness needs at least 2 x 2 pixels after cropping, got {mean.shape}")
    gy, gx = np.gradient(mean)
    return float(np.sqrt(np.nansum(gy**2 + gx**2)))


# --------------------------------------------------------------------------- M1
def correlation_with_mean(
    movie: xr.DataArray | np.ndarray,
    *,
    crop: int | tuple[int, int] = 0,
    reference: str | xr.DataArray | np.ndarray | None = None,
) -> xr.DataArray:
    """Pearson correlation of each frame with the mean image (M1, ``c_t`` of anchors §b).

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
    mv = _prepare(movie, crop)
    ref, how = _reference_image(mv, reference, crop, "mean")
    attrs = {
        "long_name": "Pearson correlation of the frame with the reference image",
        "units": "1",
        "reference": how,
        "crop": _crop_attr(crop),
        "comment": "NaN pixels excluded pairwise; anchors.md M1",
    }
    c = _correlation(mv, ref)
    c.attrs = attrs
    return c.rename("correlation_with_mean")


def _correlation(mv: xr.DataArray, ref: np.ndarray) -> xr.DataArray:
    """Per-frame Pearson correlation of a prepared movie with ``ref``: lazy for dask, batched otherwise."""
    if _is_lazy(mv):
        c = xr.apply_ufunc(
            _pearson_block,
            mv,
            xr.DataArray(ref, dims=("y", "x")),
            input_core_dims=[["y", "x"], ["y", "x"]],
            dask="parallelized",
            output_dtypes=[np.float64],
        )
        return c.drop_vars([k for k in c.coords if k not in _time_coords(mv)])
    vals = np.concatenate(
        [_pearson_block(np.asarray(mv.isel(time=sl).values), ref) for sl in _batches(mv.sizes["time"])]
    )
    return xr.DataArray(vals, dims=("time",), coords=_time_coords(mv))


# --------------------------------------------------------------------------- M3
def _time_bin_weights(n: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area weights of ``cv2.resize(..., fy=factor, INTER_AREA)`` along time.

    Returns ``(first, last, w)``: bin ``i`` averages frames ``first[i]:last[i]`` with
    weights ``w[i, :last[i]-first[i]]`` (summing to 1).
    """
    n_out = max(1, int(np.floor(n * factor + 0.5)))
    edges = np.linspace(0.0, n, n_out + 1)
    first = np.floor(edges[:-1]).astype(int)
    last = np.minimum(np.ceil(edges[1:] - 1e-9).astype(int), n)
    width = int((last - first).max())
    w = np.zeros((n_out, width))
    for i in range(n_out):
        j = np.arange(first[i], last[i])
        w[i, : j.size] = np.clip(np.minimum(j + 1, edges[i + 1]) - np.maximum(j, edges[i]), 0, None)
        w[i] /= w[i].sum()
    return first, last, w


def _pyramid(img: np.ndarray, levels: int, min_size: int = 32) -> list[np.ndarray]:
    pyr = [img]
    for _ in range(levels - 1):
        cur = pyr[-1]
        if min(cur.shape) // 2 < min_size:
            break
        smooth = ndimage.gaussian_filter(cur, 1.0, mode="nearest")
        pyr.append(ndimage.zoom(smooth, 0.5, order=1, mode="nearest", grid_mode=True))
    return pyr


def _lk_flow(
    ref: np.ndarray,
    img: np.ndarray,
    *,
    levels: int = 3,
    winsize: int = 100,
    iterations: int = 5,
    reg: float = 1e-3,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Dense pyramidal Lucas-Kanade flow: ``(H, W, 2)`` (dy, dx) with ``img(r + d) ≈ ref(r)``.

    Coarse to fine over ``levels`` pyramid layers (halving, stopping below 32 px, as
    OpenCV), at each layer ``iterations`` Gauss-Newton steps: warp ``img`` by the current
    flow (bilinear), solve the 2 x 2 normal equations of the brightness-constancy residual
    summed over a ``winsize`` box window (as Farnebäck's box filter), Tikhonov-regularised
    by 1e-3 of the mean structure-tensor trace so textureless regions get no flow.
    Pixels outside ``valid`` (NaN in the movie) are left out of the window sums.
    """
    ref_p, img_p = _pyramid(ref, levels), _pyramid(img, levels)
    valid_p = None if valid is None else [m > 0.5 for m in _pyramid(valid.astype(np.float64), levels)]
    flow = np.zeros((*ref_p[-1].shape, 2))
    for lvl in range(len(ref_p) - 1, -1, -1):
        r, f = ref_p[lvl], img_p[lvl]
        if flow.shape[:2] != r.shape:
            zoom = (r.shape[0] / flow.shape[0], r.shape[1] / flow.shape[1])
            flow = np.stack(
                [
                    ndimage.zoom(flow[..., k], zoom, order=1, mode="nearest", grid_mode=True) * zoom[k]
                    for k in (0, 1)
                ],
                axis=-1,
            )
        yy, xx = np.meshgrid(
            np.arange(r.shape[0], dtype=float), np.arange(r.shape[1], dtype=float), indexing="ij"
        )
        size = min(winsize, max(r.shape))

        def box(v: np.ndarray, size: int = size) -> np.ndarray:
            return ndimage.uniform_filter(v, size, mode="constant")

        for _ in range(iterations):
            py, px = yy + flow[..., 0], xx + flow[..., 1]
            warped = ndimage.map_coordinates(f, [py, px], order=1, mode="nearest")
            inside = (py >= 0) & (py <= r.shape[0] - 1) & (px >= 0) & (px <= r.shape[1] - 1)
            if valid_p is not None:
                inside &= valid_p[lvl]
            gy, gx = (np.where(inside, g, 0.0) for g in np.gradient(0.5 * (warped + r)))
            it = np.where(inside, warped - r, 0.0)
            dy, dx = flow[..., 0], flow[..., 1]
            a11, a12, a22 = (box(v) for v in (gy * gy, gy * gx, gx * gx))
            # window normal equations for the new flow d: sum_W g g^T (d - d(p)) = -sum_W g it(p)
            c1 = box(gy * gy * dy + gy * gx * dx - gy * it)
            c2 = box(gy * gx * dy + gx * gx * dx - gx * it)
            lam = reg * float(np.mean(a11 + a22)) + 1e-12
            c1, c2 = c1 + lam * box(dy), c2 + lam * box(dx)
            a11, a22 = a11 + lam, a22 + lam
            det = a11 * a22 - a12 * a12
            flow = np.stack([(a22 * c1 - a12 * c2) / det, (a11 * c2 - a12 * c1) / det], axis=-1)
    return flow


def _normalize_local(x: np.ndarray, sigma: float = 2.0, eps: float = 1e-3) -> np.ndarray:
    """Local contrast normalisation: high-pass by a Gaussian of ``sigma`` px, divided by the local RMS.

    Makes the brightness-constancy flow insensitive to slow illumination and activity
    changes (eps·mean power keeps flat regions from being amplified).
    """
    h = x - ndimage.gaussian_filter(x, sigma, mode="nearest")
    power = float(np.mean(h * h))
    if power == 0:
        return h
    return h / np.sqrt(ndimage.gaussian_filter(h * h, sigma, mode="nearest") + eps * power)


def _builtin_flow(ref: np.ndarray, img: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The built-in flow backend: pyramidal Lucas-Kanade on locally normalised images."""
    return _lk_flow(_normalize_local(ref), _normalize_local(img), valid=valid)


def _farneback_flow(ref: np.ndarray, img: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """OpenCV Farnebäck flow with CaImAn's parameters, returned as (dy, dx)."""
    import cv2

    f = cv2.calcOpticalFlowFarneback(
        np.ascontiguousarray(ref, dtype=np.float32),
        np.ascontiguousarray(img, dtype=np.float32),
        None,
        **FARNEBACK_PARAMS,
    )
    return np.asarray(f, dtype=np.float64)[..., ::-1]


def _flow_backend(method: str) -> tuple[str, str]:
    if method not in _FLOW_METHODS:
        raise ValueError(f"method must be one of {_FLOW_METHODS}, got {method!r}")
    if method == "builtin":
        return "builtin", "builtin pyramidal Lucas-Kanade (approximation of Farneback)"
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError:
        if method == "farneback":
            raise ImportError(
                'method="farneback" needs OpenCV: pip install "xnormcorre[flow]" '
                '(or opencv-python-headless), or use method="builtin"'
            ) from None
        return "builtin", "builtin pyramidal Lucas-Kanade (approximation of Farneback)"
    return "farneback", f"OpenCV {getattr(cv2, '__version__', '?')} calcOpticalFlowFarneback"


def residual_optical_flow(
    movie: xr.DataArray | np.ndarray,
    *,
    crop: int | tuple[int, int] = 0,
    reference: str | xr.DataArray | np.ndarray | None = None,
    resize_fact_flow: float = 0.2,
    method: str = "auto",
) -> xr.Dataset:
    """Residual optical flow of a movie against a reference (M3; CaImAn's third metric).

    1. Crop ``crop`` pixels on each side.
    2. Bin in time with area weights, as ``cv2.resize(fy=resize_fact_flow, INTER_AREA)``:
       ``round(T · resize_fact_flow)`` bins, each the (NaN-)mean of about
       ``1/resize_fact_flow`` consecutive frames.
    3. ``R`` = median of 10-frame bin means (default, CaImAn), the mean image, or a given
       image.
    4. Per binned frame ``f``, a dense flow ``F`` from ``R`` to ``f``:

       * ``method="farneback"`` (used by ``"auto"`` when ``cv2`` is importable):
         ``cv2.calcOpticalFlowFarneback(R, f, None, pyr_scale=0.5, levels=3,
         winsize=100, iterations=15, poly_n=5, poly_sigma=0.24, flags=0)``, exactly
         CaImAn's call;
       * ``method="builtin"`` (no OpenCV needed): a pyramidal Lucas-Kanade flow
         (NumPy/SciPy) with the same pyramid (3 layers, scale 0.5) and 100-px box window,
         5 Gauss-Newton warping iterations per layer, on locally contrast-normalised
         frames (Gaussian high-pass of 2 px divided by the local RMS, so that calcium
         activity and slow brightness changes are not read as motion).  An
         *approximation* of Farnebäck: on translated frames both recover the shift to
         ~1-2% (synthetic) or ~10% (real two-photon texture with noise), and on the
         480-frame Neurofinder movie their mean per-pixel flows agree within 12% (per-bin
         correlation 0.9-0.98); on bins that average frames with very different shifts
         (blur rather than a translation) it reads lower.  The numbers are not
         bit-compatible with OpenCV's: compare runs only with the same ``method``.

    5. ``n_f = ‖F‖_F = sqrt(Σ_p u² + v²)`` and the per-pixel RMS ``n_f / sqrt(|Ω|)``,
       which does not grow with the field of view.  Lower is better.

    Pixels that are NaN in ``R`` or ``f`` are filled before the flow (with ``R`` or the
    mean of ``R``) and left out of the norm (``|Ω|`` counts the pixels kept).  Memory is
    bounded: frames are read one batch at a time (dask or in memory).

    Parameters
    ----------
    movie : xarray.DataArray or array-like, (time, y, x)
        Movie, in memory or dask-backed.
    crop : int or (int, int)
        Pixels removed on each side (along y and x).
    reference : {"bin_median", "mean"} or (y, x) image, optional
        ``R`` (default ``"bin_median"``); an image must have the uncropped frame shape.
    resize_fact_flow : float
        Temporal downsampling factor in ``(0, 1]`` (CaImAn's default 0.2).
    method : {"auto", "farneback", "builtin"}
        Flow backend; ``"farneback"`` raises ImportError without OpenCV.

    Returns
    -------
    xarray.Dataset
        ``flow_norm (time_bin)`` and ``flow_rms (time_bin)`` in pixels, with coordinate
        ``time_bin`` = mean ``time`` of the frames in each bin; attrs name the method,
        reference, crop and factor.

    Examples
    --------
    Frames equal to the reference have no residual flow; a 1-px translation of a smooth
    blob gives about 1 px of flow where the blob has texture:

    >>> import numpy as np, xarray as xr
    >>> yy, xx = np.mgrid[:48, :48]
    >>> blob = lambda cy, cx: np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 50.0)
    >>> still = xr.DataArray(np.stack([blob(24, 24)] * 10), dims=("time", "y", "x"))
    >>> rof = residual_optical_flow(still, method="builtin")
    >>> rof.flow_rms.round(6).values.tolist(), rof.sizes["time_bin"]
    ([0.0, 0.0], 2)
    >>> moved = xr.DataArray(np.stack([blob(25, 24)] * 10), dims=("time", "y", "x"))
    >>> rof = residual_optical_flow(moved, reference=blob(24, 24), method="builtin")
    >>> 0.5 < float(rof.flow_rms.max()) < 1.1
    True
    """
    mv = _prepare(movie, crop)
    if not isinstance(resize_fact_flow, (int, float)) or isinstance(resize_fact_flow, bool):
        raise TypeError(f"resize_fact_flow must be a number in (0, 1], got {resize_fact_flow!r}")
    if not 0 < resize_fact_flow <= 1:
        raise ValueError(f"resize_fact_flow must be in (0, 1], got {resize_fact_flow!r}")
    backend, description = _flow_backend(method)
    ref, how = _reference_image(mv, reference, crop, "bin_median")
    ref_ok = np.isfinite(ref)
    if not ref_ok.any():
        raise ValueError("the reference image has no finite pixel after cropping")
    ref_filled = np.where(ref_ok, ref, float(np.mean(ref[ref_ok])))
    flow_fn = _farneback_flow if backend == "farneback" else _builtin_flow

    n = mv.sizes["time"]
    first, last, w = _time_bin_weights(n, float(resize_fact_flow))
    n_out = first.size
    tvals = np.asarray(mv["time"].values) if "time" in mv.coords else np.arange(n)
    norms, rms, tbin = np.empty(n_out), np.empty(n_out), []
    bin_len = max(1, int(np.ceil(1 / resize_fact_flow)))
    per_read = max(1, _BATCH // bin_len)
    if _is_lazy(mv):  # read about one dask chunk at a time, so that no chunk is read twice
        per_read = max(per_read, max(mv.chunksizes["time"]) // bin_len)
    for b0 in range(0, n_out, per_read):
        b1 = min(n_out, b0 + per_read)
        a, b = int(first[b0]), int(last[b1 - 1])
        block = np.asarray(mv.isel(time=slice(a, b)).values)  # input dtype; float64 per bin
        for i in range(b0, b1):
            frames = block[first[i] - a : last[i] - a].astype(np.float64)
            wi = w[i, : frames.shape[0]][:, None, None]
            ok = np.isfinite(frames)
            wsum = (wi * ok).sum(0)
            with np.errstate(invalid="ignore", divide="ignore"):
                f = np.where(wsum > 0, (wi * np.where(ok, frames, 0.0)).sum(0) / wsum, np.nan)
            valid = np.isfinite(f) & ref_ok
            flow = flow_fn(ref_filled, np.where(valid, f, ref_filled), valid=None if valid.all() else valid)
            nv = int(valid.sum())
            norms[i] = float(np.sqrt((flow[valid] ** 2).sum())) if nv else np.nan
            rms[i] = norms[i] / np.sqrt(nv) if nv else np.nan
            ti = tvals[first[i] : last[i]]
            tbin.append(ti.mean() if np.issubdtype(ti.dtype, np.number) else ti[0])
    tattrs = dict(mv["time"].attrs) if "time" in mv.coords else {}
    tattrs["long_name"] = "mean time of the frames in the bin"
    tattrs.setdefault("units", "1")
    coords = {"time_bin": ("time_bin", np.asarray(tbin), tattrs)}
    ds = xr.Dataset(
        {
            "flow_norm": (
                "time_bin",
                norms,
                {"long_name": "Frobenius norm of the residual optical flow (n_f)", "units": "pixel"},
            ),
            "flow_rms": (
                "time_bin",
                rms,
                {
                    "long_name": "per-pixel RMS of the residual optical flow (n_f / sqrt(|Omega|))",
                    "units": "pixel",
                },
            ),
        },
        coords=coords,
    )
    ds.attrs = {
        "method": description,
        "reference": how,
        "crop": _crop_attr(crop),
        "resize_fact_flow": float(resize_fact_flow),
        "comment": "anchors.md M3; lower is better",
    }
    return ds


# --------------------------------------------------------------------------- summary
def _stage_movie(obj: Any, name: str) -> xr.DataArray:
    if isinstance(obj, xr.Dataset):
        if "corrected" not in obj:
            raise ValueError(f"{name} is a Dataset without a 'corrected' variable: pass a movie DataArray")
        return obj["corrected"]
    return cv.as_movie(obj, name)


def summary(
    raw: xr.DataArray | np.ndarray,
    corrected: xr.DataArray | xr.Dataset | np.ndarray,
    *,
    crop: int | tuple[int, int] | None = None,
    flow: bool = True,
    flow_method: str = "auto",
) -> xr.Dataset:
    """Before/after quality metrics in one call: a small Dataset along ``stage``.

    Parameters
    ----------
    raw : xarray.DataArray or array-like, (time, y, x)
        The movie before correction.
    corrected : xarray.DataArray, array-like, or a result Dataset
        The corrected movie, or a result of :func:`xnormcorre.rigid` (its ``corrected``).
    crop : int or (int, int), optional
        Border removed for every metric.  Default: a result Dataset's ``max_shifts``
        (the pixels that may hold border fill), else 0.
    flow : bool
        Compute the residual optical flow (M3, the slowest metric).
    flow_method : {"auto", "farneback", "builtin"}
        Backend of :func:`residual_optical_flow`.

    Returns
    -------
    xarray.Dataset
        Dim ``stage = ["raw", "corrected"]``; variables ``mean_correlation``,
        ``median_correlation`` (M1, with each movie's own mean image), ``crispness``
        (M2) and, with ``flow``, ``residual_flow_norm``, ``residual_flow_norm_std`` and
        ``residual_flow_rms`` (M3, mean over bins); attrs record ``crop`` and the flow
        method.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> still = rng.normal(size=(1, 16, 16)).repeat(6, axis=0)
    >>> raw = xr.DataArray(still + 0.5 * rng.normal(size=still.shape), dims=("time", "y", "x"))
    >>> s = summary(raw, xr.DataArray(still, dims=("time", "y", "x")), flow=False)
    >>> s.stage.values.tolist()
    ['raw', 'corrected']
    >>> s.mean_correlation.sel(stage="corrected").item()
    1.0
    >>> bool(s.mean_correlation.sel(stage="raw") < 1)
    True
    """
    raw_mv = cv.as_movie(raw, "raw")
    cor_mv = _stage_movie(corrected, "corrected")
    if (raw_mv.sizes["y"], raw_mv.sizes["x"]) != (cor_mv.sizes["y"], cor_mv.sizes["x"]):
        raise ValueError(
            "raw and corrected must have the same frame shape, got "
            f"{raw_mv.sizes['y']}x{raw_mv.sizes['x']} and {cor_mv.sizes['y']}x{cor_mv.sizes['x']}"
        )
    if crop is None:
        ms = corrected.attrs.get("max_shifts") if isinstance(corrected, xr.Dataset) else None
        crop = (int(ms[0]), int(ms[1])) if isinstance(ms, (list, tuple, np.ndarray)) else 0
    cy, cx = _crop_pair(crop)
    if not isinstance(flow, (bool, np.bool_)):
        raise TypeError(f"flow must be True or False, got {flow!r}")
    if flow:
        _flow_backend(flow_method)  # validate before the slow part

    out: dict[str, list[float]] = {"mean_correlation": [], "median_correlation": [], "crispness": []}
    flow_attrs: dict[str, Any] = {}
    for mv in (raw_mv, cor_mv):
        prepared = _prepare(mv, (cy, cx))
        mean = _mean_image(prepared)  # one pass, shared by M1 and M2
        c = _correlation(prepared, mean).values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["mean_correlation"].append(float(np.nanmean(c)))
            out["median_correlation"].append(float(np.nanmedian(c)))
        out["crispness"].append(_crispness_of(mean))
        if flow:
            rof = residual_optical_flow(mv, crop=(cy, cx), method=flow_method)
            out.setdefault("residual_flow_norm", []).append(float(rof.flow_norm.mean()))
            out.setdefault("residual_flow_norm_std", []).append(float(rof.flow_norm.std()))
            out.setdefault("residual_flow_rms", []).append(float(rof.flow_rms.mean()))
            flow_attrs = {"flow_method": rof.attrs["method"], "flow_reference": rof.attrs["reference"]}
    units = raw_mv.attrs.get("units", "a.u.")
    labels = {
        "mean_correlation": ("mean over frames of the correlation with the mean image (M1)", "1"),
        "median_correlation": ("median over frames of the correlation with the mean image (M1)", "1"),
        "crispness": (
            "crispness of the mean image, Frobenius norm of its gradient magnitude (M2)",
            f"{units}/pixel",
        ),
        "residual_flow_norm": ("mean over time bins of the residual optical flow norm n_f (M3)", "pixel"),
        "residual_flow_norm_std": ("standard deviation over time bins of n_f (M3)", "pixel"),
        "residual_flow_rms": ("mean over time bins of the per-pixel RMS residual flow (M3)", "pixel"),
    }
    ds = xr.Dataset(
        {
            k: ("stage", np.asarray(v), {"long_name": labels[k][0], "units": labels[k][1]})
            for k, v in out.items()
        },
        coords={"stage": ("stage", ["raw", "corrected"], {"long_name": "processing stage", "units": "1"})},
    )
    ds.attrs = {
        "crop": [cy, cx],
        "comment": "metrics defined in anchors.md §b; compare only with the same crop",
    }
    ds.attrs.update(flow_attrs)
    return ds
