"""The three xarray backends are registered under their engine names and describe themselves."""

from __future__ import annotations

import pytest
import xarray as xr

from xnormcorre.io.hdf5 import H5BackendEntrypoint
from xnormcorre.io.sbx import SbxBackendEntrypoint
from xnormcorre.io.tiff import TiffBackendEntrypoint


@pytest.mark.parametrize(
    ("engine", "cls", "fmt", "params"),
    [
        ("xnormcorre_tiff", TiffBackendEntrypoint, "TIFF", {"series", "fps", "lock", "drop_variables"}),
        (
            "xnormcorre_hdf5",
            H5BackendEntrypoint,
            "HDF5",
            {"dataset", "dims", "fps", "lock", "drop_variables"},
        ),
        ("xnormcorre_sbx", SbxBackendEntrypoint, "Scanbox", {"fps", "drop_variables"}),
    ],
)
def test_engine_registered_with_description(engine, cls, fmt, params):
    ep = xr.backends.list_engines()[engine]
    assert isinstance(ep, cls)
    assert fmt in ep.description and ep.url.startswith("https://")
    assert set(ep.open_dataset_parameters) == {"filename_or_obj", *params}
