"""Synthetic two-photon-like movies with known motion, for tests, docs and benchmarks.

The scene is a sum of elliptically symmetric Gaussian elements -- a smooth background,
thousands of small neuropil specks, and ring-shaped somata whose brightness follows
calcium transients.  Every frame is rendered *analytically*: each element's Gaussian is
integrated exactly over each pixel (a separable product of normal CDF differences), at
the element's displaced position.  No image is ever resampled, so there is no
interpolation error and no "inverse crime" with the Fourier shift used by the engine.
Photon (Poisson) noise and Gaussian read noise are added last.

Motion: every element is displaced by ``shift(t) + field(t, y_e, x_e)`` where
``shift`` is a rigid trajectory and ``field`` an optional smooth low-frequency
deformation.  Displacement follows the package sign convention: content at ``p`` in the
reference scene appears at ``p + d`` in the frame.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.ndimage import gaussian_filter1d
from scipy.special import ndtr

__all__ = ["synthetic_movie", "true_field"]

_MOTIONS = ("walk", "jitter", "jumps", "sine", "none")


def _trajectory(rng: np.random.Generator, n: int, max_shift: float, motion: str) -> np.ndarray:
    if motion == "none" or max_shift == 0:
        return np.zeros((n, 2))
    if motion == "jitter":
        return rng.uniform(-max_shift, max_shift, size=(n, 2))
    if motion == "walk":
        steps = gaussian_filter1d(rng.normal(size=(n, 2)), 2.0, axis=0, mode="nearest")
        walk = np.cumsum(steps, axis=0)
        walk -= walk.mean(0)
        scale = np.abs(walk).max(0)
        scale[scale == 0] = 1.0
        return walk / scale * max_shift
    if motion == "jumps":
        n_jumps = max(1, n // 50)
        levels = rng.uniform(-max_shift, max_shift, size=(n_jumps + 1, 2))
        edges = np.sort(rng.choice(np.arange(1, max(n, 2)), size=min(n_jumps, max(n - 1, 1)), replace=False))
        out = np.empty((n, 2))
        prev = 0
        for lvl, e in zip(levels, [*edges, n], strict=False):
            out[prev:e] = lvl
            prev = e
        out[prev:] = levels[-1]
        return out + rng.normal(scale=0.05 * max_shift, size=(n, 2))
    if motion == "sine":
        t = np.arange(n)
        ph = rng.uniform(0, 2 * np.pi, 2)
        per = rng.uniform(40, 120, 2)
        return max_shift * np.sin(2 * np.pi * t[:, None] / per + ph)
    raise ValueError(f"motion must be one of {_MOTIONS}, got {motion!r}")


def _field_modes(rng: np.random.Generator, n: int, n_modes: int = 3):
    """Random smooth deformation: per axis, ``n_modes`` plane waves with slowly varying weights."""
    freq = rng.uniform(0.1, 0.4, size=(2, n_modes, 2)) * rng.choice([-1, 1], size=(2, n_modes, 2))
    phase = rng.uniform(0, 2 * np.pi, size=(2, n_modes))
    t = np.arange(n)
    per = rng.uniform(30, 90, size=(2, n_modes))
    tph = rng.uniform(0, 2 * np.pi, size=(2, n_modes))
    weights = np.sin(2 * np.pi * t[:, None, None] / per + tph)  # (T, 2, n_modes)
    return freq, phase, weights


def true_field(modes, y: np.ndarray, x: np.ndarray, shape: tuple[int, int], amplitude: float) -> np.ndarray:
    """Evaluate a non-rigid deformation at points ``(y, x)``: returns ``(T, npts, 2)``."""
    freq, phase, weights = modes
    h, w = shape
    yy = np.asarray(y, float)[None, :] / h
    xx = np.asarray(x, float)[None, :] / w
    out = []
    for ax in range(2):
        arg = 2 * np.pi * (freq[ax, :, 0, None] * yy + freq[ax, :, 1, None] * xx) + phase[ax, :, None]
        basis = np.sin(arg)  # (n_modes, npts)
        out.append(weights[:, ax, :] @ basis / np.sqrt(freq.shape[1]))  # (T, npts)
    return amplitude * np.stack(out, -1)


def _pixel_integrals(centres: np.ndarray, sigma: np.ndarray, n: int) -> np.ndarray:
    """Integral of ``exp(-(u-c)²/2σ²)`` over each pixel ``[i-0.5, i+0.5]``: ``(T, E, n)``.

    ``centres`` is ``(T, E)``, ``sigma`` is ``(E,)``.  Elements with σ ≤ 5 px are
    integrated only within ±4.5σ of their centre (the rest is < 1e-5 of the peak);
    larger ones over the whole axis.
    """
    t, e = centres.shape
    out = np.zeros((t, e, n), np.float32)

    def integrals(c, sg, edges):
        cdf = ndtr(((edges - c[..., None]) / sg[..., None]).astype(np.float32))
        return (np.sqrt(2 * np.pi) * sg[..., None] * (cdf[..., 1:] - cdf[..., :-1])).astype(np.float32)

    big = sigma > 5.0
    if big.any():
        edges = np.arange(n + 1, dtype=np.float64) - 0.5
        out[:, big] = integrals(centres[:, big], np.broadcast_to(sigma[big], (t, int(big.sum()))), edges)
    small = ~big
    if small.any():
        k = int(min(n, 2 * np.ceil(4.5 * 5.0) + 3))
        c = centres[:, small]
        lo = np.floor(c).astype(np.int64) - k // 2  # (T, Es)
        idx = lo[..., None] + np.arange(k)  # pixel indices (T, Es, k)
        edges = lo[..., None] + np.arange(k + 1) - 0.5
        vals = integrals(c, np.broadcast_to(sigma[small], c.shape), edges)
        padded = np.zeros((t, int(small.sum()), n + 2 * k), np.float32)
        np.put_along_axis(padded, np.clip(idx + k, 0, n + 2 * k - 1), vals, axis=-1)
        out[:, small] = padded[..., k : k + n]
    return out


def _render(disp_y, disp_x, cy, cx, sigma, amp, shape, block=16):
    """Render ``sum_e amp[t, e] * G_e(t)`` for all frames.  disp_*: (T, E)."""
    h, w = shape
    n = disp_y.shape[0]
    out = np.empty((n, h, w), np.float64)
    for a in range(0, n, block):
        b = min(n, a + block)
        gy = _pixel_integrals(cy[None, :] + disp_y[a:b], sigma, h)
        gx = _pixel_integrals(cx[None, :] + disp_x[a:b], sigma, w)
        gy *= amp[a:b, :, None].astype(np.float32)
        out[a:b] = np.matmul(gy.transpose(0, 2, 1), gx)
    return out


def synthetic_movie(
    n_frames: int = 300,
    shape: tuple[int, int] = (128, 128),
    max_shift: float = 5.0,
    *,
    motion: str = "walk",
    nonrigid: float = 0.0,
    n_neurons: int | None = None,
    photons: float = 3.0,
    read_noise: float = 2.0,
    offset: float = 100.0,
    fps: float | None = None,
    dtype: str = "float32",
    seed: int = 0,
    as_dataset: bool = False,
) -> xr.DataArray | xr.Dataset:
    """Generate a two-photon-like movie with known (rigid, optionally non-rigid) motion.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : (int, int)
        Frame size ``(H, W)`` in pixels (any size ≥ 8).
    max_shift : float
        Largest absolute rigid displacement along each axis, in pixels (subpixel values
        are produced exactly).
    motion : {"walk", "jitter", "jumps", "sine", "none"}
        Rigid trajectory: a smooth random walk reaching ``max_shift`` (default),
        independent uniform jitter, piecewise-constant jumps, a sinusoid, or static.
    nonrigid : float
        Amplitude in pixels of an additional smooth low-frequency deformation field
        (0 = rigid motion only).
    n_neurons : int, optional
        Number of somata (default: one per 400 px²).
    photons : float
        Expected photons per unit of clean intensity (sets the shot-noise SNR).
    read_noise : float
        Standard deviation of the additive Gaussian read noise (intensity units).
    offset : float
        Constant baseline added to every pixel.
    fps : float, optional
        If given, the ``time`` coordinate is in seconds; otherwise it is the frame index.
    dtype : str
        ``"float32"`` (default) or an integer type such as ``"uint16"`` (rounded, clipped).
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same bits.
    as_dataset : bool
        Return a Dataset with ``movie``, ``clean`` (noise-free), ``true_shifts``
        ``(time, axis)``, ``reference`` (the noise-free scene at zero displacement, the
        ideal template) and, if ``nonrigid > 0``, ``true_field`` ``(time, y, x, axis)``.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        ``movie`` with dims ``(time, y, x)``; non-dimension coordinates
        ``true_shift_y`` and ``true_shift_x`` along ``time`` hold the rigid
        displacement of each frame (pixels, package sign convention).

    Examples
    --------
    >>> movie = synthetic_movie(n_frames=10, shape=(64, 64), max_shift=3, seed=1)
    >>> movie.dims, movie.shape
    (('time', 'y', 'x'), (10, 64, 64))
    >>> float(abs(movie.true_shift_y).max()) <= 3.0
    True
    """
    if motion not in _MOTIONS:
        raise ValueError(f"motion must be one of {_MOTIONS}, got {motion!r}")
    h, w = (int(s) for s in shape)
    if h < 8 or w < 8 or n_frames < 1:
        raise ValueError(f"shape must be >= (8, 8) and n_frames >= 1, got {shape}, {n_frames}")
    rng = np.random.default_rng(seed)
    margin = max_shift + 3 * nonrigid + 10
    area = (h + 2 * margin) * (w + 2 * margin)

    # --- static elements: smooth background + neuropil specks -----------------------
    n_bg = 6
    n_specks = int(area / 40)
    cy = np.concatenate([rng.uniform(-margin, h + margin, n_bg), rng.uniform(-margin, h + margin, n_specks)])
    cx = np.concatenate([rng.uniform(-margin, w + margin, n_bg), rng.uniform(-margin, w + margin, n_specks)])
    sig = np.concatenate([rng.uniform(0.25, 0.5, n_bg) * max(h, w), rng.uniform(0.7, 2.2, n_specks)])
    amp_static = np.concatenate([rng.uniform(10, 25, n_bg), rng.exponential(12.0, n_specks)])

    # --- somata: ring = outer Gaussian minus dimmer inner one, with calcium dynamics --
    k = int(n_neurons) if n_neurons is not None else max(1, int(h * w / 400))
    ny = rng.uniform(0, h, k)
    nx = rng.uniform(0, w, k)
    s_out = rng.uniform(3.0, 4.5, k)
    base = rng.uniform(30, 60, k)
    spikes = rng.poisson(0.03, size=(n_frames, k)).astype(float)
    calcium = np.zeros_like(spikes)
    for t in range(n_frames):
        calcium[t] = (calcium[t - 1] * 0.9 if t else 0.0) + spikes[t]
    bright = base * (1.0 + 1.5 * calcium)  # (T, k)

    shifts = _trajectory(rng, n_frames, float(max_shift), motion)
    all_y = np.concatenate([cy, ny, ny])
    all_x = np.concatenate([cx, nx, nx])
    disp = np.repeat(shifts[:, None, :], all_y.size, axis=1)  # (T, E, 2)
    modes = None
    if nonrigid > 0:
        modes = _field_modes(rng, n_frames)
        disp = disp + true_field(modes, all_y, all_x, (h, w), nonrigid)
    sigma = np.concatenate([sig, s_out, 0.5 * s_out])
    amp = np.concatenate(
        [np.broadcast_to(amp_static, (n_frames, amp_static.size)), bright, -0.7 * bright], axis=1
    )
    clean = _render(disp[..., 0], disp[..., 1], all_y, all_x, sigma, amp, (h, w))
    clean += offset

    noisy = rng.poisson(np.clip(clean, 0, None) * photons) / photons
    noisy = noisy + rng.normal(scale=read_noise, size=noisy.shape)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        noisy = np.clip(np.round(noisy), info.min, info.max)
    noisy = noisy.astype(dtype)

    time = np.arange(n_frames) / fps if fps else np.arange(n_frames)
    coords = {
        "time": ("time", time, {"long_name": "time" if fps else "frame index", "units": "s" if fps else "1"}),
        "y": ("y", np.arange(h), {"long_name": "pixel row", "units": "pixel"}),
        "x": ("x", np.arange(w), {"long_name": "pixel column", "units": "pixel"}),
        "true_shift_y": (
            "time",
            shifts[:, 0].astype(np.float32),
            {"long_name": "true rigid displacement along y", "units": "pixel"},
        ),
        "true_shift_x": (
            "time",
            shifts[:, 1].astype(np.float32),
            {"long_name": "true rigid displacement along x", "units": "pixel"},
        ),
    }
    attrs = {
        "long_name": "synthetic two-photon movie",
        "units": "photon-equivalent intensity",
        "generator": "xnormcorre.datasets.synthetic_movie",
        "seed": int(seed),
        "max_shift": float(max_shift),
        "motion": motion,
        "nonrigid": float(nonrigid),
    }
    movie = xr.DataArray(noisy, dims=("time", "y", "x"), coords=coords, name="movie", attrs=attrs)
    if not as_dataset:
        return movie
    ds = xr.Dataset({"movie": movie})
    zero = np.zeros((1, all_y.size))
    reference = _render(zero, zero, all_y, all_x, sigma, amp.mean(0, keepdims=True), (h, w))[0] + offset
    ds["reference"] = (
        ("y", "x"),
        reference.astype(np.float32),
        {
            "long_name": "noise-free scene at zero displacement, time-averaged activity",
            "units": attrs["units"],
        },
    )
    ds["clean"] = (
        ("time", "y", "x"),
        clean.astype(np.float32),
        {"long_name": "noise-free movie", "units": attrs["units"]},
    )
    ds = ds.assign_coords(axis=("axis", ["y", "x"], {"long_name": "displacement component", "units": "1"}))
    ds["true_shifts"] = (
        ("time", "axis"),
        shifts.astype(np.float32),
        {"long_name": "true rigid displacement of frame content", "units": "pixel"},
    )
    if modes is not None:
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        f = true_field(modes, yy.ravel(), xx.ravel(), (h, w), nonrigid).reshape(n_frames, h, w, 2)
        ds["true_field"] = (
            ("time", "y", "x", "axis"),
            (f + shifts[:, None, None, :]).astype(np.float32),
            {"long_name": "true total displacement field (rigid + non-rigid)", "units": "pixel"},
        )
    ds.attrs = dict(attrs)
    return ds
