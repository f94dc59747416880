"""Shared building blocks of the quality flags and metrics: flag attributes, cropping, batching,
mean and reference images, per-frame correlation and crispness."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from ..validate import as_movie, crop_pair

__all__ = [
    "BATCH",
    "MAD_TO_SIGMA",
    "batches",
    "bin_median",
    "crispness_of_mean",
    "crop_attr",
    "crop_frames",
    "crop_pair",
    "flag_attrs",
    "frame_correlation",
    "is_lazy",
    "mean_image",
    "pearson_block",
    "prepare",
    "reference_image",
    "time_coords",
]

BATCH = 256  # frames per in-memory batch
#: Robust standard deviation per median absolute deviation (Gaussian data).
MAD_TO_SIGMA = 1.4826


def flag_attrs(long_name: str, meaning: str, comment: str) -> dict[str, Any]:
    """CF attributes of an int8 quality flag (1 = ``meaning``, 0 = ok)."""
    return {
        "long_name": long_name,
        "units": "1",
        "flag_values": [0, 1],
        "flag_meanings": f"ok {meaning}",
        "comment": comment,
    }


def crop_frames(da: xr.DataArray, crop: Any) -> xr.DataArray:
    """Remove ``crop`` pixels on each side along y and x (validated)."""
    cy, cx = crop_pair(crop)
    h, w = da.sizes["y"], da.sizes["x"]
    if 2 * cy >= h or 2 * cx >= w:
        raise ValueError(f"crop={crop!r} removes the whole {h}x{w} frame; use crop < half the frame size")
    return da.isel(y=slice(cy, h - cy), x=slice(cx, w - cx))


def prepare(movie: Any, crop: Any, name: str = "movie") -> xr.DataArray:
    """Validated ``(time, y, x)`` movie, cropped; dask chunks made whole along y and x."""
    mv = crop_frames(as_movie(movie, name), crop)
    if mv.chunks is not None:
        mv = mv.chunk({"y": -1, "x": -1})
    return mv


def batches(n: int, size: int = BATCH) -> Iterator[slice]:
    for a in range(0, n, size):
        yield slice(a, min(n, a + size))


def is_lazy(da: xr.DataArray) -> bool:
    return da.chunks is not None


def mean_image(mv: xr.DataArray) -> np.ndarray:
    """NaN-mean over time as float64 ``(y, x)``; NaN where a pixel is never finite.

    Dask: one reduction pass (sum and count computed together); in memory: by batches.
    """
    if is_lazy(mv):
        import dask

        data = mv.astype(np.float64)
        s, n = dask.compute(data.sum("time", skipna=True), data.count("time"))
        s, n = s.values, n.values
    else:
        shape = (mv.sizes["y"], mv.sizes["x"])
        s, n = np.zeros(shape), np.zeros(shape, np.int64)
        for sl in batches(mv.sizes["time"]):
            block = np.asarray(mv.isel(time=sl).values, dtype=np.float64)
            ok = np.isfinite(block)
            s += np.where(ok, block, 0.0).sum(0)
            n += ok.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def nanmedian0(stack: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        return np.nanmedian(stack, axis=0)


def bin_median(mv: xr.DataArray, window: int = 10) -> np.ndarray:
    """Median over contiguous bins of ``window`` frames of the bin means (CaImAn ``bin_median``).

    CaImAn's reshape averages *interleaved* frames (k, k + T//window, ...); we use contiguous
    bins, as intended.  Fewer than ``window`` frames: one bin, i.e. the mean image.
    Holds ``T // window`` float32 bin means in memory.
    """
    t = mv.sizes["time"]
    if t < window:
        return mean_image(mv)
    nb = t // window
    if is_lazy(mv):
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
        step = max(1, BATCH // window)
        for b0 in range(0, nb, step):
            b1 = min(nb, b0 + step)
            block = np.asarray(mv.isel(time=slice(b0 * window, b1 * window)).values, np.float64)
            block = block.reshape(b1 - b0, window, *block.shape[1:])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means[b0:b1] = np.nanmean(block, axis=1)
    return nanmedian0(means).astype(np.float64)


def reference_image(mv: xr.DataArray, reference: Any, crop: Any, default: str) -> tuple[np.ndarray, str]:
    """Resolve ``reference`` to a cropped float64 image and a description for attrs."""
    if reference is None:
        reference = default
    if isinstance(reference, str):
        if reference == "mean":
            return mean_image(mv), "mean"
        if reference == "bin_median":
            return bin_median(mv), "bin_median"
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
    cy, cx = crop_pair(crop)
    full = (mv.sizes["y"] + 2 * cy, mv.sizes["x"] + 2 * cx)
    if ref.shape != full:
        raise ValueError(f"reference must have the movie's frame shape {full}, got {ref.shape}")
    return np.asarray(crop_frames(ref, crop).values, dtype=np.float64), "user"


def pearson_block(block: np.ndarray, ref: np.ndarray) -> np.ndarray:
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


def frame_correlation(mv: xr.DataArray, ref: np.ndarray) -> xr.DataArray:
    """Per-frame Pearson correlation of a prepared movie with ``ref``: lazy for dask, batched otherwise."""
    if is_lazy(mv):
        c = xr.apply_ufunc(
            pearson_block,
            mv,
            xr.DataArray(ref, dims=("y", "x")),
            input_core_dims=[["y", "x"], ["y", "x"]],
            dask="parallelized",
            output_dtypes=[np.float64],
        )
        return c.drop_vars([k for k in c.coords if k not in time_coords(mv)])
    vals = np.concatenate(
        [pearson_block(np.asarray(mv.isel(time=sl).values), ref) for sl in batches(mv.sizes["time"])]
    )
    return xr.DataArray(vals, dims=("time",), coords=time_coords(mv))


def crispness_of_mean(mean: np.ndarray) -> float:
    """Crispness (M2) of a mean image: the Frobenius norm of its gradient magnitude."""
    if min(mean.shape) < 2:
        raise ValueError(f"crispness needs at least 2 x 2 pixels after cropping, got {mean.shape}")
    gy, gx = np.gradient(mean)
    return float(np.sqrt(np.nansum(gy**2 + gx**2)))


def time_coords(mv: xr.DataArray) -> dict[str, xr.DataArray]:
    return {k: c for k, c in mv.coords.items() if set(c.dims) <= {"time"}}


def crop_attr(crop: Any) -> list[int]:
    return list(crop_pair(crop))
