"""Quality-control plot of the movie itself: mean images and correlation traces before and
after correction (:func:`plot_before_after`; see :mod:`xnormcorre.qc.plot`)."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from . import metrics
from .common import crop_pair, mean_image, prepare
from .plot_common import figure, time_axis

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_before_after"]


def _projected(movie: Any, plane: int | None) -> tuple[Any, str]:
    """A volume or multi-plane movie ``(time, z, y, x)`` as ``(time, y, x)``: plane
    ``plane`` of its plane dim, or (None) the maximum projection along it; other movies as given."""
    if not isinstance(movie, xr.DataArray) or movie.ndim != 4:
        return movie, ""
    extra = [d for d in movie.dims if d not in ("time", "y", "x")]
    if len(extra) != 1:
        return movie, ""
    dim = extra[0]
    if plane is None:
        return movie.max(dim), f"maximum projection along {dim}, "
    n = movie.sizes[dim]
    if isinstance(plane, bool) or not isinstance(plane, numbers.Integral) or not -n <= plane < n:
        raise ValueError(f"plane must be an integer in [0, {n}) (a position along {dim!r}), got {plane!r}")
    return movie.isel({dim: int(plane)}), f"{dim} plane {int(plane) % n}, "


def plot_before_after(
    raw: xr.DataArray,
    ds: xr.Dataset | xr.DataArray,
    *,
    crop: int | tuple[int, int] | None = None,
    plane: int | None = None,
) -> Figure:
    """Mean images before and after correction, and correlation-with-mean traces.

    Top: NaN-mean image of ``raw`` and of the corrected movie on a shared grey scale,
    titled with their crispness (M2).  Bottom: per-frame correlation with each movie's
    own mean image (M1), lines with ``gid`` ``"raw"`` and ``"corrected"``.

    Parameters
    ----------
    raw : xarray.DataArray, (time, y, x)
        The movie before correction (in memory or dask-backed).
    ds : xarray.Dataset or xarray.DataArray
        A registration result (its ``corrected``) or the corrected movie itself.
    crop : int or (int, int), optional
        Border excluded from the metrics (not from the images).  Default: the result's
        ``max_shifts`` attribute, else 0 (as :func:`xnormcorre.metrics.summary`).
    plane : int, optional
        For a volume or multi-plane movie ``(time, z, y, x)``: the plane shown (its
        position along the plane dim); default: the maximum projection along it.

    Returns
    -------
    matplotlib.figure.Figure
        Three axes: raw mean, corrected mean, correlation traces.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=10, shape=(64, 64), max_shift=2)
    >>> res = movie.normcorre.rigid(max_shifts=4)
    >>> fig = plot_before_after(movie, res)
    >>> [len(ax.images) for ax in fig.axes], len(fig.axes[2].lines)
    ([1, 1, 0], 2)
    """
    raw, what = _projected(raw, plane)
    raw_mv = prepare(raw, 0, "raw")
    if isinstance(ds, xr.Dataset):
        if "corrected" not in ds:
            raise ValueError("ds has no 'corrected' variable: pass a result Dataset or the corrected movie")
        cor_mv = prepare(_projected(ds["corrected"], plane)[0], 0, "corrected")
        ms = ds.attrs.get("max_shifts")
        ok = isinstance(ms, (list, tuple, np.ndarray)) and len(ms) in (2, 3)
        default_crop = (int(ms[-2]), int(ms[-1])) if ok else 0
    else:
        cor_mv = prepare(_projected(ds, plane)[0], 0, "ds")
        default_crop = 0
    if raw_mv.shape[1:] != cor_mv.shape[1:]:
        raise ValueError(
            f"raw and corrected frames differ in shape: {raw_mv.shape[1:]} vs {cor_mv.shape[1:]}"
        )
    crop = default_crop if crop is None else crop

    means = [mean_image(mv) for mv in (raw_mv, cor_mv)]
    crisp = [metrics.crispness(xr.DataArray(m, dims=("y", "x")), crop=crop) for m in means]
    corrs = [metrics.correlation_with_mean(mv, crop=crop) for mv in (raw_mv, cor_mv)]
    both = np.concatenate([m[np.isfinite(m)] for m in means])
    lo, hi = np.percentile(both, [1, 99.5]) if both.size else (0.0, 1.0)

    h, w = means[0].shape
    fig = figure(figsize=(9, 3.2 * h / w + 3.0))
    grid = fig.add_gridspec(2, 2, height_ratios=[h / w * 1.6, 1.0])
    for j, (name, m, c) in enumerate(zip(("raw", "corrected"), means, crisp, strict=True)):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(m, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"{name} mean image (crispness {c:.4g})")
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[1, :])
    t, tlabel = time_axis(raw_mv)
    for name, c, color in zip(("raw", "corrected"), corrs, ("C3", "C0"), strict=True):
        vals = np.asarray(c.values, dtype=float)
        mean = float(np.mean(vals[np.isfinite(vals)])) if np.isfinite(vals).any() else np.nan
        (line,) = ax.plot(t, vals, color=color, lw=1.0, label=f"{name} (mean {mean:.3f})")
        line.set_gid(name)
    ax.set_xlabel(tlabel)
    ax.set_ylabel("correlation with mean image")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)
    cy, cx = crop_pair(crop)
    fig.suptitle(f"before / after motion correction ({what}metrics on frames cropped by {cy}, {cx} px)")
    return fig
