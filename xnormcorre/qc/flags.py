"""Quality-control flags of a registration result.

:func:`quality_flags` turns a result Dataset into int8 flag variables (1 = suspect) that
can be stored next to the shifts (NetCDF-safe, CF ``flag_values``/``flag_meanings``):

* ``at_max_shift (time)``: the (rigid) shift reached the search bound, so the true
  displacement may be larger than what was corrected;
* ``low_correlation (time)``: the frame correlates unusually badly with the template
  (corrupted, blank, or misregistered frame);
* ``patch_jump (time, patch_y, patch_x)`` (piecewise-rigid results only): a patch whose
  shift departs from the smooth (affine) field of the other patches (a patch that
  "jumped" to another optimum); a smooth deformation is not flagged.

Flags of a dask-backed result stay lazy; they are computed with the result.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import xarray as xr

from .. import validate as vd

__all__ = ["quality_flags", "LOW_CORR_K", "PATCH_JUMP_PX"]

#: Default number of robust standard deviations below the median for ``low_correlation``.
LOW_CORR_K = 5.0
#: Default deviation (px) of a patch from the affine field of the patches for ``patch_jump``.
PATCH_JUMP_PX = 1.0
_SIGMA_FLOOR = 0.05  # floor of the robust spread of atanh(correlation): ignore tiny dips
_MAD_TO_SIGMA = 1.4826


def _flag_attrs(long_name: str, meaning: str, comment: str) -> dict[str, Any]:
    return {
        "long_name": long_name,
        "units": "1",
        "flag_values": [0, 1],
        "flag_meanings": f"ok {meaning}",
        "comment": comment,
    }


def _low_corr_kernel(c: np.ndarray, threshold: float | None, k: float) -> np.ndarray:
    """int8 flags for a 1-D correlation trace (whole trace in one piece)."""
    c = np.asarray(c, dtype=np.float64)
    ok = np.isfinite(c)
    if threshold is not None:
        low = ~(c >= threshold)
    elif not ok.any():
        low = np.ones(c.shape, bool)
    else:
        z = np.arctanh(np.clip(c, -0.999999, 0.999999))
        med = np.median(z[ok])
        sigma = max(_MAD_TO_SIGMA * float(np.median(np.abs(z[ok] - med))), _SIGMA_FLOOR)
        with np.errstate(invalid="ignore"):
            low = ~(z >= med - k * sigma)
    return low.astype(np.int8)


def _patch_jump_kernel(
    s: np.ndarray, rigid: np.ndarray | None, threshold: float, cy: np.ndarray, cx: np.ndarray
) -> np.ndarray:
    """``s (T, Py, Px, 2)``, ``rigid (T, 2)`` or None -> int8 ``(T, Py, Px)``.

    Reference of each patch: an affine field ``a + b·y + c·x`` fitted per frame to the
    patch shifts (least squares, refitted once without the patches beyond
    ``threshold``), so that a smooth deformation is not flagged and an isolated patch
    that jumped to another optimum is.  Grids of fewer than 3 patches are compared with
    the rigid shift (or their mean when there is none).
    """
    t, py, px, _ = s.shape
    n = py * px
    if t == 0:
        return np.zeros((0, py, px), np.int8)
    S = np.asarray(s, dtype=np.float64).reshape(t, n, 2)
    if n < 3:
        ref = (
            np.asarray(rigid, np.float64)[:, None, :] if rigid is not None else S.mean(axis=1, keepdims=True)
        )
        dev = np.sqrt(((S - ref) ** 2).sum(-1))
    else:
        yy, xx = np.meshgrid(np.asarray(cy, float), np.asarray(cx, float), indexing="ij")
        scale = max(np.ptp(yy), np.ptp(xx), 1.0)
        A = np.stack([np.ones(n), (yy.ravel() - yy.mean()) / scale, (xx.ravel() - xx.mean()) / scale], 1)
        w = np.isfinite(S).all(-1).astype(np.float64)
        S0 = np.nan_to_num(S)
        for _ in range(2):
            AtW = A.T[None] * w[:, None, :]  # (T, 3, n)
            coef = np.linalg.pinv(AtW @ A) @ (AtW @ S0)  # (T, 3, 2)
            dev = np.sqrt(((S0 - A @ coef) ** 2).sum(-1))
            w = ((dev <= threshold) & np.isfinite(S).all(-1)).astype(np.float64)
        dev = np.where(np.isfinite(S).all(-1), dev, np.nan)
    with np.errstate(invalid="ignore"):
        return (dev > threshold).astype(np.int8).reshape(t, py, px)


def quality_flags(
    ds: xr.Dataset,
    *,
    max_shifts: int | tuple[int, int],
    corr_threshold: float | None = None,
    k: float = LOW_CORR_K,
    jump_threshold: float = PATCH_JUMP_PX,
) -> xr.Dataset:
    """Quality-control flags of a registration result, to ``ds.assign(...)``.

    Parameters
    ----------
    ds : xarray.Dataset
        A result of :func:`xnormcorre.rigid` (``shifts (time, axis)``, ``correlation
        (time)``) or of a piecewise-rigid registration (``shifts (time, patch_y,
        patch_x, axis)`` and ``rigid_shifts (time, axis)``).
    max_shifts : int or (int, int)
        The search bound of the run, in pixels, along (y, x).
    corr_threshold : float, optional
        Absolute threshold in ``[-1, 1]``: frames with ``correlation < corr_threshold``
        are flagged.  Default: the robust rule below.
    k : float
        Robust rule: a frame is flagged when ``atanh(c_t)`` lies more than ``k`` robust
        standard deviations (``1.4826·MAD``, floored at 0.05) below the median over
        frames.  The Fisher transform ``atanh`` evens out the spread of correlations
        near 1; ``k = 5`` does not fire on frames that merely hold calcium transients.
    jump_threshold : float
        ``patch_jump`` fires when a patch's shift is farther than this (px, Euclidean)
        from an affine field fitted per frame to all patch shifts (refitted once
        without the outliers); grids of fewer than 3 patches use the rigid shift.

    Returns
    -------
    xarray.Dataset
        int8 variables (1 = suspect, 0 = ok; NaN correlations count as low) with
        ``long_name``, ``units = "1"``, ``flag_values = [0, 1]`` and ``flag_meanings``:

        * ``at_max_shift (time)``: ``|shift| >= max_shifts - 0.5`` px along y or x (of
          ``rigid_shifts`` for piecewise-rigid results);
        * ``low_correlation (time)`` when ``ds`` has ``correlation`` (a per-patch
          correlation is averaged over patches first);
        * ``patch_jump (time, patch_y, patch_x)`` for piecewise-rigid results.

        Dask-backed results give lazy flags.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset(
    ...     {
    ...         "shifts": (("time", "axis"), [[0.2, 0.1], [5.6, -1.0], [0.0, -0.3]]),
    ...         "correlation": ("time", [0.90, 0.91, 0.20]),
    ...     },
    ...     coords={"axis": ["y", "x"]},
    ... )
    >>> flags = quality_flags(ds, max_shifts=6)
    >>> flags.at_max_shift.values.tolist()
    [0, 1, 0]
    >>> flags.low_correlation.values.tolist()
    [0, 0, 1]
    >>> ds.assign(flags).at_max_shift.attrs["flag_meanings"]
    'ok at_max_shift'
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds must be a result Dataset, got {type(ds).__name__}")
    if "shifts" not in ds:
        raise ValueError("ds has no 'shifts' variable: not a registration result")
    ms = np.asarray(vd.pair(max_shifts, "max_shifts"), dtype=np.float64)
    if corr_threshold is not None:
        if isinstance(corr_threshold, (bool, np.bool_)) or not isinstance(corr_threshold, numbers.Real):
            raise TypeError(f"corr_threshold must be a number in [-1, 1] or None, got {corr_threshold!r}")
        if not -1.0 <= corr_threshold <= 1.0:
            raise ValueError(f"corr_threshold must be in [-1, 1], got {corr_threshold!r}")
        corr_threshold = float(corr_threshold)
    k = vd.positive_number(k, "k")
    jump_threshold = vd.positive_number(jump_threshold, "jump_threshold")

    shifts = ds["shifts"]
    piecewise = "patch_y" in shifts.dims and "patch_x" in shifts.dims
    if piecewise and "rigid_shifts" in ds:
        rigid = ds["rigid_shifts"]
    elif piecewise:
        rigid = None
    else:
        rigid = shifts
    for name, var in (("shifts", shifts), ("rigid_shifts", rigid)):
        if var is not None and ("time" not in var.dims or "axis" not in var.dims or var.sizes["axis"] != 2):
            raise ValueError(f"ds[{name!r}] must have dims 'time' and 'axis' (2 components), got {var.dims}")

    out = xr.Dataset()
    bound = xr.DataArray(ms - 0.5, dims=("axis",))
    src = rigid if rigid is not None else shifts
    hit = (abs(src.drop_vars("axis", errors="ignore")) >= bound).any([d for d in src.dims if d != "time"])
    out["at_max_shift"] = hit.astype(np.int8).assign_attrs(
        _flag_attrs(
            "frame shift at the max_shifts search bound",
            "at_max_shift",
            f"1 where |{'rigid_shifts' if rigid is not None and piecewise else 'shifts'}| >= max_shifts - 0.5 px "
            f"along y or x (max_shifts = {ms.astype(int).tolist()}); the true motion may exceed the search range",
        )
    )

    if "correlation" in ds:
        corr = ds["correlation"]
        extra = [d for d in corr.dims if d != "time"]
        if "time" not in corr.dims:
            raise ValueError(f"ds['correlation'] must have a 'time' dim, got {corr.dims}")
        if extra:
            corr = corr.mean(extra)
        if corr.chunks is not None:
            corr = corr.chunk({"time": -1})
        low = xr.apply_ufunc(
            _low_corr_kernel,
            corr,
            input_core_dims=[["time"]],
            output_core_dims=[["time"]],
            kwargs={"threshold": corr_threshold, "k": k},
            dask="parallelized",
            output_dtypes=[np.int8],
        )
        rule = (
            f"correlation < corr_threshold = {corr_threshold:g}"
            if corr_threshold is not None
            else f"atanh(correlation) < median - {k:g} * max(1.4826 * MAD, {_SIGMA_FLOOR:g}) over frames"
        )
        out["low_correlation"] = low.assign_attrs(
            _flag_attrs(
                "frame with low correlation to the template",
                "low_correlation",
                f"1 where {rule}; NaN correlations count as low",
            )
        )

    if piecewise:
        s = shifts.transpose("time", "patch_y", "patch_x", "axis")
        data = s.chunk({"patch_y": -1, "patch_x": -1, "axis": -1}) if s.chunks is not None else s
        args = [data]
        core = [["patch_y", "patch_x", "axis"]]
        if rigid is not None:
            r = rigid.transpose("time", "axis")
            if data.chunks is not None:
                r = r.chunk({"time": data.chunksizes["time"], "axis": -1})
            args.append(r)
            core.append(["axis"])

        cy, cx = s["patch_y"].values, s["patch_x"].values

        def kernel(s_block: np.ndarray, r_block: np.ndarray | None = None) -> np.ndarray:
            return _patch_jump_kernel(s_block, r_block, jump_threshold, cy, cx)

        jump = xr.apply_ufunc(
            kernel,
            *args,
            input_core_dims=core,
            output_core_dims=[["patch_y", "patch_x"]],
            dask="parallelized",
            output_dtypes=[np.int8],
        )
        out["patch_jump"] = jump.drop_vars("axis", errors="ignore").assign_attrs(
            _flag_attrs(
                "patch shift deviating from the smooth field of the other patches",
                "patch_jump",
                f"1 where |patch shift - reference| > {jump_threshold:g} px, reference = affine field "
                "fitted per frame to the patch shifts (robust refit); grids of < 3 patches: the rigid shift",
            )
        )
    return out
