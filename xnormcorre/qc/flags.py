"""Quality-control flags of a registration result.

:func:`quality_flags` turns a result Dataset into int8 flag variables (1 = suspect) that
can be stored next to the shifts (NetCDF-safe, CF ``flag_values``/``flag_meanings``):

* ``at_max_shift (time)``: the (rigid) shift reached the search bound, so the true
  displacement may be larger than what was corrected;
* ``low_correlation (time)``: the frame correlates unusually badly with the template
  (corrupted, blank, or misregistered frame);
* ``patch_jump (time, patch_y, patch_x)`` (piecewise-rigid results only): a patch whose
  shift departs from the smooth (affine) field of the other patches by more than that
  patch's own estimation noise allows (a patch that "jumped" to another optimum); a
  smooth deformation, or a steady departure of one patch, is not flagged;
* ``patch_at_max_deviation (time, patch_y, patch_x)`` (piecewise-rigid results with
  ``max_deviation_rigid`` known): a patch shift that sits at the edge of its search
  window ``rigid ± max_deviation_rigid``, so its true displacement may lie beyond.

Flags of a dask-backed result stay lazy; they are computed with the result.
"""

from __future__ import annotations

import json
import numbers
from typing import Any

import numpy as np
import xarray as xr

from .. import validate as vd
from .common import MAD_TO_SIGMA, flag_attrs
from .patch_flags import PATCH_JUMP_K, PATCH_JUMP_PX, patch_flags

__all__ = ["quality_flags", "LOW_CORR_K", "PATCH_JUMP_K", "PATCH_JUMP_PX"]

#: Default number of robust standard deviations below the median for ``low_correlation``.
LOW_CORR_K = 5.0
_SIGMA_FLOOR = 0.05  # floor of the robust spread of atanh(correlation): ignore tiny dips


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
        sigma = max(MAD_TO_SIGMA * float(np.median(np.abs(z[ok] - med))), _SIGMA_FLOOR)
        with np.errstate(invalid="ignore"):
            low = ~(z >= med - k * sigma)
    return low.astype(np.int8)


def _max_deviation_from_attrs(ds: xr.Dataset) -> Any:
    if "max_deviation_rigid" in ds.attrs:
        return ds.attrs["max_deviation_rigid"]
    if "parameters" in ds.attrs:
        try:
            return json.loads(ds.attrs["parameters"]).get("max_deviation_rigid")
        except (TypeError, ValueError):
            return None
    return None


def quality_flags(
    ds: xr.Dataset,
    *,
    max_shifts: int | tuple[int, int],
    corr_threshold: float | None = None,
    k: float = LOW_CORR_K,
    jump_threshold: float = PATCH_JUMP_PX,
    jump_k: float = PATCH_JUMP_K,
    max_deviation_rigid: int | tuple[int, int] | None = None,
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
        Smallest deviation (px, Euclidean) that ``patch_jump`` flags.
    jump_k : float
        ``patch_jump`` fires when a patch's deviation from the reference field exceeds
        ``max(jump_threshold, jump_k · σ_p)``, where ``σ_p`` is the robust spread over
        time (``1.4826·MAD``, the larger of y and x) of that patch's deviation: a patch
        with little content, whose estimate is noisy, needs a larger departure.  The
        deviation is measured from the patch's median deviation over time, so a steady
        non-affine deformation is not flagged.  The reference field is an affine field
        ``a + b·y + c·x`` fitted per frame to the patch shifts (refitted once without the
        flagged patches); grids of fewer than 6 patches use the rigid shift.
    max_deviation_rigid : int or (int, int), optional
        The half-width of each patch's search window around the rigid shift (px).
        Default: the result's ``max_deviation_rigid`` attribute (or its ``parameters``
        JSON); without it, ``patch_at_max_deviation`` is not computed.

    Returns
    -------
    xarray.Dataset
        int8 variables (1 = suspect, 0 = ok; NaN correlations count as low) with
        ``long_name``, ``units = "1"``, ``flag_values = [0, 1]`` and ``flag_meanings``:

        * ``at_max_shift (time)``: ``|shift| >= max_shifts - 0.5`` px along y or x (of
          ``rigid_shifts`` for piecewise-rigid results);
        * ``low_correlation (time)`` when ``ds`` has ``correlation`` (a per-patch
          correlation is averaged over patches first);
        * ``patch_jump (time, patch_y, patch_x)`` for piecewise-rigid results;
        * ``patch_at_max_deviation (time, patch_y, patch_x)`` for piecewise-rigid
          results with ``rigid_shifts`` and a known ``max_deviation_rigid``:
          ``|patch shift - rigid shift| >= max_deviation_rigid - 0.05`` px along y or x
          (axes with ``max_deviation_rigid = 0`` excepted).

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

    A 3 x 3 grid of patches following the rigid shift within 0.1 px, but for one patch
    that jumps 2 px at frame 4 and one that hits its search window (``rigid ± 3``):

    >>> rng = np.random.default_rng(0)
    >>> rigid = rng.normal(size=(20, 2))
    >>> s = rigid[:, None, None, :] + rng.normal(scale=0.1, size=(20, 3, 3, 2))
    >>> s[4, 1, 2, 0] += 2.0
    >>> s[9, 0, 0, 1] = rigid[9, 1] - 3.0
    >>> pw = xr.Dataset(
    ...     {"shifts": (("time", "patch_y", "patch_x", "axis"), s), "rigid_shifts": (("time", "axis"), rigid)},
    ...     coords={"axis": ["y", "x"], "patch_y": [16.0, 48.0, 80.0], "patch_x": [16.0, 48.0, 80.0]},
    ... )
    >>> flags = quality_flags(pw, max_shifts=8, max_deviation_rigid=3)
    >>> np.argwhere(flags.patch_jump.values).tolist()
    [[4, 1, 2], [9, 0, 0]]
    >>> np.argwhere(flags.patch_at_max_deviation.values).tolist()
    [[9, 0, 0]]
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
    jump_k = vd.positive_number(jump_k, "jump_k")
    if max_deviation_rigid is None:
        max_deviation_rigid = _max_deviation_from_attrs(ds)
    md = (
        None
        if max_deviation_rigid is None
        else np.asarray(vd.pair(max_deviation_rigid, "max_deviation_rigid", minimum=0), dtype=np.float64)
    )

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
        flag_attrs(
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
            flag_attrs(
                "frame with low correlation to the template",
                "low_correlation",
                f"1 where {rule}; NaN correlations count as low",
            )
        )

    if piecewise:
        out.update(patch_flags(shifts, rigid, jump_threshold, jump_k, md))
    return out
