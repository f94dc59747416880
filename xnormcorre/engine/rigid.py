"""Rigid subpixel registration kernels (JAX; unlabeled, never imports xarray).

Sign convention
---------------
A *shift* ``s = (s_y, s_x)`` is the displacement of a frame's content relative to the
template: ``frame(r) ≈ template(r - s)``.  The corrected frame is the frame moved by
``-s``: ``corrected(r) = frame(r + s)``.  (NoRMCorre and CaImAn report the applied
correction, i.e. ``-s``.)

Algorithm
---------
Guizar-Sicairos, Thurman & Fienup (2008), as in NoRMCorre's ``dftregistration``:

1. cross-power spectrum ``P = F_frame · conj(F_template)`` on the real FFT half-plane;
2. coarse peak: argmax of ``irfft2(P)`` restricted to ``[-max_shift, +max_shift]``
   (both ends included) on each axis;
3. refinement to ``1/upsample_factor`` px with a matrix-multiply DFT evaluated only on a
   ``ceil(1.5 · upsample_factor)``² neighbourhood of the coarse peak.  The half-plane is
   used with Hermitian weights, so the refinement costs half of the full-plane DFT.
   A 3-point parabolic fit around the best grid point then removes most of the
   ``1/upsample_factor`` quantization error (skipped for ``upsample_factor == 1``,
   which gives integer shifts);
4. application by a Fourier phase ramp (exact for band-limited rigid shifts), fused with
   the registration (the frame's spectrum is computed once), followed by border handling
   so that nothing wraps around.

All functions take float32 arrays, are ``jit``-compiled per input shape and return JAX
arrays; :mod:`xnormcorre.engine.api` converts to NumPy at the engine boundary.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

BORDERS = ("copy", "nan", "zero", "min")


def _freqs(h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Signed integer frequencies along y (full) and x (half-plane)."""
    ky = jnp.fft.fftfreq(h, d=1.0 / h).astype(jnp.float32)
    kx = jnp.arange(w // 2 + 1, dtype=jnp.float32)
    return ky, kx


def _hermitian_weights(w: int) -> jax.Array:
    """Weights that turn a half-plane sum into the full-plane (real) sum."""
    wts = jnp.full((w // 2 + 1,), 2.0, dtype=jnp.float32)
    wts = wts.at[0].set(1.0)
    if w % 2 == 0:
        wts = wts.at[-1].set(1.0)
    return wts


def phase_ramp(dy: jax.Array, dx: jax.Array, shape: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """Separable phase ramp ``exp(2πi·ky·dy/h)``, ``exp(2πi·kx·dx/w)`` on the rfft2 half-plane.

    Multiplying a spectrum by ``ramp_y[:, None] * ramp_x[None, :]`` moves its image by
    ``-(dy, dx)``.  The two vectors are materialized (optimization barrier): otherwise
    XLA fuses the exponentials into the full-plane product and evaluates them once per
    frequency.
    """
    h, w = shape
    ky, kx = _freqs(h, w)
    ramp_y = jnp.exp((2j * jnp.pi / h) * (ky * dy))
    ramp_x = jnp.exp((2j * jnp.pi / w) * (kx * dx))
    return jax.lax.optimization_barrier((ramp_y, ramp_x))


def _dft_at(
    p: jax.Array,
    ry: jax.Array,
    rx: jax.Array,
    h: int,
    w: int,
    origin: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Real inverse DFT of a half-plane spectrum ``p`` at positions ``origin + ry`` x ``origin + rx``.

    ``p`` is ``(h, w // 2 + 1)`` (rfft2 layout of a real ``(h, w)`` image whose
    spectrum is Hermitian); ``ry``/``rx`` are 1-D offsets (px) that do not depend on the
    data, so their DFT matrices are compile-time constants; ``origin = (y0, x0)`` (traced,
    default 0) moves the grid, applied as one phase vector per axis.  Returns the
    ``(len(ry), len(rx))`` samples of ``h·w·irfft2(p)``, by two matrix products:
    ``O(len(ry)·h·w)`` instead of a full inverse FFT.
    """
    ky, kx = _freqs(h, w)
    ey = jnp.exp((2j * jnp.pi / h) * (ry[:, None] * ky[None, :]))  # (ny, h), constant
    ex = jnp.exp((2j * jnp.pi / w) * (kx[:, None] * rx[None, :]))  # (wh, nx), constant
    ex = ex * _hermitian_weights(w)[:, None]
    if origin is not None:
        ey = ey * jnp.exp((2j * jnp.pi / h) * (origin[0] * ky))[None, :]
        ex = ex * jnp.exp((2j * jnp.pi / w) * (origin[1] * kx))[:, None]
    ny, nx, wh = ry.shape[0], rx.shape[0], kx.shape[0]
    if ny * h * wh + ny * wh * nx <= h * wh * nx + ny * h * nx:
        return jnp.real((ey @ p) @ ex)
    return jnp.real(ey @ (p @ ex))


def _window(
    p: jax.Array,
    shape: tuple[int, int],
    radius: tuple[int, int],
    centre: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Correlation surface at the integer lags ``centre ± radius`` (ends included).

    The surface is evaluated only on that window, from the cross-power spectrum ``p``
    (half-plane), by a matrix DFT -- cheaper than a full inverse FFT whenever the window
    is small compared with the frame.  Returns ``(2·radius_y + 1, 2·radius_x + 1)``.
    """
    h, w = shape
    my, mx = radius
    gy = np.arange(-my, my + 1, dtype=np.float32)
    gx = np.arange(-mx, mx + 1, dtype=np.float32)
    origin = None if centre is None else (jnp.float32(centre[0]), jnp.float32(centre[1]))
    return _dft_at(p, jnp.asarray(gy), jnp.asarray(gx), h, w, origin)


def _argmax_centred(win: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Row and column of the maximum of ``win``; ties (e.g. a featureless frame)
    resolve to the window centre, not its corner."""
    ny, nx = win.shape
    k = jnp.argmax(win)
    k0 = (ny // 2) * nx + nx // 2
    k = jnp.where(win.ravel()[k0] >= win.ravel()[k], k0, k)
    return k // nx, k % nx


def _coarse_peak(
    p: jax.Array,
    shape: tuple[int, int],
    radius: tuple[int, int],
    centre: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Integer argmax of the correlation surface within ``centre ± radius`` (ends included)."""
    my, mx = radius
    cy, cx = (0, 0) if centre is None else centre
    iy, ix = _argmax_centred(_window(p, shape, radius, centre))
    return (iy - my + cy).astype(jnp.float32), (ix - mx + cx).astype(jnp.float32)


def _gauss_peak(
    p: jax.Array,
    shape: tuple[int, int],
    radius: tuple[int, int],
    centre: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Subpixel peak of a Gaussian-smoothed phase-correlation surface.

    With whitening and the Gaussian spectral weight ``exp(-2π²σ²|k|²)`` the surface of
    a translated image is a sampled Gaussian of width ``σ`` centred on the shift; its
    logarithm is a parabola, so a 3-point parabolic fit of ``log`` of the integer
    samples on each axis recovers the centre of a periodic translation exactly.  Real
    frames (content entering and leaving, the apodized template, noise) make the
    surface slightly non-Gaussian (errors up to ~0.1 px on small frames), which
    :func:`estimate_shift` removes with a small upsampled-DFT grid around this
    estimate.  The window is evaluated one lag wider than ``radius`` so that a peak on
    the search bound still has both neighbours; where a neighbour is not positive
    (noise) the fit falls back to a plain parabola.
    """
    my, mx = radius
    cy, cx = (0, 0) if centre is None else centre
    win = _window(p, shape, (my + 1, mx + 1), centre)
    iy, ix = _argmax_centred(win[1:-1, 1:-1])
    iy, ix = iy + 1, ix + 1
    oy = _log_parabolic(win[iy - 1, ix], win[iy, ix], win[iy + 1, ix])
    ox = _log_parabolic(win[iy, ix - 1], win[iy, ix], win[iy, ix + 1])
    dy = (iy - (my + 1) + cy).astype(jnp.float32) + oy
    dx = (ix - (mx + 1) + cx).astype(jnp.float32) + ox
    return dy, dx


def _fit_region(upsample_factor: int) -> int:
    """Refinement grid (points per axis) around a Gaussian-fit estimate: ±0.25 px (at
    least ±1 step), never more than the ±0.75 px grid around an integer peak."""
    return min(2 * math.ceil(0.25 * upsample_factor) + 1, math.ceil(1.5 * upsample_factor))


def _log_parabolic(left: jax.Array, centre: jax.Array, right: jax.Array) -> jax.Array:
    """Vertex offset (within ±0.5) of the Gaussian through three samples; a plain
    parabola where a sample is not positive."""
    ok = (left > 0) & (centre > 0) & (right > 0)
    safe = [jnp.log(jnp.where(ok, v, 1.0)) for v in (left, centre, right)]
    return jnp.where(ok, _parabolic(*safe), _parabolic(left, centre, right))


def cross_power(est_spec: jax.Array, tmpl_spec: jax.Array, weight: jax.Array, whiten: bool) -> jax.Array:
    """Cross-power spectrum ``est · conj(tmpl)``, optionally whitened, times ``weight``."""
    p = est_spec * jnp.conj(tmpl_spec)
    if whiten:
        mag = jnp.sqrt(jnp.real(p) ** 2 + jnp.imag(p) ** 2)
        return p * (weight / (mag + 1e-12))
    return p * weight


def estimate_shift(
    est_spec: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    shape: tuple[int, int],
    *,
    radius: tuple[int, int],
    upsample_factor: int,
    whiten: bool,
    peak_fit: bool = False,
    centre: tuple[jax.Array, jax.Array] | None = None,
    bounds: tuple[jax.Array, jax.Array, jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Displacement of an image (``est_spec``) relative to a template (``tmpl_spec``).

    The peak is searched at integer positions within ``centre ± radius`` and, unless
    ``upsample_factor == 1`` (integer shifts), refined on the ``1/upsample_factor``
    grid of an upsampled DFT plus a parabolic fit: around the integer peak (±0.75 px),
    or, if ``peak_fit`` (whitened, Gaussian-smoothed cross-power), around the Gaussian
    fit of :func:`_gauss_peak`, which is close enough that a ±0.25 px grid suffices
    (half the cost or less).  The result is clipped to ``bounds = (lo_y, hi_y, lo_x, hi_x)``
    (default ``±radius`` around ``centre``).
    """
    h, w = shape
    p = cross_power(est_spec, tmpl_spec, weight, whiten)
    cy, cx = (jnp.int32(0), jnp.int32(0)) if centre is None else centre
    ctr = None if centre is None else (cy, cx)
    if upsample_factor > 1 and peak_fit:
        dy, dx = _gauss_peak(p, (h, w), radius, ctr)
        dy, dx = _refine(p, dy, dx, upsample_factor, h, w, region=_fit_region(upsample_factor))
    else:
        dy, dx = _coarse_peak(p, (h, w), radius, ctr)
        if upsample_factor > 1:
            dy, dx = _refine(p, dy, dx, upsample_factor, h, w)
    if bounds is None:
        bounds = (cy - radius[0], cy + radius[0], cx - radius[1], cx + radius[1])
    dy = jnp.clip(dy, bounds[0], bounds[1])
    dx = jnp.clip(dx, bounds[2], bounds[3])
    return dy, dx


def _refine(
    p: jax.Array,
    dy0: jax.Array,
    dx0: jax.Array,
    upsample_factor: int,
    h: int,
    w: int,
    region: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Upsampled matrix-DFT refinement of a peak estimate (Guizar-Sicairos 2008).

    ``p`` is the half-plane cross-power spectrum ``(h, w // 2 + 1)`` of a frame of
    width ``w``; the peak is searched on a ``1/upsample_factor`` grid of ``region``
    points per axis centred on ``(dy0, dx0)`` (default ``ceil(1.5·upsample_factor)``:
    within ±0.75 px of an integer peak), then refined by a 3-point parabolic fit.  The
    cost is proportional to ``region``.
    """
    us = float(upsample_factor)
    region = int(math.ceil(upsample_factor * 1.5)) if region is None else int(region)
    off = region // 2
    grid = jnp.asarray((np.arange(region, dtype=np.float32) - off) / np.float32(us))
    ry = dy0 + grid
    rx = dx0 + grid
    up = _dft_at(p, grid, grid, h, w, (dy0, dx0))  # (region, region)
    k = jnp.argmax(up)
    k0 = off * region + off  # ties resolve to the coarse peak itself
    k = jnp.where(up.ravel()[k0] >= up.ravel()[k], k0, k)
    iy, ix = k // region, k % region
    # 3-point parabolic interpolation on the 1/us grid removes its quantization error
    dy = _parabolic(
        up[jnp.clip(iy - 1, 0, region - 1), ix], up[iy, ix], up[jnp.clip(iy + 1, 0, region - 1), ix]
    )
    dx = _parabolic(
        up[iy, jnp.clip(ix - 1, 0, region - 1)], up[iy, ix], up[iy, jnp.clip(ix + 1, 0, region - 1)]
    )
    edge_y = (iy == 0) | (iy == region - 1)
    edge_x = (ix == 0) | (ix == region - 1)
    dy = jnp.where(edge_y, 0.0, dy)
    dx = jnp.where(edge_x, 0.0, dx)
    return ry[iy] + dy / us, rx[ix] + dx / us


def _parabolic(left: jax.Array, centre: jax.Array, right: jax.Array) -> jax.Array:
    """Vertex offset (in grid steps, within ±0.5) of the parabola through three samples."""
    denom = left - 2.0 * centre + right
    off = jnp.where(denom < 0, 0.5 * (left - right) / jnp.where(denom < 0, denom, -1.0), 0.0)
    return jnp.clip(off, -0.5, 0.5)


def _border_limits(dy: jax.Array, dx: jax.Array, h: int, w: int):
    """First/last valid row and column after moving the frame by ``-(dy, dx)``."""
    lo_y = jnp.ceil(jnp.maximum(-dy, 0.0)).astype(jnp.int32)
    hi_y = h - 1 - jnp.ceil(jnp.maximum(dy, 0.0)).astype(jnp.int32)
    lo_x = jnp.ceil(jnp.maximum(-dx, 0.0)).astype(jnp.int32)
    hi_x = w - 1 - jnp.ceil(jnp.maximum(dx, 0.0)).astype(jnp.int32)
    # never empty (|shift| < half the frame is validated upstream)
    hi_y = jnp.maximum(hi_y, lo_y)
    hi_x = jnp.maximum(hi_x, lo_x)
    return lo_y, hi_y, lo_x, hi_x


def apply_border(
    img: jax.Array, dy: jax.Array, dx: jax.Array, border: str, fill_min: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Replace pixels that wrapped around after a shift by ``-(dy, dx)``.

    Returns the filled image and the boolean validity mask.
    """
    h, w = img.shape
    lo_y, hi_y, lo_x, hi_x = _border_limits(dy, dx, h, w)
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    valid = (rows >= lo_y) & (rows <= hi_y) & (cols >= lo_x) & (cols <= hi_x)
    if border == "copy":
        # nearest valid row, then nearest valid column (selects, no gather)
        top = jax.lax.dynamic_slice_in_dim(img, lo_y, 1, axis=0)
        bottom = jax.lax.dynamic_slice_in_dim(img, hi_y, 1, axis=0)
        img = jnp.where(rows < lo_y, top, jnp.where(rows > hi_y, bottom, img))
        left = jax.lax.dynamic_slice_in_dim(img, lo_x, 1, axis=1)
        right = jax.lax.dynamic_slice_in_dim(img, hi_x, 1, axis=1)
        img = jnp.where(cols < lo_x, left, jnp.where(cols > hi_x, right, img))
    elif border == "nan":
        img = jnp.where(valid, img, jnp.nan)
    elif border == "zero":
        img = jnp.where(valid, img, 0.0)
    elif border == "min":
        img = jnp.where(valid, img, fill_min)
    else:  # pragma: no cover - validated upstream
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    return img, valid


def fourier_shift(spec: jax.Array, dy: jax.Array, dx: jax.Array, shape: tuple[int, int]):
    """Move an image given by its rfft2 ``spec`` by ``-(dy, dx)`` (i.e. correct a shift).

    The phase ramp is separable: ``exp(2πi·ky·dy/h) ⊗ exp(2πi·kx·dx/w)``.
    """
    h, w = shape
    ramp_y, ramp_x = phase_ramp(dy, dx, (h, w))
    return jnp.fft.irfft2(spec * ramp_y[:, None] * ramp_x[None, :], s=(h, w))


def masked_corr(a: jax.Array, b: jax.Array, mask: jax.Array) -> jax.Array:
    """Pearson correlation of ``a`` and ``b`` over ``mask`` (NaN if undefined).

    One pass: the sums are dot products (vectorized BLAS-like kernels rather than
    scalar reduction loops) of values centred on their plain means, so float32
    accumulation keeps its precision.
    """
    ok = mask & jnp.isfinite(a) & jnp.isfinite(b)
    n = jnp.maximum(ok.sum().astype(a.dtype), 1.0)
    a0 = jnp.where(ok, a - jnp.mean(jnp.where(ok, a, 0.0)), 0.0).ravel()
    b0 = jnp.where(ok, b - jnp.mean(jnp.where(ok, b, 0.0)), 0.0).ravel()
    hp = jax.lax.Precision.HIGHEST
    sa, sb = a0.sum(), b0.sum()
    cov = jnp.dot(a0, b0, precision=hp) - sa * sb / n
    va = jnp.dot(a0, a0, precision=hp) - sa * sa / n
    vb = jnp.dot(b0, b0, precision=hp) - sb * sb / n
    return cov / jnp.sqrt(va * vb)


def rect_corr(a: jax.Array, b0: jax.Array, b0sq: jax.Array, ca: jax.Array, limits) -> jax.Array:
    """Pearson correlation of ``a`` with a template over the rectangle ``limits``.

    ``b0``/``b0sq`` are the template minus its mean and its square, ``ca`` a constant
    close to ``a``'s mean (centring keeps float32 sums precise), ``limits`` the
    ``(lo_y, hi_y, lo_x, hi_x)`` of the valid rectangle (both ends included).  Every sum
    is a bilinear form ``rows · X · cols`` with 0/1 row and column masks: matrix
    products instead of scalar reduction loops.
    """
    h, w = a.shape
    lo_y, hi_y, lo_x, hi_x = limits
    iy = jnp.arange(h)
    ix = jnp.arange(w)
    ry = ((iy >= lo_y) & (iy <= hi_y)).astype(a.dtype)
    rx = ((ix >= lo_x) & (ix <= hi_x)).astype(a.dtype)
    ac = a - ca
    ac = jnp.where(jnp.isnan(ac), 0.0, ac)  # border="nan": outside the rectangle anyway
    hp = jax.lax.Precision.HIGHEST

    def rect_sum(x):
        return jnp.dot(jnp.dot(ry, x, precision=hp), rx, precision=hp)

    sa, saa, sab = rect_sum(ac), rect_sum(ac * ac), rect_sum(ac * b0)
    sb, sbb = rect_sum(b0), rect_sum(b0sq)
    n = jnp.maximum(ry.sum() * rx.sum(), 1.0)
    cov = sab - sa * sb / n
    va = saa - sa * sa / n
    vb = sbb - sb * sb / n
    return cov / jnp.sqrt(va * vb)


def _spectrum_and_shift(
    frame: jax.Array,
    tmpl_spec: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    whiten: bool,
    peak_fit: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A frame's rfft2 and its displacement relative to the template (``tmpl_spec``).

    Only the template is apodized: its taper (wider than max_shifts) vanishes wherever
    a shifted frame would wrap around, so the frame's own border discontinuity never
    meets template content and the raw frame's spectrum serves both the estimate and
    the Fourier-shift application (one forward FFT per frame).  The frame's mean only
    adds a constant to the correlation surface.
    """
    spec = jnp.fft.rfft2(frame)
    dy, dx = estimate_shift(
        spec,
        tmpl_spec,
        weight,
        frame.shape,
        radius=max_shifts,
        upsample_factor=upsample_factor,
        whiten=whiten,
        peak_fit=peak_fit,
    )
    return spec, dy, dx


def _register_one(
    frame: jax.Array,
    tmpl_spec: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    window: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    border: str,
    apply: bool,
    whiten: bool,
    peak_fit: bool = False,
    with_corr: bool = True,
):
    h, w = frame.shape
    mean = frame.mean()
    spec, dy, dx = _spectrum_and_shift(
        frame,
        tmpl_spec,
        weight,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        whiten=whiten,
        peak_fit=peak_fit,
    )
    shift = jnp.stack([dy, dx])
    if not apply:
        return shift
    out = fourier_shift(spec, dy, dx, (h, w))
    out, _ = apply_border(out, dy, dx, border, fill_min)
    if with_corr:
        b0, b0sq = template
        corr = rect_corr(out, b0, b0sq, mean, _border_limits(dy, dx, h, w))
    else:
        corr = jnp.float32(jnp.nan)
    return shift, out, corr


@partial(
    jax.jit,
    static_argnames=("max_shifts", "upsample_factor", "border", "apply", "whiten", "peak_fit", "with_corr"),
)
def register_batch(
    frames: jax.Array,
    template: jax.Array,
    fill_min: jax.Array,
    window: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    border: str = "copy",
    apply: bool = True,
    whiten: bool = False,
    peak_fit: bool = False,
    with_corr: bool = True,
):
    """Register a batch of frames ``(B, H, W)`` to ``template`` ``(H, W)``.

    Returns ``shifts (B, 2)`` and, if ``apply``, also the corrected frames
    ``(B, H, W)`` and their correlation with the template ``(B,)`` (NaN if not
    ``with_corr``: template estimation needs only the corrected frames).
    """
    tmpl_mean = template.mean()
    tmpl_spec = jnp.fft.rfft2((template - tmpl_mean) * window)
    b0 = template - tmpl_mean
    fn = partial(
        _register_one,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        border=border,
        apply=apply,
        whiten=whiten,
        peak_fit=peak_fit,
        with_corr=with_corr,
    )
    return jax.vmap(fn, in_axes=(0, None, None, None, None, None))(
        frames, tmpl_spec, (b0, b0 * b0), fill_min, window, weight
    )


@partial(jax.jit, static_argnames=("border",))
def shift_batch(frames: jax.Array, shifts: jax.Array, fill_min: jax.Array, *, border: str = "copy"):
    """Move each frame ``(B, H, W)`` by ``-shifts[b]`` (apply known rigid shifts)."""
    h, w = frames.shape[1:]

    def one(frame, s):
        spec = jnp.fft.rfft2(frame)
        out = fourier_shift(spec, s[0], s[1], (h, w))
        out, _ = apply_border(out, s[0], s[1], border, fill_min)
        return out

    return jax.vmap(one)(frames, shifts)


@partial(jax.jit, static_argnames=("max_shifts", "upsample_factor", "whiten", "peak_fit"))
def register_sum_batch(
    frames: jax.Array,
    keep: jax.Array,
    template: jax.Array,
    window: jax.Array,
    weight: jax.Array,
    *,
    max_shifts: tuple[int, int],
    upsample_factor: int,
    whiten: bool = False,
    peak_fit: bool = False,
):
    """Register a batch ``(B, H, W)`` and sum the spectra of the corrected frames.

    Template estimation needs only the mean of the corrected frames, and the mean of
    their spectra is its spectrum: each frame's spectrum is multiplied by its phase
    ramp and the ``keep``-weighted ``(B,)`` sum is returned, with no inverse FFT, border
    handling or transfer of corrected frames.  The corrected frames are moved
    periodically here (their content wraps around): the caller repairs the affected
    edge strip of the mean (see :func:`xnormcorre.engine.api.fill_edges`).

    Returns ``shifts (B, 2)`` and the summed half-plane spectrum ``(H, W // 2 + 1)``.
    """
    h, w = frames.shape[1:]
    tmpl_mean = template.mean()
    tmpl_spec = jnp.fft.rfft2((template - tmpl_mean) * window)

    def one(frame):
        spec, dy, dx = _spectrum_and_shift(
            frame,
            tmpl_spec,
            weight,
            max_shifts=max_shifts,
            upsample_factor=upsample_factor,
            whiten=whiten,
            peak_fit=peak_fit,
        )
        ramp_y, ramp_x = phase_ramp(dy, dx, (h, w))
        return jnp.stack([dy, dx]), spec, ramp_y, ramp_x

    shifts, specs, ramp_y, ramp_x = jax.vmap(one)(frames)
    ramp_y = ramp_y * keep.astype(ramp_y.dtype)[:, None]
    # sum_b keep_b·ramp_y[b, i]·spec[b, i, j]·ramp_x[b, j] as one contraction: XLA CPU
    # does it several times faster than a product of the full planes and a sum over b
    return shifts, jnp.einsum("bi,bij,bj->ij", ramp_y, specs, ramp_x)
