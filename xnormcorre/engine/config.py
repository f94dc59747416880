"""Static parameters of a registration pass: :class:`RigidParams` and :class:`PwParams`.

Built once per run by :func:`make_rigid_params` / :func:`make_pw_params` (apodization
window, spectral weight, patch grid, batch size).  Each knows how to run its pass --
``register``, ``apply``, ``mean_registered``, ``recentre`` -- so template estimation
and the labeled API never dispatch on the kind of registration.  Never imports xarray.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import pwrigid as _pw
from . import rigid as _rigid
from . import warp as _warp
from .noise import UNIFORM, NoiseModel
from .patches import interp_matrix, patch_axis
from .runner import default_batch_size, pw_batch_size
from .settings import (
    PEAK_FIT_MIN_SIGMA,
    auto_taper,
    edge_taper,
    estimator_settings,
    gaussian_weight,
    pass_settings,
)

__all__ = [
    "PEAK_FIT_MIN_SIGMA",
    "Calibration",
    "PwParams",
    "RigidParams",
    "auto_taper",
    "edge_taper",
    "estimator_settings",
    "gaussian_weight",
    "make_pw_params",
    "make_rigid_params",
    "pass_settings",
    "scale_for",
]


@dataclass(frozen=True)
class RigidParams:
    """Static parameters of a rigid registration pass."""

    max_shifts: tuple[int, int]
    upsample_factor: int
    border: str
    batch_size: int
    fill_min: float = 0.0
    window: object = None
    weight: object = None
    whiten: bool = False
    peak_fit: bool = False
    #: Gauss-Newton refinement steps after the correlation peak (0: integer shifts).
    refine_steps: int = 1
    #: Clip each corrected frame to its raw frame's range.
    clip: bool = True
    #: ``(H, W)`` bool mask of sensor defects left out of the estimate, or None.
    defects: object = None
    #: Noise model whose ``1/var`` weights the refinement (:mod:`xnormcorre.engine.noise`).
    noise: NoiseModel = UNIFORM
    #: Power of two multiplying the frames inside the kernels (float32 range).
    scale: float = 1.0

    @property
    def inpaint_defects(self) -> bool:
        """Whether the kernels inpaint sensor defects in the estimate."""
        return self.defects is not None and bool(np.any(self.defects))

    def kernel_kwargs(self) -> dict:
        """The static (compile-time) keyword arguments of the rigid kernels."""
        return {
            "max_shifts": tuple(int(m) for m in self.max_shifts),
            "upsample_factor": int(self.upsample_factor),
            "border": self.border,
            "whiten": self.whiten,
            "peak_fit": self.peak_fit,
            "refine_steps": int(self.refine_steps),
            "inpaint_defects": self.inpaint_defects,
            "clip": bool(self.clip),
        }

    def calibrated(self, calibration: Calibration | None) -> RigidParams:
        """These parameters with a movie's sensor defects, noise model and scale."""
        if calibration is None:
            return self
        return replace(self, defects=calibration.defects, noise=calibration.noise, scale=calibration.scale)

    def arrays(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Apodization window ``(H, W)`` and spectral weight ``(H, W // 2 + 1)`` (ones if unset)."""
        h, w = shape
        window = np.ones((h, w), np.float32) if self.window is None else self.window
        weight = np.ones((h, w // 2 + 1), np.float32) if self.weight is None else self.weight
        return window, weight

    @property
    def rigid(self) -> RigidParams:
        """The rigid parameters (of the initial template): itself."""
        return self

    def register(self, movie, template: np.ndarray, **kw):
        """Register frames to ``template``: :func:`xnormcorre.engine.rigid.register_frames`."""
        return _rigid.register_frames(movie, template, self, **kw)

    def apply(self, movie, shifts: np.ndarray, origin: int | None = None) -> np.ndarray:
        """Move each frame by ``-shifts[t]``: :func:`xnormcorre.engine.rigid.apply_shifts`."""
        return _rigid.apply_shifts(
            movie,
            shifts,
            border=self.border,
            fill_min=self.fill_min,
            batch_size=self.batch_size,
            clip=self.clip,
            scale=self.scale,
            origin=origin,
        )

    def mean_registered(self, movie, template: np.ndarray, start: int, stop: int, keep=None):
        """``(mean, shifts, None)`` of frames ``start:stop`` registered to ``template``."""
        return (*_rigid.mean_registered(movie, template, self, start, stop, keep), None)

    def recentre(self, template: np.ndarray, deviations: list) -> np.ndarray:
        """Rigid templates have no local geometry to recentre: ``template`` unchanged."""
        return template


def make_rigid_params(
    shape: tuple[int, int],
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int = 10,
    border: str = "copy",
    batch_size: int | None = None,
    n_frames: int | None = None,
    fill_min: float = 0.0,
    phase_corr: bool = True,
    smooth_sigma: float = 1.15,
    taper: float | None = None,
    clip: bool = True,
) -> RigidParams:
    """Build the static parameters (apodization window, spectral weight) of a pass.

    The estimate correlates each raw frame with the mean-subtracted template multiplied
    by an edge taper (so that the frame border does not pull the peak towards zero
    shift), optionally whitened (phase correlation) and smoothed by a Gaussian of
    ``smooth_sigma`` px.  The shift is then applied to the raw frame (same spectrum).
    """
    h, w = shape
    ty = auto_taper(h, max_shifts[0]) if taper is None else float(taper)
    tx = auto_taper(w, max_shifts[1]) if taper is None else float(taper)
    window = None
    if ty > 0 and tx > 0:
        window = edge_taper(h, ty)[:, None] * edge_taper(w, tx)[None, :]
    weight = gaussian_weight(shape, smooth_sigma) if smooth_sigma and smooth_sigma > 0 else None
    return RigidParams(
        batch_size=batch_size or default_batch_size(shape, n_frames),
        window=window,
        weight=weight,
        **pass_settings(max_shifts, upsample_factor, border, fill_min, phase_corr, smooth_sigma, clip),
    )


@dataclass(frozen=True)
class Calibration:
    """What a movie tells about itself before registration: sensor defects, the noise
    model of its pixels, and the power of two that brings it near unit magnitude."""

    defects: np.ndarray | None
    noise: NoiseModel
    scale: float

    @property
    def n_defects(self) -> int:
        return 0 if self.defects is None else int(np.count_nonzero(self.defects))


def scale_for(values: np.ndarray) -> float:
    """A power of two ``2**-k`` that brings the magnitude of ``values`` near 1.

    Multiplying by a power of two is exact in floating point, so a movie scaled by any
    power of two registers to the same bits, and movies of any finite magnitude stay
    within float32 range in the spectra.

    Examples
    --------
    >>> scale_for(np.array([1000.0, 3000.0])), scale_for(np.array([0.0]))
    (0.00048828125, 1.0)
    """
    v = np.asarray(values)
    if v.dtype == np.float32 and v.size:
        # Fast path: the 99th percentile interpolates between two order statistics;
        # when both lie in one octave, so does the percentile, and its power of two is
        # theirs (one partial sort in float32 instead of a full sort in float64).
        finite = np.isfinite(v)
        a = np.abs(v.ravel() if finite.all() else v[finite])
        if a.size:
            i = int(np.floor(0.99 * (a.size - 1)))
            j = min(i + 1, a.size - 1)
            part = np.partition(a, [i, j])
            lo, hi = float(part[i]), float(part[j])
            if lo > 0 and np.isfinite(hi) and np.floor(np.log2(lo)) == np.floor(np.log2(hi)):
                return float(2.0 ** -np.floor(np.log2(lo)))
    v = np.abs(np.asarray(v, np.float64))
    v = v[np.isfinite(v)]
    mag = float(np.percentile(v, 99)) if v.size else 0.0
    if not mag > 0 or not np.isfinite(mag):
        return 1.0
    return float(2.0 ** -np.floor(np.log2(mag)))


@dataclass(frozen=True)
class PwParams:
    """Static parameters of a piecewise-rigid pass (wraps the rigid ones)."""

    rigid: RigidParams
    max_dev: tuple[int, int]
    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]
    size: tuple[int, int]
    batch_size: int
    pwindow: object
    pweight: object
    wy: object
    wx: object
    #: Gauss-Newton steps refining each patch's correlation peak against the template
    #: patch (:func:`xnormcorre.engine.pwrigid.patch_constants`); 0 (default): none.
    patch_refine_steps: int = 0

    @property
    def border(self) -> str:
        return self.rigid.border

    def calibrated(self, calibration: Calibration | None) -> PwParams:
        """These parameters with a movie's calibration (see :meth:`RigidParams.calibrated`)."""
        return self if calibration is None else replace(self, rigid=self.rigid.calibrated(calibration))

    @property
    def fill_min(self) -> float:
        return self.rigid.fill_min

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Number of patches ``(Ny, Nx)``."""
        return len(self.starts_y), len(self.starts_x)

    def kernel_kwargs(self) -> dict:
        """The static (compile-time) keyword arguments of the piecewise-rigid kernel."""
        kw = self.rigid.kernel_kwargs()
        return {
            "pad": kw["max_shifts"],
            "max_dev": self.max_dev,
            "starts_y": self.starts_y,
            "starts_x": self.starts_x,
            "size": self.size,
            "upsample_factor": kw["upsample_factor"],
            "border": kw["border"],
            "whiten": kw["whiten"],
            "peak_fit": kw["peak_fit"],
            "inpaint_defects": kw["inpaint_defects"],
            "clip": kw["clip"],
            "refine_steps": self.patch_refine_steps,
        }

    def register(self, movie, template: np.ndarray, **kw):
        """Register frames to ``template``: :func:`xnormcorre.engine.pwrigid.register_pw_frames`."""
        return _pw.register_pw_frames(movie, template, self, **kw)

    def apply(self, movie, patch_shifts: np.ndarray, origin: int | None = None) -> np.ndarray:
        """Warp each frame by its patch shifts: :func:`xnormcorre.engine.warp.apply_pw_shifts`."""
        return _warp.apply_pw_shifts(
            movie,
            patch_shifts,
            self.wy,
            self.wx,
            border=self.border,
            fill_min=self.fill_min,
            batch_size=self.batch_size,
            clip=self.rigid.clip,
            origin=origin,
        )

    def mean_registered(self, movie, template: np.ndarray, start: int, stop: int, keep=None):
        """``(mean, rigid shifts, patch deviations)`` of frames ``start:stop``; the rigid
        step without its Gauss-Newton steps (it only places the patches; see
        :func:`xnormcorre.engine.pwrigid.mean_registered`)."""
        return _pw.mean_registered(movie, template, self, start, stop, refine=False)

    def recentre(self, template: np.ndarray, deviations: list) -> np.ndarray:
        """Deform the template to the frames' mean local geometry (``deviations``: the
        per-split patch deviations of :meth:`mean_registered`); see
        :func:`xnormcorre.engine.warp.centre_patches`."""
        return _warp.centre_patches(template, np.concatenate(deviations), self)


def make_pw_params(
    shape: tuple[int, int],
    *,
    strides: tuple[int, int],
    overlaps: tuple[int, int],
    max_deviation_rigid: tuple[int, int],
    batch_size: int | None = None,
    n_frames: int | None = None,
    refine_patches: bool = False,
    **rigid_kw,
) -> PwParams:
    """Build the static parameters of a piecewise-rigid pass (patch grid, windows).

    ``refine_patches``: refine each patch's peak by the rigid estimate's Gauss-Newton
    steps (as many as the rigid step takes: none with ``upsample_factor=1``).
    """
    h, w = shape
    ay = patch_axis(h, strides[0], overlaps[0])
    ax = patch_axis(w, strides[1], overlaps[1])
    size = (ay.size, ax.size)
    bs = batch_size or pw_batch_size(shape, n_frames)
    rigid = make_rigid_params(shape, batch_size=bs, n_frames=n_frames, **rigid_kw)
    md = (int(max_deviation_rigid[0]), int(max_deviation_rigid[1]))
    # patches are cut at the rigidly displaced position: the residual displacement is
    # at most max_dev + 0.5 px, which sets the patch taper
    reach = (md[0] + 1, md[1] + 1)
    patch_rigid = make_rigid_params(
        size,
        max_shifts=reach,
        batch_size=bs,
        phase_corr=rigid.whiten,
        smooth_sigma=rigid_kw.get("smooth_sigma", 1.15),
        taper=rigid_kw.get("taper"),
    )
    pwindow, pweight = patch_rigid.arrays(size)
    return PwParams(
        rigid=rigid,
        max_dev=md,
        starts_y=tuple(int(s) for s in ay.starts),
        starts_x=tuple(int(s) for s in ax.starts),
        size=size,
        batch_size=bs,
        pwindow=pwindow,
        pweight=pweight,
        wy=interp_matrix(h, ay.centres),
        wx=interp_matrix(w, ax.centres),
        patch_refine_steps=rigid.refine_steps if refine_patches else 0,
    )


#: The parameters of either kind of pass.
Params = RigidParams | PwParams
