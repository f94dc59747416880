"""``xnormcorre apply ... --resume``: the output written resumably (``correct --resume`` is
tested, SIGKILLed, in tests/test_resume.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import xarray as xr

from xnormcorre.cli import main
from xnormcorre.io import blocks
from xnormcorre.io.resumable import partial_paths


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "m.tif", (rng.normal(size=(20, 32, 32)) * 100 + 1000).astype(np.uint16))
    shifts = np.stack([np.linspace(-2, 2, 20), np.linspace(1, -1, 20)], axis=1).astype(np.float32)
    xr.Dataset(
        {"shifts": (("time", "axis"), shifts), "template": (("y", "x"), np.zeros((32, 32), np.float32))},
        coords={"time": np.arange(20), "axis": ["y", "x"]},
        attrs={"method": "rigid", "border": "copy"},
    ).to_netcdf(tmp_path / "s.nc")
    return tmp_path


def test_apply_resume_continues_an_interrupted_write(data, monkeypatch, capsys):
    argv = [
        "apply",
        str(data / "s.nc"),
        str(data / "m.tif"),
        "-o",
        str(data / "c.tif"),
        "--resume",
        "--chunk",
        "5",
    ]
    assert main(["apply", str(data / "s.nc"), str(data / "m.tif"), "-o", str(data / "plain.tif"), "-q"]) == 0
    monkeypatch.setattr(blocks, "default_time_chunk", lambda shape, preferred=1: 5)
    cast, calls = blocks.cast_block, []

    def interrupted(block, dtype):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return cast(block, dtype)

    monkeypatch.setattr(blocks, "cast_block", interrupted)
    assert main([*argv, "-q"]) == 130
    part, record = partial_paths(data / "c.tif")
    assert part.is_file() and record.is_file() and not (data / "c.tif").exists()
    monkeypatch.setattr(blocks, "cast_block", cast)
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"resuming the write of {data / 'c.tif'}: 10 of 20 frames written" in out
    assert (data / "c.tif").read_bytes() == (data / "plain.tif").read_bytes()
    assert not part.exists() and not record.exists()


def test_apply_resume_needs_a_resumable_format(data, capsys):
    argv = ["apply", str(data / "s.nc"), str(data / "m.tif"), "-o", str(data / "c.nc"), "--resume", "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == "error: --resume writes a TIFF, HDF5 or zarr output resumably; OUT is netcdf\n"
