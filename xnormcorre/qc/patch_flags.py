"""Quality-control flags of the patches of a piecewise-rigid result (see :mod:`xnormcorre.qc.flags`).

* ``patch_jump (time, patch_y, patch_x)``: a patch whose shift departs from the smooth
  (affine) field of the other patches by more than that patch's own estimation noise
  allows (a patch that "jumped" to another optimum);
* ``patch_at_max_deviation (time, patch_y, patch_x)``: a patch shift that sits at the
  edge of its search window ``rigid ± max_deviation_rigid``.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from .common import MAD_TO_SIGMA, flag_attrs

__all__ = ["AFFINE_MIN_PATCHES", "PATCH_JUMP_K", "PATCH_JUMP_PX", "patch_deviation", "patch_flags"]

#: Default smallest deviation (px) of a patch from the reference field that ``patch_jump`` flags.
PATCH_JUMP_PX = 1.0
#: Default number of robust standard deviations (of the patch's own deviation over time) for ``patch_jump``.
PATCH_JUMP_K = 6.0
#: Fewest patches for the affine reference field; smaller grids are compared with the rigid shift.
AFFINE_MIN_PATCHES = 6
LIMIT_TOL = 0.05  # px below max_deviation_rigid that counts as the search limit


def robust_centre_spread(e: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per patch and axis, over time: median and ``1.4826·MAD`` of ``e (T, n, 2)`` where ``keep (T, n)``."""
    x = np.where(keep[..., None], e, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN patches: NaN centre and spread
        med = np.nanmedian(x, axis=0)
        spread = MAD_TO_SIGMA * np.nanmedian(np.abs(x - med), axis=0)
    return np.nan_to_num(med), np.nan_to_num(spread)


def patch_deviation(
    s: np.ndarray,
    rigid: np.ndarray | None,
    floor: float,
    k: float,
    cy: np.ndarray,
    cx: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Deviation of each patch from the reference field, and its threshold.

    ``s (T, Py, Px, 2)``, ``rigid (T, 2)`` or None -> ``dev (T, Py, Px)`` (px, NaN where the
    shift is not finite) and ``threshold (Py, Px)``.  The whole time series is needed:
    the spread of each patch is a statistic over time.
    """
    t, py, px, _ = s.shape
    n = py * px
    S = np.asarray(s, dtype=np.float64).reshape(t, n, 2)
    ok = np.isfinite(S).all(-1)
    # common motion of each frame, and each patch's steady offset from it (a static
    # deformation): removed first, so that the field below only sees what changes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames
        common = (
            np.asarray(rigid, np.float64)[:, None, :]
            if rigid is not None
            else np.nanmedian(S, 1, keepdims=True)
        )
    steady, _ = robust_centre_spread(S - common, ok)
    D = np.where(ok[..., None], S - steady, 0.0)
    if n >= AFFINE_MIN_PATCHES:
        yy, xx = np.meshgrid(np.asarray(cy, float), np.asarray(cx, float), indexing="ij")
        scale = max(np.ptp(yy), np.ptp(xx), 1.0)
        A = np.stack([np.ones(n), (yy.ravel() - yy.mean()) / scale, (xx.ravel() - xx.mean()) / scale], 1)
    keep = ok
    for _ in range(2):
        if n >= AFFINE_MIN_PATCHES:
            AtW = A.T[None] * keep.astype(np.float64)[:, None, :]  # (T, 3, n)
            coef = np.linalg.pinv(AtW @ A) @ (AtW @ D)  # (T, 3, 2)
            e = D - A @ coef
        else:
            e = D - np.nan_to_num(common)
        centre, spread = robust_centre_spread(e, keep)
        thr = np.maximum(floor, k * spread.max(-1))  # (n,)
        dev = np.sqrt(((e - centre) ** 2).sum(-1))
        keep = ok & (dev <= thr)  # refit without the outliers
    dev = np.where(ok, dev, np.nan)
    return dev.reshape(t, py, px), thr.reshape(py, px)


def patch_jump_kernel(
    s: np.ndarray, rigid: np.ndarray | None, floor: float, k: float, cy: np.ndarray, cx: np.ndarray
) -> np.ndarray:
    """int8 ``(T, Py, Px)``: deviation from the reference field beyond the patch's threshold."""
    if s.shape[0] == 0:
        return np.zeros(s.shape[:3], np.int8)
    dev, thr = patch_deviation(s, rigid, floor, k, cy, cx)
    with np.errstate(invalid="ignore"):
        return (dev > thr).astype(np.int8)


def patch_limit_kernel(s: np.ndarray, rigid: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """int8 ``(..., Py, Px)``: ``|patch - rigid| >= limit`` along y or x (axes with limit > 0)."""
    d = np.abs(np.asarray(s, np.float64) - np.asarray(rigid, np.float64)[..., None, None, :])
    with np.errstate(invalid="ignore"):
        hit = (d >= limit - LIMIT_TOL) & (limit > 0)
    return hit.any(-1).astype(np.int8)


def patch_flags(
    shifts: xr.DataArray, rigid: xr.DataArray | None, floor: float, k: float, md: np.ndarray | None
) -> xr.Dataset:
    """``patch_jump`` (and ``patch_at_max_deviation``) of a piecewise-rigid result."""
    out = xr.Dataset()
    s = shifts.transpose("time", "patch_y", "patch_x", "axis").drop_vars("axis", errors="ignore")
    r = None if rigid is None else rigid.transpose("time", "axis").drop_vars("axis", errors="ignore")
    if s.chunks is not None and r is not None:  # per frame: the shifts' own time chunks
        r = r.chunk({"time": s.chunksizes["time"], "axis": -1})
    s_frames, r_frames = s, r
    if s.chunks is not None or (r is not None and r.chunks is not None):
        # the spread of each patch is a statistic over time: one chunk along time (small)
        s = s.chunk({"time": -1, "patch_y": -1, "patch_x": -1, "axis": -1})
        r = None if r is None else r.chunk({"time": -1, "axis": -1})
    cy, cx = s["patch_y"].values, s["patch_x"].values
    n = s.sizes["patch_y"] * s.sizes["patch_x"]
    args, core = [s], [["time", "patch_y", "patch_x", "axis"]]
    if r is not None:
        args.append(r)
        core.append(["time", "axis"])

    def jump_kernel(s_block: np.ndarray, r_block: np.ndarray | None = None) -> np.ndarray:
        return patch_jump_kernel(s_block, r_block, floor, k, cy, cx)

    jump = xr.apply_ufunc(
        jump_kernel,
        *args,
        input_core_dims=core,
        output_core_dims=[["time", "patch_y", "patch_x"]],
        dask="parallelized",
        output_dtypes=[np.int8],
    )
    if n >= AFFINE_MIN_PATCHES:
        ref = (
            "an affine field fitted per frame to the patch shifts (refitted once without the flagged patches)"
        )
    elif r is not None:
        ref = "the rigid shift"
    else:
        ref = "the mean of the patch shifts"
    out["patch_jump"] = jump.transpose("time", "patch_y", "patch_x").assign_attrs(
        flag_attrs(
            "patch shift departing from the smooth field of the other patches",
            "patch_jump",
            f"1 where |d - median over time of d| > max({floor:g} px, {k:g} * sigma) with d = patch shift - "
            f"reference, reference = {ref}, sigma = 1.4826 * MAD over time of d for that patch "
            "(larger of y and x): a jump beyond the patch's own estimation noise",
        )
    )
    if r_frames is not None and md is not None:
        if s_frames.chunks is not None:
            s_frames = s_frames.chunk({"patch_y": -1, "patch_x": -1, "axis": -1})
        hit = xr.apply_ufunc(
            patch_limit_kernel,
            s_frames,
            r_frames,
            kwargs={"limit": md},
            input_core_dims=[["patch_y", "patch_x", "axis"], ["axis"]],
            output_core_dims=[["patch_y", "patch_x"]],
            dask="parallelized",
            output_dtypes=[np.int8],
        )
        out["patch_at_max_deviation"] = hit.transpose("time", "patch_y", "patch_x").assign_attrs(
            flag_attrs(
                "patch shift at the edge of its search window",
                "patch_at_max_deviation",
                f"1 where |patch shift - rigid shift| >= max_deviation_rigid - {LIMIT_TOL:g} px along y or x "
                f"(max_deviation_rigid = {md.astype(int).tolist()}); the patch's true displacement may lie "
                "beyond its search window",
            )
        )
    return out
