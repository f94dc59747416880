"""The settings of a registration pass that frames and volumes share (NumPy; never
imports xarray): the template's edge taper (:func:`edge_taper`, :func:`auto_taper`), the
Gaussian spectral weight (:func:`gaussian_weight`) and the estimator's settings
(:func:`estimator_settings`, :func:`pass_settings`).  Used by
:func:`xnormcorre.engine.config.make_rigid_params` and
:func:`xnormcorre.engine.volume.make_volume_params`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PEAK_FIT_MIN_SIGMA",
    "auto_taper",
    "edge_taper",
    "estimator_settings",
    "gaussian_weight",
    "pass_settings",
]

#: Smallest ``smooth_sigma`` (px) for which the phase-correlation peak is a Gaussian
#: sampled finely enough (its spectrum is at most 6 % at Nyquist) to be located by a
#: Gaussian fit of its integer samples; below it the upsampled DFT refines the peak.
PEAK_FIT_MIN_SIGMA = 0.75


def edge_taper(n: int, width: float) -> np.ndarray:
    """Sigmoid apodization that falls to ~0 over ``width`` pixels at both ends."""
    x = np.arange(n, dtype=np.float64)
    d = np.minimum(x, n - 1 - x)
    return (1.0 / (1.0 + np.exp(-(d - width) / (width / 4.0)))).astype(np.float32)


def auto_taper(n: int, max_shift: int) -> float:
    """Default taper width: ``2·max_shift + 2`` px, at least 4 px, at most ``n / 6``."""
    return float(max(4.0, min(2.0 * max_shift + 2.0, n / 6.0)))


def gaussian_weight(shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Spectral weight ``exp(-2π²σ²|k|²)`` on the ``rfftn`` half-space of an image or
    volume of ``shape`` (a Gaussian low-pass of ``sigma`` samples).

    Examples
    --------
    >>> gaussian_weight((8, 6), 1.0).shape, gaussian_weight((4, 8, 6), 0.0).min()
    ((8, 4), np.float32(1.0))
    """
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij")
    k2 = sum(g**2 for g in grids)
    return np.exp(-2 * np.pi**2 * sigma**2 * k2).astype(np.float32)


def estimator_settings(upsample_factor: int, phase_corr: bool, smooth_sigma: float | None) -> dict:
    """The shift estimator's settings shared by frames and volumes, from the parameters
    of a run: ``upsample_factor``, ``whiten`` (phase correlation), ``peak_fit`` (a
    Gaussian fit of the peak, with phase correlation and ``smooth_sigma >=``
    :data:`PEAK_FIT_MIN_SIGMA`) and ``refine_steps`` (one Gauss-Newton step; none for
    integer shifts, ``upsample_factor=1``).

    Examples
    --------
    >>> estimator_settings(10, True, 1.15)
    {'upsample_factor': 10, 'whiten': True, 'peak_fit': True, 'refine_steps': 1}
    >>> estimator_settings(1, False, 0.0)["refine_steps"]
    0
    """
    if isinstance(upsample_factor, bool) or int(upsample_factor) != upsample_factor or upsample_factor < 1:
        raise ValueError(f"upsample_factor must be an integer >= 1, got {upsample_factor!r}")
    sigma = float(smooth_sigma or 0.0)
    if not sigma >= 0:
        raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma!r}")
    return {
        "upsample_factor": int(upsample_factor),
        "whiten": bool(phase_corr),
        "peak_fit": bool(phase_corr) and sigma >= PEAK_FIT_MIN_SIGMA,
        "refine_steps": 0 if int(upsample_factor) == 1 else 1,
    }


def pass_settings(
    max_shifts, upsample_factor: int, border: str, fill_min: float, phase_corr: bool, smooth_sigma, clip: bool
) -> dict:
    """The settings of a pass that frames and volumes share, from the parameters of a run:
    ``max_shifts`` (integers), ``border``, ``fill_min``, ``clip`` and the estimator's
    (:func:`estimator_settings`, which validates them).

    Examples
    --------
    >>> s = pass_settings((3.0, 4), 1, "copy", 0, True, 1.15, 1)
    >>> s["max_shifts"], s["fill_min"], s["clip"], s["refine_steps"]
    ((3, 4), 0.0, True, 0)
    """
    return {
        "max_shifts": tuple(int(m) for m in max_shifts),
        "border": border,
        "fill_min": float(fill_min),
        "clip": bool(clip),
        **estimator_settings(upsample_factor, phase_corr, smooth_sigma),
    }
