"""An independent simulator of two-photon movies with known motion, for accuracy tests.

This generator deliberately shares nothing with :mod:`xnormcorre.datasets` (which
renders Gaussian elements analytically): here a tissue-like scene is *rasterised* on
an oversampled grid, every frame is resampled from that grid by cubic B-spline
interpolation at the displaced positions, integrated over each pixel, and passed
through a camera model.  An estimator tuned to one renderer is thereby checked on
another.

Pipeline of one frame
---------------------
1. **Scene** (fixed in tissue coordinates, larger than the field of view so that
   content genuinely enters and leaves it): neuropil texture (smoothed noise on two
   scales), somata as filled or annular (nuclear-excluded) soft disks of varied size
   and brightness, dark blood vessels and dark regions, blurred by an optical PSF;
   optionally each soma's brightness follows a calcium trace (``activity``).
2. **Motion**: the scene is sampled at ``r - d(r)`` by ``scipy.ndimage.map_coordinates``
   (``order=3``, cubic B-spline, mirror boundary far outside the field of view), where
   ``d`` is the rigid shift plus an optional smooth non-rigid field.
3. **Pixel integration**: the ``oversample x oversample`` sub-pixels of each pixel are
   averaged.
4. **Camera**: photons ~ Poisson(``photons_per_px`` x normalised intensity), then
   ``ADU = gain * photons + offset + Normal(0, read_noise)``.

Sign convention
---------------
``shifts[t]`` is the displacement of frame ``t``'s content relative to the template
(the scene at zero displacement): ``frame(r) = template(r - shift)``, i.e. content at
position ``p`` of the template appears at ``p + shift``.  This is the convention of
``scipy.ndimage.shift(template, shift)`` and of :func:`xnormcorre.rigid`; the
correction to apply is ``-shift``.  Shifts are ``(y, x)`` in pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .common import derivative, integer, nonnegative, positive
from .motion import MOTIONS, nonrigid_modes, trajectory
from .scene import block_mean, calcium_traces, render_scene
from .sensor import DEFECT_KINDS, add_defects, camera, camera_parameters
from .simulated import SimulatedMovie

__all__ = [
    "DEFECT_KINDS",
    "MOTIONS",
    "SimulatedMovie",
    "add_defects",
    "camera",
    "simulate_movie",
    "trajectory",
]


def simulate_movie(
    shape: tuple[int, int] = (128, 128),
    n_frames: int = 300,
    *,
    photons_per_px: float = 5.0,
    gain: float = 30.0,
    offset: float = 100.0,
    read_noise: float = 10.0,
    motion: str = "walk",
    max_shift: float = 5.0,
    separation: float = 6.0,
    n_positions: int = 4,
    angle: float | None = None,
    shifts: np.ndarray | None = None,
    nonrigid: float = 0.0,
    nonrigid_scale: float | None = None,
    activity: float = 0.0,
    cell_density: float = 1 / 150,
    psf_sigma: float = 0.6,
    oversample: int = 4,
    with_gradient: bool = False,
    seed: int = 0,
) -> SimulatedMovie:
    """Simulate a two-photon movie: oversampled scene, B-spline motion, pixel integration, camera noise.

    See the module docstring for the pipeline and the sign convention
    (``frame(r) = template(r - shift)``).

    Parameters
    ----------
    shape : (int, int)
        Frame size ``(H, W)`` in pixels (each >= 8).
    n_frames : int
        Number of frames (>= 1).
    photons_per_px : float
        Mean detected photons per pixel per frame over the movie (e.g. 1, 5, 20).
    gain : float
        ADU per photon (> 0).
    offset : float
        ADU offset added to every pixel.
    read_noise : float
        Standard deviation of the Gaussian read noise in ADU (>= 0).
    motion : str
        Rigid motion model, see :func:`trajectory`: ``"walk"``, ``"jumps"``,
        ``"two_position"``, ``"alternating"``, ``"three_position"`` or ``"none"``.
    max_shift, separation, n_positions, angle :
        Parameters of the motion model (see :func:`trajectory`).
    shifts : ndarray (n_frames, 2), optional
        Explicit rigid trajectory (y, x) in px; overrides ``motion``.
    nonrigid : float
        Peak amplitude (px) of a smooth non-rigid deformation added to the rigid motion
        (0 = rigid).  The field is a sum of 4 plane waves per axis of wavelength
        ``~nonrigid_scale`` whose amplitudes vary smoothly over time; its mean over the
        field of view is removed each frame (so ``shifts`` stays the mean displacement).
    nonrigid_scale : float, optional
        Wavelength (px) of the deformation (default: the larger frame side).
    activity : float
        Peak dF/F of a single calcium transient of each soma (0 = static scene).
    cell_density : float
        Somata per square pixel (default 1/150).
    psf_sigma : float
        Gaussian optical blur (px, >= 0) of the scene.
    oversample : int
        Sub-pixels per pixel and axis of the rendering grid (>= 1, default 4).
    with_gradient : bool
        Also return the spatial gradient of ``clean`` (for :func:`xnormcorre.testing.crlb.crlb`).
    seed : int
        Seed of the scene, motion and noise (same seed, same bits).

    Returns
    -------
    SimulatedMovie

    Examples
    --------
    >>> sim = simulate_movie((48, 48), 10, photons_per_px=5.0, max_shift=2.0, seed=0)
    >>> sim.frames.shape, sim.frames.dtype, sim.shifts.shape
    ((10, 48, 48), dtype('float32'), (10, 2))
    >>> bool(np.abs(sim.shifts).max() <= 2.0)
    True
    >>> round(float((sim.clean - sim.offset).mean() / sim.gain), 6)
    5.0
    """
    if len(shape) != 2:
        raise ValueError(f"shape must be (H, W), got {shape!r}")
    h, w = (integer(s, "shape", 8) for s in shape)
    n = integer(n_frames, "n_frames", 1)
    photons_per_px = positive(photons_per_px, "photons_per_px")
    gain, offset, read_noise = camera_parameters(gain, offset, read_noise)
    nonrigid = nonnegative(nonrigid, "nonrigid")
    activity = nonnegative(activity, "activity")
    cell_density = nonnegative(cell_density, "cell_density")
    psf_sigma = nonnegative(psf_sigma, "psf_sigma")
    os = integer(oversample, "oversample", 1)
    seed = integer(seed, "seed", 0)
    if shifts is None:
        rigid = trajectory(
            n,
            motion,
            max_shift=max_shift,
            separation=separation,
            n_positions=n_positions,
            angle=angle,
            seed=seed,
        )
    else:
        rigid = np.asarray(shifts, dtype=np.float64)
        if rigid.shape != (n, 2) or not np.all(np.isfinite(rigid)):
            raise ValueError(
                f"shifts must be a finite (n_frames, 2) = ({n}, 2) array, got shape {rigid.shape}"
            )
    reach = float(np.abs(rigid).max(initial=0.0)) + nonrigid
    margin = int(np.ceil(reach)) + 6  # scene margin (px): content enters from outside the FOV
    rng = np.random.default_rng([seed, 0])
    ext = (h + 2 * margin, w + 2 * margin)
    base, cells = render_scene(rng, ext, os, psf_sigma, cell_density)
    act = calcium_traces(rng, n, len(cells), activity) if activity > 0 and cells else None

    modes = coef = None
    if nonrigid > 0:
        scale = float(max(h, w) if nonrigid_scale is None else positive(nonrigid_scale, "nonrigid_scale"))
        modes = nonrigid_modes(rng, (h, w), os, scale)
        coef = ndimage.gaussian_filter1d(rng.standard_normal((n, 2, modes.shape[1])), 4.0, axis=0)
        peak = np.abs(np.einsum("tam,amyx->tayx", coef, modes[:, :, ::os, ::os])).max()
        coef *= nonrigid / peak if peak > 0 else 0.0

    hf, wf = h * os, w * os
    pad = 2 if with_gradient else 0  # fine sub-pixels around the FOV for the 5-point derivative
    qy = (np.arange(-pad, hf + pad) + margin * os).astype(np.float64)
    qx = (np.arange(-pad, wf + pad) + margin * os).astype(np.float64)
    grid = np.stack(np.meshgrid(qy, qx, indexing="ij"))
    inner = (slice(pad, pad + hf), slice(pad, pad + wf))

    def scene_at(a_t) -> np.ndarray:
        s = base.copy()
        if a_t is not None:
            for (sy, sx, foot), a in zip(cells, a_t, strict=True):
                if a:
                    s[sy, sx] += a * foot
        return ndimage.spline_filter(s, order=3, mode="mirror")

    def render(spline, disp_fine) -> np.ndarray:
        """Sample the scene at r - d(r) on the fine FOV grid; disp_fine (2,) or (2, hf, wf) in px."""
        d = np.asarray(disp_fine, dtype=np.float64)
        coords = grid - (d * os if d.ndim == 3 else (d * os)[:, None, None])
        return ndimage.map_coordinates(spline, coords, order=3, mode="mirror", prefilter=False)

    static = scene_at(None) if act is None else None
    clean = np.empty((n, h, w))
    grad = np.empty((n, 2, h, w)) if with_gradient else None
    field = np.empty((n, 2, h, w), np.float32) if modes is not None else None
    for t in range(n):
        spline = static if static is not None else scene_at(act[t])
        if modes is not None:
            nr = np.einsum("am,amyx->ayx", coef[t], modes)
            disp = rigid[t][:, None, None] + nr
            field[t] = block_mean(disp, os)
            if pad:
                disp = np.pad(disp, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        else:
            disp = rigid[t]
        img = render(spline, disp)
        clean[t] = block_mean(img[inner], os)
        if grad is not None:  # 4th-order central differences on the fine grid, per coarse px
            for a in (0, 1):
                d = derivative(img, a)
                grad[t, a] = block_mean(d[inner], os) * os
    mean_act = None if act is None else act.mean(axis=0)
    template = block_mean(render(scene_at(mean_act), np.zeros(2))[inner], os)

    scale = photons_per_px / clean.mean()  # normalise: mean photons per pixel per frame
    photons = clean * scale
    clean_adu = (offset + gain * photons).astype(np.float32)
    template_adu = (offset + gain * scale * template).astype(np.float32)
    gradient = None if grad is None else (gain * scale * grad).astype(np.float32)
    frames = camera(
        photons, gain=gain, offset=offset, read_noise=read_noise, rng=np.random.default_rng([seed, 1])
    )
    return SimulatedMovie(
        frames=frames,
        clean=clean_adu,
        shifts=rigid.copy(),
        template=template_adu,
        gain=gain,
        offset=offset,
        read_noise=read_noise,
        photons_per_px=photons_per_px,
        field=field,
        gradient=gradient,
        activity=act,
        seed=seed,
    )
