"""Hypothesis properties of rigid registration (shapes drawn from a fixed set)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import xnormcorre
from xnormcorre.testing.strategies import (
    SHAPES,
    crop_movie,
    integer_shifted_movies,
    smooth_image,
    subpixel_shifts,
)


@given(integer_shifted_movies(max_shift=4, n_frames=8))
def test_integer_shifts_recovered(case):
    """Default settings, content entering/leaving the field of view."""
    movie, tmpl, true = case
    res = xnormcorre.rigid(movie, template=tmpl, max_shifts=5, batch_size=8)
    np.testing.assert_allclose(res.shifts.values, true, atol=0.1)


@given(st.sampled_from(SHAPES), st.integers(0, 1000), subpixel_shifts(max_shift=3.5, n_frames=8))
def test_subpixel_shifts_recovered(shape, seed, true):
    movie, tmpl = crop_movie(shape, true, seed)
    res = xnormcorre.rigid(movie, template=tmpl, max_shifts=5, batch_size=8)
    np.testing.assert_allclose(res.shifts.values, true, atol=0.1)


@given(integer_shifted_movies(max_shift=3, n_frames=8), st.sampled_from([1, 3, 8]))
def test_chunking_does_not_change_bits(case, chunk):
    movie, tmpl, _ = case
    eager = xnormcorre.rigid(movie, template=tmpl, max_shifts=4, batch_size=8)
    import xarray as xr

    lazy = xnormcorre.rigid(
        xr.DataArray(movie, dims=("time", "y", "x")).chunk({"time": chunk}),
        template=tmpl,
        max_shifts=4,
        batch_size=8,
    )
    xr.testing.assert_identical(lazy.compute(), eager)


@given(st.sampled_from(SHAPES), st.integers(0, 1000), st.lists(st.integers(-5, 5), min_size=16, max_size=16))
def test_cyclic_integer_shift_exact_without_apodization(shape, seed, vals):
    """Plain cyclic cross-correlation is exact for rolled periodic images."""
    tmpl = smooth_image(shape, seed)
    true = np.asarray(vals, dtype=float).reshape(8, 2)
    movie = np.stack([np.roll(tmpl, tuple(int(v) for v in s), axis=(0, 1)) for s in true])
    res = xnormcorre.rigid(
        movie, template=tmpl, max_shifts=5, batch_size=8, phase_corr=False, smooth_sigma=0, taper=0
    )
    np.testing.assert_allclose(res.shifts.values, true, atol=0.02)
