"""Run diagnostics: catch a registration that failed, and say why.

A motion corrector whose wrong answers look like right ones is worse than none, so each
result carries a verdict (``attrs["qc_verdict"]``: ``"ok"`` or ``"suspect"``, and the
reasons in ``attrs["qc_warnings"]``), and every suspect finding is also emitted as a
:class:`RegistrationWarning` naming the likely cause and the remedy.  The checks:

* **motion beyond the search range**: more than 1 % of the frames (of the whole movie
  when the shifts are in memory, otherwise of the frames registered while estimating
  the template) sit at the ``max_shifts`` bound;
* **double-image template**: the template repeats itself at a lag within the search
  range (:func:`template_echo`), the signature of a template averaged over frames at two
  positions -- registration then locks each frame onto one of the copies;
* **many sensor defects**: more than 2 % of the pixels were flagged as stuck, hot or
  dead pixels or lines and left out of the estimate (``defect_mask``);
* **many poorly matching frames**: more than 5 % of the frames are flagged
  ``low_correlation``.

The movie's calibration is recorded too: ``defect_mask (y, x)`` and, in attrs, the noise
model whose ``1/var`` weights the subpixel refinement (``noise_gain``,
``noise_intercept``, ``noise_model``) and the internal ``intensity_scale``.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from .. import schema as sc

__all__ = ["RegistrationWarning", "conclude", "template_echo"]

#: Fraction of frames at the search bound above which the motion may exceed ``max_shifts``.
AT_BOUND_FRACTION = 0.01
#: Relative height of a repeated template (autocorrelation side peak) that flags a double image.
ECHO_RATIO = 0.5
#: Fraction of flagged defect pixels above which the mask itself is suspect.
DEFECT_FRACTION = 0.02
#: Fraction of low-correlation frames above which the run is suspect.
LOW_CORR_FRACTION = 0.05


class RegistrationWarning(UserWarning):
    """A registration result may be wrong; the message names the cause and the remedy."""


def template_echo(template: np.ndarray, max_lag: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """Largest secondary peak of the template's (band-passed) autocorrelation within
    ``±2·max_lag``, relative to its central peak, and its lag ``(dy, dx)``.

    A template that is the mean of frames at two positions ``d`` apart contains its
    content twice, and its autocorrelation has a peak at ``±d`` of about half the
    central one (a third for three positions); a single image has none beyond the width
    of its features.  The central lobe is excluded up to where the autocorrelation first
    falls below 0.2 along each axis.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> scene = rng.normal(size=(96, 96))
    >>> single = template_echo(scene, (8, 8))[0]
    >>> double = template_echo(scene + np.roll(scene, 7, axis=1), (8, 8))
    >>> single < 0.2, double[0] > 0.8, double[1]
    (True, True, (0, 7))
    """
    from scipy import ndimage

    t = np.asarray(template, np.float64)
    t = ndimage.gaussian_filter(t, 1.0) - ndimage.gaussian_filter(t, 6.0)
    h, w = t.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    f = np.fft.rfft2((t - t.mean()) * win)
    ac = np.fft.irfft2(np.abs(f) ** 2, s=(h, w))
    if not ac[0, 0] > 0:
        return 0.0, (0, 0)
    ac = np.fft.fftshift(ac / ac[0, 0])
    cy, cx = h // 2, w // 2
    ly, lx = (min(2 * int(m), c - 1) for m, c in zip(max_lag, (cy, cx), strict=True))
    win_ac = ac[cy - ly : cy + ly + 1, cx - lx : cx + lx + 1]
    # central lobe: where the profile along each axis first drops below 0.2
    ry = int(np.argmax(ac[cy:, cx] < 0.2)) or ly
    rx = int(np.argmax(ac[cy, cx:] < 0.2)) or lx
    yy, xx = np.mgrid[-ly : ly + 1, -lx : lx + 1]
    lobe = (yy / max(ry, 1)) ** 2 + (xx / max(rx, 1)) ** 2 <= 1.0
    side = np.where(lobe, -np.inf, win_ac)
    k = int(np.argmax(side))
    iy, ix = np.unravel_index(k, side.shape)
    peak = float(side[iy, ix]) if np.isfinite(side[iy, ix]) else 0.0
    lag = (int(iy) - ly, int(ix) - lx)
    if lag[0] < 0 or (lag[0] == 0 and lag[1] < 0):  # symmetric: report one of the pair
        lag = (-lag[0], -lag[1])
    return max(peak, 0.0), lag


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
    ratio, lag = template_echo(ds[sc.TEMPLATE].values, max_shifts)
    if ratio > ECHO_RATIO:
        out.append(
            f"the template repeats itself {lag[0]} px along y and {lag[1]} px along x (relative height "
            f"{ratio:.2f}): it is likely a double image of frames at two positions, and frames may be "
            "registered to the wrong copy; pass a template from frames at one position (template=) or "
            "increase max_shifts beyond the jump"
        )
    n_px = ds.sizes[sc.DIM_Y] * ds.sizes[sc.DIM_X]
    if cal.n_defects > DEFECT_FRACTION * n_px:
        out.append(
            f"{cal.n_defects} pixels ({100 * cal.n_defects / n_px:.1f} %) were flagged as sensor defects "
            "and left out of the estimate; check defect_mask, or pass defects=False if they are content"
        )
    flag = ds.get("low_correlation")
    if flag is not None and flag.chunks is None and flag.size:
        frac = float(np.mean(flag.values))
        if frac > LOW_CORR_FRACTION:
            out.append(
                f"{100 * frac:.1f} % of the frames correlate unusually badly with the template "
                "(low_correlation): corrupted or blank frames, or a failed registration; inspect them"
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
    ds.attrs["qc_warnings"] = "; ".join(findings)
    for msg in findings:
        warnings.warn(msg, RegistrationWarning, stacklevel=3)
    return ds
