"""A saved :class:`xnormcorre.Corrector`: the NetCDF layout (template, parameters,
calibration), written atomically and read back, and the calibration a result or a saved
corrector recorded in its attrs."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from ..engine.config import Calibration
from ..engine.noise import UNIFORM, NoiseModel

__all__ = [
    "FORMAT_VERSION",
    "calibration_from_attrs",
    "corrector_dataset",
    "read_corrector",
    "write_atomically",
]

#: Version of the file layout written by :meth:`Corrector.save`; a file of another
#: version is refused by :meth:`Corrector.load`.
FORMAT_VERSION = 1
_FORMAT_ATTR = "xnormcorre_corrector_format"


def calibration_from_attrs(ds: xr.Dataset) -> Calibration | None:
    """The calibration a result (or a saved corrector) recorded, or None if it has none."""
    attrs = ds.attrs
    if "intensity_scale" not in attrs or "noise_model" not in attrs:
        return None
    mask = None
    if sc.DEFECT_MASK in ds:
        m = np.asarray(ds[sc.DEFECT_MASK].transpose(sc.DIM_Y, sc.DIM_X).values).astype(bool)
        mask = m if m.any() else None
    fitted = str(attrs["noise_model"]) == "poisson-gaussian"
    noise = (
        NoiseModel(float(attrs["noise_gain"]), float(attrs["noise_intercept"]), fitted) if fitted else UNIFORM
    )
    return Calibration(mask, noise, float(attrs["intensity_scale"]))


def write_atomically(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``ds`` to the NetCDF file ``path``: next to it under a temporary name, then
    renamed, so a failed write leaves no partial file; an existing file is replaced only
    with ``overwrite=True``.  Returns the path."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    try:
        ds.to_netcdf(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if the target appeared meanwhile: never overwritten
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def corrector_dataset(
    template: np.ndarray, method: str, parameters: dict[str, Any], defects, cal: Calibration | None
) -> xr.Dataset:
    """The saved form of a corrector: its ``template``, ``method``, ``parameters`` (with
    ``clip``), ``defects`` setting (True: find, False: none, or a mask) and calibration."""
    shape = template.shape
    ds = xr.Dataset()
    ds[sc.TEMPLATE] = xr.DataArray(
        template, dims=(sc.DIM_Y, sc.DIM_X), attrs=sc.template_attrs("a.u.", "user")
    )
    attrs: dict[str, Any] = {
        _FORMAT_ATTR: FORMAT_VERSION,
        "method": method,
        "parameters": json.dumps({k: sc.netcdf_safe(v) for k, v in parameters.items()}, sort_keys=True),
        "calibrated": int(cal is not None),
        "defects": "mask" if isinstance(defects, np.ndarray) else ("find" if defects else "none"),
    }
    mask = defects if isinstance(defects, np.ndarray) else None
    if cal is not None:
        mask = cal.defects
        attrs.update(
            noise_model="poisson-gaussian" if cal.noise.fitted else "uniform",
            noise_gain=float(cal.noise.gain),
            noise_intercept=float(cal.noise.intercept),
            intensity_scale=float(cal.scale),
            n_defects=cal.n_defects,
        )
    if mask is not None or cal is not None:
        m = np.zeros(shape, np.int8)
        if mask is not None:
            m[np.asarray(mask, bool)] = 1
        ds[sc.DEFECT_MASK] = xr.DataArray(m, dims=(sc.DIM_Y, sc.DIM_X), attrs=dict(sc.DEFECT_MASK_ATTRS))
    attrs.update(sc.package_versions())
    ds.attrs = attrs
    return ds


def read_corrector(
    path: str | os.PathLike,
) -> tuple[np.ndarray, dict[str, Any], Any, bool, Calibration | None]:
    """A file written by :func:`corrector_dataset` and :func:`write_atomically`:
    ``(template, parameters, defects, clip, calibration or None)``.

    A file of another format version (or not a saved corrector) raises one
    ``ValueError`` saying so.
    """
    with xr.open_dataset(path) as f:
        ds = f.load()
    version = ds.attrs.get(_FORMAT_ATTR)
    if version is None:
        raise ValueError(f"{path} is not a saved xnormcorre Corrector (no {_FORMAT_ATTR!r} attribute)")
    if int(version) != FORMAT_VERSION:
        raise ValueError(
            f"{path} was saved in Corrector format version {int(version)} (xnormcorre "
            f"{ds.attrs.get('xnormcorre_version', 'unknown')}); this xnormcorre reads version "
            f"{FORMAT_VERSION}: make it again with Corrector.from_result(result) or Corrector(template, ...)"
        )
    params = sc.parameters_from_attrs(ds.attrs)
    clip = bool(params.pop("clip", True))
    how = ds.attrs.get("defects", "find")
    cal = calibration_from_attrs(ds) if int(ds.attrs.get("calibrated", 0)) else None
    defects = np.asarray(ds[sc.DEFECT_MASK].values, bool) if how == "mask" else how == "find"
    return ds[sc.TEMPLATE].values, params, defects, clip, cal
