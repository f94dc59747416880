"""Run diagnostics: catch a registration that failed, and say why.

A motion corrector whose wrong answers look like right ones is worse than none, so each
result carries a verdict (``attrs["qc_verdict"]``: ``"ok"`` or ``"suspect"``, and the
reasons in ``attrs["qc_warnings"]``, separated by `` | ``), and every suspect finding is also emitted as a
:class:`RegistrationWarning` naming the likely cause and the remedy.  The checks:

* **motion beyond the search range**: more than 1 % of the frames (of the whole movie
  when the shifts are in memory, otherwise of the frames registered while estimating
  the template) sit at the ``max_shifts`` bound;
* **many sensor defects**: more than 2 % of the pixels were flagged as stuck, hot or
  dead pixels or lines and left out of the estimate (``defect_mask``);
* **many poorly matching frames**: more than 5 % of the frames (of at least 20) are
  flagged ``low_correlation``.

The movie's calibration is recorded too: ``defect_mask (y, x)`` and, in attrs, the noise
model whose ``1/var`` weights the subpixel refinement (``noise_gain``,
``noise_intercept``, ``noise_model``) and the internal ``intensity_scale``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import schema as sc
from ..stacklevel import warn

__all__ = ["RegistrationWarning", "conclude"]

#: Fraction of frames at the search bound above which the motion may exceed ``max_shifts``.
AT_BOUND_FRACTION = 0.01
#: Fraction of flagged defect pixels above which the mask itself is suspect.
DEFECT_FRACTION = 0.02
#: Fraction of low-correlation frames above which the run is suspect.
LOW_CORR_FRACTION = 0.05
#: Fewest frames for the low-correlation fraction to mean anything.
MIN_FRAMES = 20


class RegistrationWarning(UserWarning):
    """A registration result may be wrong; the message names the cause and the remedy."""


def _rigid_shifts(ds: xr.Dataset) -> xr.DataArray:
    return ds[sc.RIGID_SHIFTS] if sc.RIGID_SHIFTS in ds else ds[sc.SHIFTS]


def _findings(ds: xr.Dataset, cal, sample_shifts, max_shifts: tuple[int, int]) -> list[str]:
    out = []
    shifts = _rigid_shifts(ds)
    if shifts.chunks is None:
        s, where = np.asarray(shifts.values), "of the frames"
    elif sample_shifts is not None and len(sample_shifts):
        s, where = np.asarray(sample_shifts), "of the frames registered for the template"
    else:
        s = None
    if s is not None and len(s):
        lim = np.asarray(max_shifts, np.float64) - 0.5
        frac = float(np.mean((np.abs(s) >= lim).any(axis=1)))
        if frac > AT_BOUND_FRACTION:
            out.append(
                f"{100 * frac:.1f} % {where} reached the search bound max_shifts={tuple(max_shifts)}: the "
                "motion may exceed it; increase max_shifts"
            )
    n_px = ds.sizes[sc.DIM_Y] * ds.sizes[sc.DIM_X]
    if cal.n_defects > DEFECT_FRACTION * n_px:
        out.append(
            f"{cal.n_defects} pixels ({100 * cal.n_defects / n_px:.1f} %) were flagged as sensor defects "
            "and left out of the estimate; check defect_mask, or pass defects=False if they are content"
        )
    flag = ds.get("low_correlation")
    if flag is not None and flag.chunks is None and flag.size >= MIN_FRAMES:
        frac = float(np.mean(flag.values))
        if frac > LOW_CORR_FRACTION:
            out.append(
                f"{100 * frac:.1f} % of the frames correlate unusually badly with the template "
                "(low_correlation): corrupted or blank frames, or a failed registration; inspect them"
            )
    flag = ds.get("patch_at_max_deviation")
    if flag is not None and flag.chunks is None and flag.size:
        frac = float(np.mean(flag.values))
        if frac > 0.01:
            out.append(
                f"{100 * frac:.1f} % of the patch estimates sit at the edge of their search window "
                "(max_deviation_rigid): the patches may hold too little content for a local estimate; "
                "increase strides/overlaps, or use rigid correction"
            )
    return out


def conclude(ds: xr.Dataset, cal, sample_shifts, max_shifts: tuple[int, int]) -> xr.Dataset:
    """Add the calibration (``defect_mask``, noise model) and the verdict to a result,
    warning (:class:`RegistrationWarning`) for each suspect finding."""
    mask = np.zeros((ds.sizes[sc.DIM_Y], ds.sizes[sc.DIM_X]), np.int8)
    if cal.defects is not None:
        mask[np.asarray(cal.defects, bool)] = 1
    ds[sc.DEFECT_MASK] = xr.DataArray(mask, dims=(sc.DIM_Y, sc.DIM_X), attrs=dict(sc.DEFECT_MASK_ATTRS))
    ds.attrs["n_defects"] = cal.n_defects
    ds.attrs["noise_model"] = "poisson-gaussian" if cal.noise.fitted else "uniform"
    ds.attrs["noise_gain"] = float(cal.noise.gain)
    ds.attrs["noise_intercept"] = float(cal.noise.intercept)
    ds.attrs["intensity_scale"] = float(cal.scale)
    findings = _findings(ds, cal, sample_shifts, max_shifts)
    ds.attrs["qc_verdict"] = "suspect" if findings else "ok"
    ds.attrs["qc_warnings"] = " | ".join(findings)
    for msg in findings:
        warn(msg, RegistrationWarning)
    return ds
