"""Rigid registration of volumes ``(z, y, x)`` (JAX kernels and NumPy drivers; never
imports xarray).

The steps are the n-dimensional forms of the 2-D ones: the cross-power spectrum
(:func:`xnormcorre.engine.estimate.cross_power`), the peak within ``±max_shifts`` and its
subpixel refinement (:func:`xnormcorre.engine.estimate.estimate_shift_nd`), a
Gauss-Newton step against the template
(:func:`xnormcorre.engine.volume_estimate.gauss_newton_nd`; these steps of the estimate,
shared with 3-D patches, are in :mod:`xnormcorre.engine.volume_estimate`), the Fourier-shift
warp (:func:`xnormcorre.engine.fourier.fourier_shift_nd`) and the border fill
(:func:`xnormcorre.engine.borders.apply_border_nd`), with the same sign convention: a
shift is the displacement of a volume's content relative to the template; the corrected
volume is the volume moved by ``-shift``.

A z axis is often short (4-30 planes) and sampled more coarsely than y/x.  The template's
edge taper is sized to each axis; an axis shorter than 16 planes, which a taper would
mostly erase, is edge-padded instead
(:func:`xnormcorre.engine.volume_estimate.pad_width`) and tapered over the padding
only, so that the periodic Fourier steps never wrap one end of the stack onto the other;
the Gauss-Newton margin is sized per axis too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import compile_cache
from .borders import apply_border_nd, border_limits_nd, fill_invalid, valid_nd
from .fourier import fourier_shift_nd
from .runner import default_batch_size, run_kernels
from .settings import auto_taper, edge_taper, gaussian_weight, pass_settings
from .volume_estimate import (
    MIN_TAPERED,
    corr_nd,
    estimate_padded,
    gauss_newton_nd,
    pad_volume,
    pad_width,
    template_gradients,
    template_spectrum,
)

compile_cache.enable()

__all__ = [
    "MIN_TAPERED",
    "VolumeParams",
    "apply_volume_shifts",
    "centre_volume",
    "corr_nd",
    "estimate_padded",
    "estimate_volume_template",
    "gauss_newton_nd",
    "make_volume_params",
    "pad_volume",
    "pad_width",
    "register_volumes",
    "template_gradients",
    "template_spectrum",
    "valid_mean_of",
]


def _taper_width(n: int, max_shift: int) -> float:
    """Edge taper (px) of one axis: that of a frame's axis
    (:func:`xnormcorre.engine.settings.auto_taper`), none on an axis shorter than
    :data:`MIN_TAPERED`."""
    return 0.0 if n < MIN_TAPERED else auto_taper(n, max_shift)


def _crop(x, pads: tuple[int, ...], shape: tuple[int, ...]):
    if not any(pads):
        return x
    return x[tuple(slice(p, p + n) for p, n in zip(pads, shape, strict=True))]


@dataclass(frozen=True)
class VolumeParams:
    """Static parameters of a rigid volume registration."""

    max_shifts: tuple[int, ...]
    upsample_factor: int
    border: str
    batch_size: int
    fill_min: float = 0.0
    whiten: bool = True
    peak_fit: bool = True
    refine_steps: int = 1
    clip: bool = True
    window: np.ndarray = field(default=None, repr=False)
    weight: np.ndarray = field(default=None, repr=False)
    #: samples of edge padding on each side of each axis (short axes, see :func:`pad_width`)
    pads: tuple[int, ...] = ()

    def kernel_kwargs(self) -> dict:
        """The estimate's static settings (``kw`` of :func:`estimate_padded`)."""
        return dict(
            pads=self.pads,
            max_shifts=self.max_shifts,
            upsample_factor=self.upsample_factor,
            whiten=self.whiten,
            peak_fit=self.peak_fit,
            refine_steps=self.refine_steps if self.upsample_factor > 1 else 0,
        )

    def static_kw(self) -> tuple:
        """:meth:`kernel_kwargs` as a hashable (compile-time) argument of the kernels."""
        return tuple(sorted(self.kernel_kwargs().items()))

    def register_batch(self, vols, template: np.ndarray, grads: np.ndarray, *, apply: bool = True):
        """:func:`register_volume_batch` of ``vols`` with these parameters (``template``
        float32, ``grads``: :func:`template_gradients` of it with these ``pads``)."""
        return register_volume_batch(
            vols,
            template,
            self.window,
            self.weight,
            grads,
            np.float32(self.fill_min),
            kw=self.static_kw(),
            border=self.border,
            clip=self.clip,
            apply=apply,
        )


def make_volume_params(
    shape: tuple[int, ...],
    *,
    max_shifts: tuple[int, ...],
    upsample_factor: int = 10,
    border: str = "copy",
    batch_size: int | None = None,
    n_frames: int | None = None,
    fill_min: float = 0.0,
    phase_corr: bool = True,
    smooth_sigma: float = 1.15,
    taper: float | None = None,
    clip: bool = True,
) -> VolumeParams:
    """Parameters of a volume registration, from the same parameter list as a frame's
    (:func:`xnormcorre.engine.config.make_rigid_params`) and with the same estimator
    settings (:func:`xnormcorre.engine.settings.pass_settings`, which validates
    them): the padding of short axes (:func:`pad_width`), the template's edge taper
    (per axis, see :func:`_taper_width`; ``taper`` overrides it on the axes that are not
    padded) and the Gaussian spectral weight of ``smooth_sigma`` voxels
    (:func:`xnormcorre.engine.settings.gaussian_weight`), on the padded shape."""
    pads = tuple(pad_width(n) for n in shape)
    padded = tuple(n + 2 * p for n, p in zip(shape, pads, strict=True))
    window = np.ones(padded, np.float32)
    for ax, (n, m, p) in enumerate(zip(shape, max_shifts, pads, strict=True)):
        if p:  # a padded short axis: tapered over the padding only
            taper_ax = edge_taper(n + 2 * p, p / 2.0)
        else:
            t = _taper_width(n, m) if taper is None else float(taper)
            taper_ax = edge_taper(n, t) if t > 0 else np.ones(n, np.float32)
        window = window * taper_ax.reshape((-1,) + (1,) * (len(shape) - 1 - ax))
    settings = pass_settings(max_shifts, upsample_factor, border, fill_min, phase_corr, smooth_sigma, clip)
    weight = gaussian_weight(padded, float(smooth_sigma or 0.0))
    bs = batch_size or max(1, default_batch_size(shape[1:], n_frames) // shape[0])
    return VolumeParams(batch_size=int(bs), window=window, weight=weight, pads=pads, **settings)


# ----------------------------------------------------------------------- kernels
def _register_one(vol, tmpl_spec, template, tmpl_p, grads, weight, fill_min, *, kw, border, clip, apply):
    shape = vol.shape
    pads = kw["pads"]
    spec = jnp.fft.rfftn(pad_volume(vol, pads))
    shift = estimate_padded(spec, tmpl_spec, tmpl_p, grads, weight, shape, kw=kw)
    if not apply:
        return shift
    out = _move(vol, spec, shift, fill_min, pads=pads, border=border, clip=clip)
    lo, hi = border_limits_nd(shift, shape)
    valid = valid_nd(lo, hi, shape)
    return shift, out, corr_nd(out, template, valid)


def _move(vol, spec, shift, fill_min, *, pads, border, clip):
    """``vol`` (whose padded ``rfftn`` is ``spec``) moved by ``-shift``, cropped, clipped
    to its range, border filled."""
    shape_p = tuple(n + 2 * p for n, p in zip(vol.shape, pads, strict=True))
    out = _crop(fourier_shift_nd(spec, tuple(shift), shape_p), pads, vol.shape)
    if clip:
        out = jnp.clip(out, jnp.min(vol), jnp.max(vol))
    return apply_border_nd(out, shift, border, fill_min)[0]


@compile_cache.kernel_jit(static_argnames=("kw", "border", "clip", "apply"))
def register_volume_batch(
    vols, template, window, weight, grads, fill_min, *, kw, border="copy", clip=True, apply=True
):
    """Register a batch of volumes ``(B, D, H, W)`` to ``template`` ``(D, H, W)``:
    ``shifts (B, 3)`` and, if ``apply``, the corrected volumes and their correlation.
    ``kw``: the estimate's settings (:meth:`VolumeParams.static_kw`); ``window``,
    ``weight`` and ``grads`` are on the padded shape (``kw``'s ``pads``)."""
    kw = dict(kw)
    tmpl_p, tmpl_spec = template_spectrum(template, kw["pads"], window)
    fn = partial(_register_one, kw=kw, border=border, clip=clip, apply=apply)
    return jax.vmap(fn, in_axes=(0, None, None, None, None, None, None))(
        vols, tmpl_spec, template, tmpl_p, grads, weight, fill_min
    )


@compile_cache.kernel_jit(static_argnames=("border", "clip"))
def shift_volume_batch(vols, shifts, fill_min, *, border="copy", clip=True):
    """Move each volume ``(B, D, H, W)`` by ``-shifts[b]``, as :func:`register_volume_batch`
    does (short axes padded the same way: the same bits for the same shift)."""
    pads = tuple(pad_width(n) for n in vols.shape[1:])

    def one(v, s):
        return _move(v, jnp.fft.rfftn(pad_volume(v, pads)), s, fill_min, pads=pads, border=border, clip=clip)

    return jax.vmap(one)(vols, shifts)


# ----------------------------------------------------------------------- NumPy drivers
def register_volumes(movie, template: np.ndarray, params: VolumeParams, *, apply: bool = True, origin=None):
    """Register every volume of ``movie`` (indexable ``(T, D, H, W)``) to ``template``:
    ``(shifts (T, 3), corrected (T, D, H, W) or None, corr (T,) or None)``.  ``origin``:
    the number of ``movie[0]`` in the whole movie (same kernel lane whatever the chunking)."""
    n = len(movie)
    tmpl = np.asarray(template, np.float32)
    grads = template_gradients(tmpl, params.pads)
    shifts = np.empty((n, len(tmpl.shape)), np.float32)
    corrected = np.empty((n, *tmpl.shape), np.float32) if apply else None
    corr = np.empty((n,), np.float32) if apply else None

    def kernel(_, batch):
        return params.register_batch(batch, tmpl, grads, apply=apply)

    for a, b, out in run_kernels(kernel, movie, 0, n, params.batch_size, origin=origin):
        k = b - a
        if not apply:
            shifts[a:b] = out[0][:k]
            continue
        shifts[a:b], corrected[a:b], corr[a:b] = out[0][:k], out[1][:k], out[2][:k]
    return shifts, corrected, corr


def apply_volume_shifts(
    movie,
    shifts: np.ndarray,
    *,
    border: str = "copy",
    fill_min: float = 0.0,
    batch_size: int = 1,
    clip=True,
    origin=None,
) -> np.ndarray:
    """Move each volume of ``movie`` by ``-shifts[t]`` (as the registration does)."""
    n = len(movie)
    out = np.empty((n, *movie.shape[1:]), np.float32)
    sh = np.asarray(shifts, np.float32)

    def kernel(_, batch, s):
        return shift_volume_batch(batch, s, np.float32(fill_min), border=border, clip=clip)

    for a, b, (res,) in run_kernels(kernel, movie, 0, n, batch_size, sh, origin=origin):
        out[a:b] = res[: b - a]
    return out


def valid_mean_of(movie, index: np.ndarray, batch_size: int, register) -> tuple[np.ndarray, list]:
    """Mean of the volumes ``movie[index]`` as ``register(volumes) -> (out, extra)`` moves
    them (with ``border="nan"``), each voxel over the volumes in which it stayed in view
    (others: nearest averaged value), read one batch at a time (memory O(batch)), summed
    in float64 in volume order; and the list of the batches' ``extra`` outputs."""
    acc = None
    cnt = None
    extra = []
    for a in range(0, len(index), batch_size):
        vols = np.asarray(movie[index[a : a + batch_size]], np.float32)
        out, more = register(vols)
        if acc is None:
            acc = np.zeros(out.shape[1:], np.float64)
            cnt = np.zeros(out.shape[1:], np.int64)
        acc += np.nansum(out, axis=0, dtype=np.float64)
        cnt += np.isfinite(out).sum(axis=0)
        extra.append(more)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)
    return fill_invalid(mean).astype(np.float32), extra


def _valid_mean(movie, template, params: VolumeParams, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of volumes ``movie[index]`` registered to ``template`` (:func:`valid_mean_of`);
    and their shifts."""
    p = VolumeParams(**{**params.__dict__, "border": "nan", "clip": False})

    def register(vols):
        sh, out, _ = register_volumes(vols, template, p)
        return out, sh

    mean, shifts = valid_mean_of(movie, index, p.batch_size, register)
    return mean, np.concatenate(shifts)


def centre_volume(template: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Move a volume ``template`` to the centre of the range of positions of the volumes
    registered to it (midpoint of their 5th and 95th shift percentiles per axis), as the
    2-D template is centred (:func:`xnormcorre.engine.template.centre`): the
    ``±max_shifts`` window is then centred on the motion rather than on wherever the
    initial volumes happened to be.  A float64 Fourier shift of the edge-padded template
    (no wrap-around of one end onto the other), cropped back.

    Examples
    --------
    >>> t = np.zeros((8, 16, 16), np.float32); t[4, 8, 8] = 1.0
    >>> sh = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # volumes at y = 0 and y = +2
    >>> np.argwhere(centre_volume(t, sh).round(6) == 1).tolist()  # moved by +1 along y
    [[4, 9, 8]]
    """
    lo, hi = np.percentile(np.asarray(shifts, np.float64), [5, 95], axis=0)
    med = (lo + hi) / 2
    if not np.any(np.abs(med) > 1e-6):
        return np.asarray(template, np.float32)
    pads = [int(np.ceil(abs(m))) + 2 for m in med]
    padded = np.pad(np.asarray(template, np.float64), [(p, p) for p in pads], mode="edge")
    shape = padded.shape
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij")
    ramp = np.exp(-2j * np.pi * sum(k * m for k, m in zip(grids, med, strict=True)))
    moved = np.fft.irfftn(np.fft.rfftn(padded) * ramp, s=shape, axes=tuple(range(len(shape))))
    # content moves by +med: the volumes' shifts relative to the result are shifts - med
    crop = tuple(slice(p, p + n) for p, n in zip(pads, np.shape(template), strict=True))
    return moved[crop].astype(np.float32)


def _median(sample: np.ndarray) -> np.ndarray:
    """Per-voxel median over the first axis of ``(N, D, ...)``, one plane at a time (a copy
    of one plane of the sample, not of the whole sample); equal to ``np.median(axis=0)``."""
    out = np.empty(sample.shape[1:], np.float32)
    for z in range(sample.shape[1]):
        out[z] = np.median(sample[:, z].astype(np.float32), axis=0)
    return out


def estimate_volume_template(
    movie, params: VolumeParams, *, niter: int = 1, max_frames: int | None = 2000, n_init: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Template of a volumetric movie (NoRMCorre's scheme in 3-D): the median of up to
    ``n_init`` evenly spaced volumes, registered to it and averaged; then ``niter`` times
    the mean of up to ``max_frames`` evenly spaced volumes registered to the template;
    after each step the template is moved to the centre of the volumes' range of
    positions (:func:`centre_volume`).  Deterministic.  The ``n_init`` volumes are read once; the passes read ``movie`` one
    batch at a time.  Returns ``(template, shifts of the last pass)``."""
    n = len(movie)
    init = np.unique(np.linspace(0, n - 1, min(n, n_init)).round().astype(int))
    sample = np.asarray(movie[init])  # read once for the median and its pass, kept in its dtype
    if sample.dtype.itemsize > 4:
        sample = sample.astype(np.float32)
    first = _median(sample)
    tmpl, shifts = _valid_mean(sample, first, params, np.arange(len(init)))
    tmpl = centre_volume(tmpl, shifts)
    del sample
    m = n if max_frames is None else min(n, max_frames)
    sample = np.unique(np.linspace(0, n - 1, m).round().astype(int))
    for _ in range(niter):
        tmpl, shifts = _valid_mean(movie, tmpl, params, sample)
        tmpl = centre_volume(tmpl, shifts)
    return tmpl, shifts
