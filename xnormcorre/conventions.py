"""Compatibility module: the names of :mod:`xnormcorre.schema` and the checks of
:mod:`xnormcorre.validate`, under their former home.  New code imports those modules."""

from __future__ import annotations

from .schema import (  # noqa: F401
    BORDERS,
    DIM_AXIS,
    DIM_TIME,
    DIM_X,
    DIM_Y,
    MOVIE_DIMS,
    SHIFT_ATTRS,
    SIGN_CONVENTION,
    netcdf_safe,
    package_versions,
    parameters_from_attrs,
    provenance_attrs,
)
from .validate import (  # noqa: F401
    as_movie,
    as_template,
    check_border,
    check_finite,
    check_finite_block,
    check_max_shifts,
    integer,
    pair,
)
