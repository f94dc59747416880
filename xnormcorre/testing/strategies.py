"""Hypothesis strategies for shifted movies.

Frame shapes are drawn from a small fixed set so that JAX compiles each kernel once
per shape during a test session.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

#: Frame shapes used by property tests (non-square and odd sizes included).
SHAPES = ((48, 48), (40, 56), (45, 51))


def smooth_image(shape: tuple[int, int], seed: int, sigma: float = 1.0) -> np.ndarray:
    """A periodic random texture (Gaussian-filtered noise), positive, float32."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), sigma, mode="wrap")
    img = (img - img.min()) / (img.max() - img.min())
    return (100 + 400 * img).astype(np.float32)


def displace(img: np.ndarray, shift) -> np.ndarray:
    """Displace a periodic image's content by ``shift`` (exact Fourier phase ramp, NumPy)."""
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
    return np.real(np.fft.ifft2(np.fft.fft2(img) * ramp)).astype(np.float32)


def crop_movie(shape: tuple[int, int], shifts: np.ndarray, seed: int, margin: int = 8):
    """``(movie, template)``: crops of a larger texture displaced by ``shifts``.

    Content enters and leaves the field of view as in a real movie.  Integer shifts
    are exact crops; subpixel shifts displace the larger periodic texture exactly in
    the Fourier domain (NumPy, independent of the engine) before cropping.
    """
    big = smooth_image((shape[0] + 2 * margin, shape[1] + 2 * margin), seed)
    win = (slice(margin, margin + shape[0]), slice(margin, margin + shape[1]))
    frames = []
    for s in shifts:
        if np.allclose(s, np.round(s)):
            frames.append(np.roll(big, tuple(int(v) for v in np.round(s)), axis=(0, 1))[win])
        else:
            frames.append(displace(big, s)[win])
    return np.stack(frames), big[win].copy()


@st.composite
def integer_shifted_movies(draw, max_shift: int = 4, n_frames: int = 8):
    """``(movie, template, true_shifts)`` with integer displacements (exact crops)."""
    shape = draw(st.sampled_from(SHAPES))
    seed = draw(st.integers(0, 2**16))
    shifts = draw(
        st.lists(
            st.tuples(st.integers(-max_shift, max_shift), st.integers(-max_shift, max_shift)),
            min_size=n_frames,
            max_size=n_frames,
        )
    )
    true = np.asarray(shifts, dtype=np.float64)
    movie, tmpl = crop_movie(shape, true, seed)
    return movie, tmpl, true


@st.composite
def subpixel_shifts(draw, max_shift: float = 4.0, n_frames: int = 8):
    """A ``(n_frames, 2)`` array of shifts in ``[-max_shift, max_shift]``."""
    vals = draw(
        st.lists(
            st.floats(-max_shift, max_shift, allow_nan=False, allow_infinity=False),
            min_size=2 * n_frames,
            max_size=2 * n_frames,
        )
    )
    return np.asarray(vals, dtype=np.float64).reshape(n_frames, 2)
