"""The result schema: dimension and variable names, their attributes, provenance.

The one home of every name a result Dataset or a movie uses, of the attributes written
next to them, and of the option values shared by the labeled API and the engine
(``BORDERS``).  Imports neither xarray nor JAX, so every layer can use it.

Sign convention (used everywhere in xnormcorre): a *shift* is the displacement of a
frame's content relative to the template, ``frame(r) ≈ template(r - shift)``; the
corrected frame is the frame moved by ``-shift``.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- dimensions
DIM_TIME, DIM_Y, DIM_X, DIM_AXIS = "time", "y", "x", "axis"
MOVIE_DIMS = (DIM_TIME, DIM_Y, DIM_X)
PATCH_DIMS = ("patch_y", "patch_x")
RIGID_SHIFT_DIMS = (DIM_TIME, DIM_AXIS)
PW_SHIFT_DIMS = (DIM_TIME, *PATCH_DIMS, DIM_AXIS)
AXIS_LABELS = ("y", "x")

# --------------------------------------------------------------------------- variables
MOVIE_NAME = "movie"
CORRECTED = "corrected"
SHIFTS = "shifts"
RIGID_SHIFTS = "rigid_shifts"
TEMPLATE = "template"
DEFECT_MASK = "defect_mask"
CORRELATION = "correlation"
FLAGS = ("at_max_shift", "low_correlation", "patch_jump", "patch_at_max_deviation")

#: Result kinds: ``method`` attribute of a result and kind of its shifts.
RIGID, PWRIGID = "rigid", "pwrigid"

#: Fill of the pixels that moved in from outside the frame.
BORDERS = ("copy", "nan", "zero", "min")

SIGN_CONVENTION = (
    "displacement of the frame content relative to the template: "
    "frame(r) = template(r - shift); corrected = frame moved by -shift"
)

SHIFT_ATTRS = {
    "long_name": "rigid displacement of frame content relative to the template",
    "units": "pixel",
    "comment": SIGN_CONVENTION,
}
PW_SHIFT_ATTRS = {
    "long_name": "piecewise-rigid displacement of each patch relative to the template",
    "units": "pixel",
    "comment": SIGN_CONVENTION,
}
RIGID_SHIFTS_ATTRS = {
    "long_name": "rigid displacement the patch shifts are constrained around",
    "units": "pixel",
    "comment": SIGN_CONVENTION,
}
#: Attribute of a rigid shifts variable: ``[height, width]`` (px) of the frames it was estimated on.
FRAME_SIZE = "frame_size"


def with_frame_size(attrs: Mapping[str, Any], shape: tuple[int, int]) -> dict[str, Any]:
    """``attrs`` of a rigid shifts variable plus the frame size it was estimated on, so that
    the shifts alone (a DataArray) are refused on frames of another size.

    Examples
    --------
    >>> with_frame_size({"units": "pixel"}, (64, 48))
    {'units': 'pixel', 'frame_size': [64, 48]}
    """
    return {**attrs, FRAME_SIZE: [int(shape[0]), int(shape[1])]}


AXIS_ATTRS = {"long_name": "displacement component", "units": "1"}
CORRELATION_ATTRS = {
    "long_name": "Pearson correlation of the corrected frame with the template",
    "units": "1",
}
RIGID_COMMENT = "frame moved by -shifts (Fourier phase ramp); border: "
PW_COMMENT = (
    "frame resampled (Keys cubic) at r + field(r), the field interpolated bilinearly from the patch "
    "shifts; border: "
)


def corrected_attrs(units: str, comment: str) -> dict[str, str]:
    """Attributes of a corrected movie."""
    return {"long_name": "motion-corrected movie", "units": units, "comment": comment}


def template_attrs(units: str, how: str) -> dict[str, str]:
    """Attributes of a template; ``how`` is ``"estimated"`` or ``"user"``."""
    return {"long_name": "registration template", "units": units, "template_source": how}


def patch_coord_attrs(ax: str) -> dict[str, dict[str, str]]:
    """Attributes of the patch-grid coordinates along ``ax`` (centre, start, stop)."""
    return {
        "centre": {"long_name": f"patch centre along {ax}", "units": "pixel"},
        "start": {"long_name": f"first pixel of the patch along {ax}", "units": "pixel"},
        "stop": {"long_name": f"one past the last pixel of the patch along {ax}", "units": "pixel"},
    }


def is_piecewise(dims: Any) -> bool:
    """True if ``dims`` (of a shifts variable) are those of piecewise-rigid shifts."""
    return set(PATCH_DIMS) <= set(dims)


# --------------------------------------------------------------------------- provenance
def package_versions() -> dict[str, str]:
    """Versions of xnormcorre and the libraries that determine its numbers."""
    out = {}
    for pkg in ("xnormcorre", "jax", "jaxlib", "numpy", "xarray"):
        try:
            out[f"{pkg}_version"] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            out[f"{pkg}_version"] = "unknown"
    return out


def netcdf_safe(value: Any) -> Any:
    """Convert a parameter value to a NetCDF-safe attribute (str/int/float/list), or None.

    Examples
    --------
    >>> netcdf_safe((3, True)), netcdf_safe(None), netcdf_safe(np.float32(0.5))
    ([3, 1], None, 0.5)
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return [netcdf_safe(v) for v in value]
    return str(value)


def provenance_attrs(method: str, params: Mapping[str, Any], source: str | None = None) -> dict:
    """Dataset attrs: method, every parameter (flat and as JSON), versions, source."""
    attrs: dict[str, Any] = {"method": method}
    for k, v in params.items():
        safe = netcdf_safe(v)
        if safe is not None:
            attrs[k] = safe
    attrs["parameters"] = json.dumps({k: netcdf_safe(v) for k, v in params.items()}, sort_keys=True)
    attrs["sign_convention"] = SIGN_CONVENTION
    attrs.update(package_versions())
    if source:
        attrs["source"] = str(source)
    return attrs


def parameters_from_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Recover the keyword arguments of the run that produced a result Dataset.

    Examples
    --------
    >>> parameters_from_attrs({"parameters": '{"max_shifts": [3, 3], "seed": 0}'})
    {'max_shifts': (3, 3), 'seed': 0}
    """
    if "parameters" not in attrs:
        raise ValueError("attrs has no 'parameters' entry: not an xnormcorre result")
    try:
        params = json.loads(attrs["parameters"])
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"attrs['parameters'] is not the JSON record of the run's keyword arguments ({exc}): the "
            "result's attributes were edited or damaged, and the run's parameters cannot be recovered"
        ) from None
    if not isinstance(params, dict):
        raise ValueError(
            "attrs['parameters'] is not the JSON record of the run's keyword arguments (a JSON "
            f"{type(params).__name__}, not an object): the result's attributes were edited or damaged"
        )
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


DEFECT_MASK_ATTRS = {
    "long_name": "sensor defect mask (stuck, hot or dead pixels and lines left out of the estimate)",
    "units": "1",
    "flag_values": [0, 1],
    "flag_meanings": "ok defect",
    "comment": "found from the movie's temporal statistics; the corrected movie keeps these pixels' values",
}
