"""A pixel-integrated, bidirectionally scanned synthetic movie (shared by the scan-phase tests)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.special import ndtr


def _pixel_integrals(centres, sigma, n, shift=0.0):
    """Each Gaussian element integrated exactly over each of ``n`` pixels, moved by ``shift``.

    ``shift`` may be one value per frame: the result is then ``(frames, elements, n)``.
    """
    edges = np.arange(n + 1) - 0.5
    shift = np.asarray(shift, np.float64)[..., None, None]
    return np.diff(ndtr((edges - centres[:, None] - shift) / sigma[:, None]), axis=-1)


def bidi_movie(phase, *, n_frames=40, shape=(128, 128), photons=2.0, seed=0, noise=True, shifts=None):
    """A bidirectionally scanned two-photon-like movie with odd lines displaced by ``phase`` px.

    The scene (somata and neuropil specks, Gaussian elements) is integrated analytically
    over every pixel; the odd lines see it displaced by ``phase`` along x (one value or
    one per frame).  ``shifts`` (``(n_frames, 2)``, y and x, px) moves the whole scene
    in each frame: frame(r) = scene(r - shift).  Mean ~6 photons per pixel at
    ``photons=2``, Poisson noise.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    n_cells, n_specks = 60 * h * w // 128**2, 600 * h * w // 128**2
    cy = rng.uniform(-5, h + 5, n_cells + n_specks)
    cx = rng.uniform(-5, w + 5, n_cells + n_specks)
    sigma = np.concatenate([rng.uniform(2.0, 3.5, n_cells), rng.uniform(0.7, 1.3, n_specks)])
    amp = np.concatenate([rng.uniform(20, 60, n_cells), rng.uniform(3, 10, n_specks)]) * sigma**2
    phases = np.broadcast_to(np.asarray(phase, np.float64), (n_frames,))
    out = np.empty((n_frames, h, w))
    if shifts is None:
        rows = _pixel_integrals(cy, sigma, h) * amp[:, None]
        out[:, 0::2] = np.ascontiguousarray(rows[:, 0::2].T) @ _pixel_integrals(cx, sigma, w)
        odd = _pixel_integrals(cx, sigma, w, phases)  # (frames, elements, w): one matrix product
        odd = np.ascontiguousarray(odd.transpose(1, 0, 2)).reshape(cx.size, -1)
        out[:, 1::2] = (
            (np.ascontiguousarray(rows[:, 1::2].T) @ odd).reshape(-1, n_frames, w).transpose(1, 0, 2)
        )
    else:
        shifts = np.asarray(shifts, np.float64).reshape(n_frames, 2)
        for t, (dy, dx) in enumerate(shifts):
            rows = _pixel_integrals(cy + dy, sigma, h) * amp[:, None]
            out[t, 0::2] = rows[:, 0::2].T @ _pixel_integrals(cx + dx, sigma, w)
            out[t, 1::2] = rows[:, 1::2].T @ _pixel_integrals(cx + dx + phases[t], sigma, w)
    out = (out + 2.0) * photons
    if noise:
        out = rng.poisson(out)
    return xr.DataArray(out.astype(np.float32), dims=("time", "y", "x"), name="movie")
