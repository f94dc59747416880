"""Validation once, CaImAn/jnormcorre names, real signatures, shifts of other tools."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import xarray as xr

import xnormcorre


@pytest.fixture(scope="module")
def movie():
    return xnormcorre.datasets.synthetic_movie(n_frames=24, shape=(48, 48), max_shift=2, seed=11)


@pytest.fixture(scope="module")
def res(movie):
    return xnormcorre.rigid(movie, max_shifts=4)


def test_caiman_aliases_mean_the_same(movie):
    a = xnormcorre.rigid(movie, max_shifts=4, border="nan", frames_per_split=10)
    b = xnormcorre.rigid(movie, max_shifts=4, border_nan=True, num_frames_split=10)
    xr.testing.assert_identical(a, b)
    c = xnormcorre.rigid(movie, max_shifts=4, splits_rig=3)  # 3 splits of ceil(24 / 3) = 8 frames
    assert c.attrs["frames_per_split"] == math.ceil(24 / 3) == 8
    assert xnormcorre.rigid(movie, max_shifts=4, border_nan="copy").attrs["border"] == "copy"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_shift": 3}, "did you mean 'max_shifts'"),
        ({"upsample": 3}, "did you mean 'upsample_factor'"),
        ({"gSig_filt": (3, 3)}, r"highpass"),
        ({"pw_rigid": True}, r"xnormcorre.pwrigid"),
        ({"shifts_opencv": True}, "CaImAn/jnormcorre/NoRMCorre name"),
        ({"nonneg_movie": True}, "min_mov"),
        ({"border_nan": False}, 'border="copy"'),
        ({"border_nan": "min"}, 'border="min"'),
    ],
)
def test_unknown_keywords_name_what_to_write(movie, kw, match):
    with pytest.raises(TypeError, match=match):
        xnormcorre.rigid(movie, **kw)


def test_alias_contradicting_an_explicit_keyword(movie):
    with pytest.raises(ValueError, match="alias"):
        xnormcorre.rigid(movie, max_shifts=4, border="zero", border_nan=True)


def test_pwrigid_and_template_keywords(movie):
    with pytest.raises(TypeError, match="did you mean 'niter_rig'"):
        xnormcorre.pwrigid(movie, strides=24, overlaps=8, niter_rigg=1)
    with pytest.raises(TypeError, match="border_nan"):  # estimate_template has no border
        xnormcorre.estimate_template(movie, border_nan=True)


def test_accessor_methods_show_the_real_signature_and_docs(movie):
    for method, fn in (
        (movie.normcorre.rigid, xnormcorre.rigid),
        (movie.normcorre.pwrigid, xnormcorre.pwrigid),
        (movie.normcorre.apply_shifts, xnormcorre.apply_shifts),
        (movie.normcorre.template, xnormcorre.estimate_template),
    ):
        params = list(inspect.signature(fn).parameters)[1:]  # less the movie
        assert list(inspect.signature(method).parameters) == params
        assert method.__doc__ == fn.__doc__
    assert "max_shifts" in inspect.signature(movie.normcorre.rigid).parameters


@pytest.mark.parametrize("convention", ["caiman", "normcorre", "jnormcorre"])
def test_shifts_of_other_tools_round_trip(movie, res, convention):
    applied_correction = -res.shifts.values  # what CaImAn / NoRMCorre / jnormcorre report
    back = xnormcorre.shifts_from(applied_correction, convention)
    np.testing.assert_array_equal(back.values, res.shifts.values)
    out = xnormcorre.apply_shifts(movie, applied_correction, convention=convention)
    np.testing.assert_array_equal(out.values, res.corrected.values)
    # unconverted, the motion is doubled instead of removed
    wrong = xnormcorre.apply_shifts(movie, applied_correction)
    assert not np.array_equal(wrong.values, res.corrected.values)


def test_shifts_from_checks(res):
    np.testing.assert_array_equal(xnormcorre.shifts_from(res.shifts, "xnormcorre").values, res.shifts.values)
    with pytest.raises(ValueError, match="convention must be one of"):
        xnormcorre.shifts_from(res.shifts, "suite2p")
    with pytest.raises(ValueError, match="shape"):
        xnormcorre.shifts_from(np.zeros((3, 3)), "caiman")


@pytest.mark.parametrize(
    ("fn", "kw", "error", "match"),
    [
        ("rigid", {"max_shifts": None}, TypeError, r"max_shifts must be an int or a pair of ints, got None"),
        ("rigid", {"max_shifts": "4"}, TypeError, r"max_shifts must be an int or a pair of ints, got '4'"),
        ("pwrigid", {"strides": None}, TypeError, r"strides must be an int or a pair of ints, got None"),
        ("rigid", {"smooth_sigma": "1"}, TypeError, r"smooth_sigma must be a finite number >= 0, got '1'"),
        (
            "rigid",
            {"smooth_sigma": math.nan},
            ValueError,
            r"smooth_sigma must be a finite number >= 0, got nan",
        ),
        (
            "rigid",
            {"smooth_sigma": math.inf},
            ValueError,
            r"smooth_sigma must be a finite number >= 0, got inf",
        ),
        ("rigid", {"smooth_sigma": -1}, ValueError, r"smooth_sigma must be a finite number >= 0, got -1"),
        ("pwrigid", {"taper": math.nan}, ValueError, r"taper must be a finite number >= 0, got nan"),
        ("rigid", {"taper": math.inf}, ValueError, r"taper must be a finite number >= 0, got inf"),
        ("rigid", {"min_mov": "abc"}, TypeError, r"min_mov must be a finite number, got 'abc'"),
        ("rigid", {"min_mov": math.nan}, ValueError, r"min_mov must be finite, got nan"),
    ],
)
def test_bad_values_get_one_clear_error_naming_the_parameter(movie, fn, kw, error, match):
    kw = {"max_shifts": 4, **kw}
    with pytest.raises(error, match=match):
        getattr(xnormcorre, fn)(movie, **kw)


def test_apply_shifts_min_mov_must_be_a_number(movie):
    with pytest.raises(TypeError, match="min_mov must be a finite number, got 'abc'"):
        xnormcorre.apply_shifts(movie, np.zeros((movie.sizes["time"], 2)), border="min", min_mov="abc")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "null"])
def test_corrupt_parameters_attribute_is_one_clear_error(text):
    with pytest.raises(
        ValueError, match=r"attrs\['parameters'\] is not the JSON record .* edited or damaged"
    ):
        xnormcorre.parameters_from_attrs({"parameters": text})
