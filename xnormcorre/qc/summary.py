"""Before/after quality metrics of a registration in one call (:func:`summary`), and the run
verdict and flag counts of a result (:func:`result_qc`).

:func:`summary` computes the metrics of :mod:`xnormcorre.qc.metrics` (M1, M2) and
:mod:`xnormcorre.qc.flow` (M3) on the raw and the corrected movie with one crop, as a
small labeled Dataset along ``stage``; a volume or multi-plane movie plane by plane.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from ..validate import as_movie
from .common import crispness_of_mean, crop_pair, frame_correlation, mean_image, prepare
from .flow import flow_backend, residual_optical_flow

__all__ = ["result_qc", "summary"]


def _stage_movie(obj: Any, name: str) -> xr.DataArray:
    if isinstance(obj, xr.Dataset):
        if "corrected" not in obj:
            raise ValueError(f"{name} is a Dataset without a 'corrected' variable: pass a movie DataArray")
        return obj["corrected"]
    return as_movie(obj, name)


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
    raw : xarray.DataArray or array-like, (time, y, x) or (time, z, y, x)
        The movie before correction; a volume or multi-plane movie is summarised plane
        by plane.
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
        Dim ``stage = ["raw", "corrected"]`` (and the plane dim, e.g. ``z``, for a volume
        or multi-plane movie ``(time, z, y, x)``: the metrics of each plane); variables ``mean_correlation``,
        ``median_correlation`` (M1, with each movie's own mean image), ``crispness``
        (M2) and, with ``flow``, ``residual_flow_norm``, ``residual_flow_norm_std`` and
        ``residual_flow_rms`` (M3, mean over bins); attrs record ``crop`` and the flow
        method.  When ``corrected`` is a result Dataset, attrs also carry its run
        verdict and flags (see :func:`result_qc`): ``qc_verdict`` (``"ok"`` or
        ``"suspect"``), ``qc_warnings``, ``n_defects``, ``n_frames`` and the number of
        frames with each flag (``n_frames_at_max_shift``, ...).

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
    plane = _plane_dim(raw, corrected)
    if plane is not None:
        return _summary_by_plane(raw, corrected, plane, crop=crop, flow=flow, flow_method=flow_method)
    raw_mv = as_movie(raw, "raw")
    cor_mv = _stage_movie(corrected, "corrected")
    if (raw_mv.sizes["y"], raw_mv.sizes["x"]) != (cor_mv.sizes["y"], cor_mv.sizes["x"]):
        raise ValueError(
            "raw and corrected must have the same frame shape, got "
            f"{raw_mv.sizes['y']}x{raw_mv.sizes['x']} and {cor_mv.sizes['y']}x{cor_mv.sizes['x']}"
        )
    if crop is None:
        crop = _result_crop(corrected)
    cy, cx = crop_pair(crop)
    if not isinstance(flow, (bool, np.bool_)):
        raise TypeError(f"flow must be True or False, got {flow!r}")
    if flow:
        flow_backend(flow_method)  # validate before the slow part

    out: dict[str, list[float]] = {"mean_correlation": [], "median_correlation": [], "crispness": []}
    flow_attrs: dict[str, Any] = {}
    for mv in (raw_mv, cor_mv):
        prepared = prepare(mv, (cy, cx))
        mean = mean_image(prepared)  # one pass, shared by M1 and M2
        c = frame_correlation(prepared, mean).values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["mean_correlation"].append(float(np.nanmean(c)))
            out["median_correlation"].append(float(np.nanmedian(c)))
        out["crispness"].append(crispness_of_mean(mean))
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
        "comment": "M1/M2: NoRMCorre motion_metrics; M3: CaImAn compute_metrics_motion_correction; compare only with the same crop",
    }
    ds.attrs.update(flow_attrs)
    if isinstance(corrected, xr.Dataset):
        ds.attrs.update(result_qc(corrected))
    return ds


def _result_crop(corrected: Any) -> int | tuple[int, int]:
    """The default crop: a result's in-plane ``max_shifts`` (y, x: the last two entries), else 0."""
    ms = corrected.attrs.get("max_shifts") if isinstance(corrected, xr.Dataset) else None
    return (int(ms[-2]), int(ms[-1])) if isinstance(ms, (list, tuple, np.ndarray)) and len(ms) >= 2 else 0


def _plane_dim(raw: Any, corrected: Any) -> str | None:
    """The plane dim of a volume or multi-plane ``raw`` movie (4-D: ``time``, ``y``, ``x``
    and one more dim; ``"z"`` for a 4-D array), else None."""
    if isinstance(raw, xr.DataArray):
        extra = [d for d in raw.dims if d not in ("time", "y", "x")]
        return extra[0] if raw.ndim == 4 and len(extra) == 1 else None
    if np.ndim(raw) == 4:
        if isinstance(corrected, xr.Dataset):
            return str(corrected.attrs.get("plane_dim", "z"))
        return "z"
    return None


def _summary_by_plane(raw: Any, corrected: Any, plane: str, **kw: Any) -> xr.Dataset:
    """:func:`summary` of each plane of a volume or multi-plane movie, stacked along ``plane``."""
    dims = ("time", plane, "y", "x")
    raw_da = raw if isinstance(raw, xr.DataArray) else xr.DataArray(np.asarray(raw), dims=dims)
    cor = (
        corrected["corrected"]
        if isinstance(corrected, xr.Dataset) and "corrected" in corrected
        else corrected
    )
    if not isinstance(cor, xr.DataArray):
        cor = xr.DataArray(np.asarray(cor), dims=dims) if np.ndim(cor) == 4 else cor
    if not isinstance(cor, xr.DataArray) or plane not in cor.dims:
        raise ValueError(f"raw has a {plane!r} dim: corrected must be a movie with the same {plane!r} dim")
    if raw_da.sizes[plane] != cor.sizes[plane]:
        raise ValueError(
            f"raw and corrected must have the same number of planes, got {raw_da.sizes[plane]} and "
            f"{cor.sizes[plane]}"
        )
    if kw["crop"] is None:
        kw["crop"] = _result_crop(corrected)
    parts = [
        summary(raw_da.isel({plane: i}), cor.isel({plane: i}), **kw).drop_vars(plane, errors="ignore")
        for i in range(raw_da.sizes[plane])
    ]
    ds = xr.concat(parts, dim=plane, combine_attrs="override")
    if plane in raw_da.coords:
        ds = ds.assign_coords({plane: raw_da[plane]})
    ds.attrs["comment"] = ds.attrs["comment"] + f"; computed plane by plane along {plane!r}"
    if isinstance(corrected, xr.Dataset):
        ds.attrs.update(result_qc(corrected))
    return ds


_QC_FLAGS = ("at_max_shift", "low_correlation", "patch_jump", "patch_at_max_deviation")


def result_qc(res: xr.Dataset) -> dict[str, Any]:
    """The verdict and flag counts of a registration result, as NetCDF-safe attrs.

    Parameters
    ----------
    res : xarray.Dataset
        A result of :func:`xnormcorre.rigid` or :func:`xnormcorre.pwrigid`.

    Returns
    -------
    dict
        ``qc_verdict`` and ``qc_warnings`` (when the result has them); ``n_defects``
        (pixels in ``defect_mask``); ``n_frames``; for each flag held in memory,
        ``n_frames_<flag>``: the frames with the flag set (for patch flags: in any patch).
        Flags of a dask-backed result are not computed here (that would register the
        movie again): load or compute the result first to count them.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> res = xr.Dataset(
    ...     {
    ...         "at_max_shift": ("time", np.array([0, 1, 0, 0], np.int8)),
    ...         "defect_mask": (("y", "x"), np.eye(3, dtype=np.int8)),
    ...     },
    ...     attrs={"qc_verdict": "suspect", "qc_warnings": "3 % of the frames reached the search bound"},
    ... )
    >>> result_qc(res)["qc_verdict"], result_qc(res)["n_frames_at_max_shift"], result_qc(res)["n_defects"]
    ('suspect', 1, 3)
    """
    out: dict[str, Any] = {}
    for key in ("qc_verdict", "qc_warnings"):
        if key in res.attrs:
            out[key] = str(res.attrs[key])
    if "defect_mask" in res and res["defect_mask"].chunks is None:
        out["n_defects"] = int(np.count_nonzero(res["defect_mask"].values))
    elif "n_defects" in res.attrs:
        out["n_defects"] = int(res.attrs["n_defects"])
    if "time" in res.sizes:
        out["n_frames"] = int(res.sizes["time"])
    for name in _QC_FLAGS:
        flag = res.get(name)
        if flag is None or flag.chunks is not None or "time" not in flag.dims:
            continue
        hit = np.asarray(flag.transpose("time", ...).values).reshape(flag.sizes["time"], -1) != 0
        out[f"n_frames_{name}"] = int(hit.any(axis=1).sum())
    return out
