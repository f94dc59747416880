"""Export of a registration result to NWB (Neurodata Without Borders) with pynwb.

:func:`to_nwb` writes ``processing["ophys"]["MotionCorrection"]`` (an
``ophys.MotionCorrection``) holding a ``CorrectedImageStack``: the corrected movie as a
``TwoPhotonSeries`` streamed chunk by chunk into a compressed HDF5 dataset, a link to the
original series and ``xy_translation``; next to it, in the same processing module, the
template, the run's parameters, the per-frame quality measures and, for piecewise-rigid
results, the patch shifts and the patch grid.

**NWB conventions** (each series' ``description`` repeats them):

* Images are stored ``[time, width, height]`` = ``[time, x, y]`` (NWB's ``TwoPhotonSeries``
  indexing: the first spatial index runs along a row, i.e. over columns), so
  ``series.data[:].transpose(0, 2, 1)`` is xnormcorre's ``(time, y, x)``; the template
  image is ``[x, y]`` likewise.
* ``xy_translation`` holds, per NWB, "the x,y delta necessary to align each frame": the
  correction applied, columns ``(x, y)``.  xnormcorre's ``shifts`` are the displacement
  of the frame's content, so ``xy_translation = -shifts.sel(axis=["x", "y"])``.  Patch
  shifts are stored the same way (correction, ``(x, y)`` components).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import dask
import h5py
import numpy as np
import xarray as xr
from tqdm.std import tqdm

from .. import conventions as cv
from ._common import default_time_chunk
from .store import ChunkPlan, compute_final, plan_chunks
from .writers import cast_block

__all__ = ["to_nwb"]

#: Names of the objects written next to the MotionCorrection container: f"{stack_name}_{suffix}".
_SUFFIXES = ("template", "parameters", "patch_shifts", "patch_grid")
_SECONDS = ("s", "second", "seconds", "sec")
_CORRECTION = (
    "correction applied to each frame (NWB convention: the x,y delta that aligns the frame to the template), "
    "columns (x, y) = (column, row), pixels; equal to minus xnormcorre's shifts, which are the displacement "
    "of the frame content relative to the template"
)


def _require_pynwb():
    try:
        import pynwb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("to_nwb needs pynwb: pip install 'xnormcorre[nwb]' (or pip install pynwb)") from exc
    return pynwb


# --------------------------------------------------------------------------- checks
def _check_result(res: Any) -> xr.Dataset:
    if not isinstance(res, xr.Dataset):
        raise TypeError(f"res must be a result Dataset of rigid/pwrigid, got {type(res).__name__}")
    for name in ("corrected", "shifts", "template"):
        if name not in res:
            raise ValueError(
                f"res has no {name!r} variable: to_nwb needs a full result of rigid/pwrigid "
                "(corrected movie, shifts and template)"
            )
    cv.as_movie(res["corrected"], name="res.corrected")
    if res["corrected"].dims != cv.MOVIE_DIMS:
        raise ValueError(f"res.corrected must have dims {cv.MOVIE_DIMS}, got {res['corrected'].dims}")
    return res


def _out_dtype(dtype: Any) -> np.dtype:
    out = np.dtype(np.float32 if dtype is None else dtype)
    if out.kind not in "iuf":
        raise TypeError(f"dtype must be a NumPy integer or float dtype, got {out}")
    return out


def _target(path: str | os.PathLike, *, append: bool, overwrite: bool) -> Path:
    p = Path(os.fspath(path)).expanduser().absolute()
    if p.is_dir():
        raise IsADirectoryError(f"path {str(p)!r} is a directory; give a file name")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"folder {str(p.parent)!r} of the output file does not exist")
    if append:
        if not p.exists():
            raise FileNotFoundError(f"append=True needs an existing NWB file, {str(p)!r} does not exist")
        if overwrite:
            raise ValueError("give append=True (add to the file) or overwrite=True (replace it), not both")
    elif p.exists() and not overwrite:
        raise FileExistsError(
            f"{str(p)!r} exists; pass append=True to add to it or overwrite=True to replace it"
        )
    return p


# --------------------------------------------------------------------------- timing
def _timing(res: xr.Dataset, rate: float | None, original: Any) -> dict[str, Any]:
    """``rate``/``starting_time`` or ``timestamps`` (seconds) of the series."""
    t = res["time"]
    n = t.size
    seconds = str(t.attrs.get("units", "")).lower() in _SECONDS
    vals = np.asarray(t.values, dtype=np.float64)
    if rate is not None:
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
            raise TypeError(f"rate must be a positive frame rate in Hz, got {rate!r}")
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"rate must be a positive, finite frame rate in Hz, got {rate!r}")
        start = vals[0] if seconds else vals[0] / float(rate)
        return {"rate": float(rate), "starting_time": float(start)}
    if seconds and n >= 2:
        step = np.diff(vals)
        if step[0] > 0 and np.allclose(step, step[0], rtol=1e-9, atol=0):
            return {"rate": float(1.0 / step[0]), "starting_time": float(vals[0])}
        return {"timestamps": vals}
    if original is not None and getattr(original, "data", None) is not None:
        if original.rate is not None:
            return {"rate": float(original.rate), "starting_time": float(original.starting_time or 0.0)}
        if original.timestamps is not None and len(original.timestamps) == n:
            return {"timestamps": original}  # link to the original's timestamps
    warnings.warn(
        "the result's time coordinate is the frame index, so the NWB series get rate = 1.0 Hz; "
        "pass rate=<frames per second> (or open the movie with fps=) to store the real frame rate",
        UserWarning,
        stacklevel=4,  # the caller of to_nwb
    )
    return {"rate": 1.0, "starting_time": float(vals[0])}


def _linked(timing: Mapping[str, Any], first: Any) -> dict[str, Any]:
    """Timing of further series: the same rate, or a link to the first series' timestamps."""
    if "timestamps" in timing:
        return {"timestamps": first}
    return dict(timing)


# --------------------------------------------------------------------------- streaming
def _bounds(da: xr.DataArray, plan: ChunkPlan | None) -> list[tuple[int, int]]:
    n = da.sizes["time"]
    if plan is not None and da.chunks is not None:
        return plan.bounds
    if da.chunks is not None:
        stops = np.cumsum(da.chunks[0]).tolist()
        return list(zip([0, *stops[:-1]], stops, strict=True))
    step = default_time_chunk(tuple(da.shape))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _iter_blocks(arrays: list[xr.DataArray], bounds: list[tuple[int, int]]) -> Iterator[list[np.ndarray]]:
    """Time blocks of several arrays computed together (shared tasks once), one block ahead."""

    def load(a: int, b: int) -> list[np.ndarray]:
        parts = [x.isel(time=slice(a, b)).data for x in arrays]
        return [np.asarray(v) for v in dask.compute(*parts, scheduler="threads")]

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: list[Future] = []
        try:
            for a, b in bounds:
                pending.append(pool.submit(load, a, b))
                if len(pending) > 1:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for f in pending:
                f.cancel()


class _Collector:
    """Streams a movie's frames (transposed to NWB's [x, y]) and keeps the small variables."""

    def __init__(self, movie: xr.DataArray, extra: Mapping[str, xr.DataArray], plan, dtype, bar):
        self.movie, self.extra, self.plan, self.dtype, self.bar = movie, dict(extra), plan, dtype, bar
        self.values = {k: np.empty(v.shape, v.dtype) for k, v in self.extra.items()}
        self.frames_done = 0

    def frames(self) -> Iterator[np.ndarray]:
        names = list(self.extra)
        bounds = _bounds(self.movie, self.plan)
        for (a, b), block in zip(
            bounds, _iter_blocks([self.movie, *self.extra.values()], bounds), strict=True
        ):
            for name, vals in zip(names, block[1:], strict=True):
                axis = self.extra[name].dims.index("time")
                key = tuple(slice(a, b) if k == axis else slice(None) for k in range(vals.ndim))
                self.values[name][key] = vals
            frames = cast_block(block[0], self.dtype).transpose(0, 2, 1)
            yield from frames
            self.frames_done += b - a
            self.bar.update(b - a)


def _stream(collector: _Collector, n: int, compression: str | None, compression_opts: Any):
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.data_utils import DataChunkIterator

    _, h, w = collector.movie.shape
    buffer = max(b - a for a, b in _bounds(collector.movie, collector.plan))
    dci = DataChunkIterator(
        data=collector.frames(), maxshape=(n, w, h), dtype=collector.dtype, buffer_size=buffer
    )
    return H5DataIO(dci, chunks=(1, w, h), compression=compression, compression_opts=compression_opts)


# --------------------------------------------------------------------------- metadata
def _device(nwbfile, device: str | Mapping[str, Any]):
    from pynwb.device import Device

    if isinstance(device, str):
        if device in nwbfile.devices:
            return nwbfile.devices[device]
        return nwbfile.create_device(name=device, description="imaging device")
    if isinstance(device, Mapping):
        spec = dict(device)
        name = spec.pop("name", "Microscope")
        if name in nwbfile.devices:
            return nwbfile.devices[name]
        dev = Device(name=name, **spec)
        nwbfile.add_device(dev)
        return dev
    raise TypeError(f"device must be a device name or a dict of Device fields, got {type(device).__name__}")


def _imaging_plane(nwbfile, imaging_plane: str | Mapping[str, Any] | None, device, original):
    from pynwb.ophys import OpticalChannel

    planes = nwbfile.imaging_planes
    if isinstance(imaging_plane, str):
        if imaging_plane not in planes:
            raise ValueError(
                f"imaging_plane={imaging_plane!r} is not in the file (it has {sorted(planes)}); "
                "pass a dict of ImagingPlane fields to create one"
            )
        return planes[imaging_plane]
    if imaging_plane is None:
        if original is not None and getattr(original, "imaging_plane", None) is not None:
            return original.imaging_plane
        if len(planes) == 1:
            return next(iter(planes.values()))
        imaging_plane = {}
    if not isinstance(imaging_plane, Mapping):
        raise TypeError(
            f"imaging_plane must be a plane name, a dict of ImagingPlane fields or None, got {imaging_plane!r}"
        )
    spec = {
        "name": "ImagingPlane",
        "description": "imaging plane",
        "excitation_lambda": float("nan"),
        "indicator": "unknown",
        "location": "unknown",
        **dict(imaging_plane),
    }
    if spec["name"] in planes:
        raise ValueError(
            f"the file already has an imaging plane {spec['name']!r}; pass imaging_plane={spec['name']!r}"
        )
    channel = spec.pop("optical_channel", None)
    if channel is None or isinstance(channel, Mapping):
        channel = OpticalChannel(
            **{
                "name": "OpticalChannel",
                "description": "optical channel",
                "emission_lambda": float("nan"),
                **dict(channel or {}),
            }
        )
    return nwbfile.create_imaging_plane(optical_channel=channel, device=device, **spec)


def _find_original(nwbfile, name: str | None, n: int):
    from pynwb.image import ImageSeries

    acq = nwbfile.acquisition
    if name is not None:
        if name not in acq or not isinstance(acq[name], ImageSeries):
            series = sorted(k for k, v in acq.items() if isinstance(v, ImageSeries))
            raise ValueError(
                f"original={name!r} is not an image series in the file's acquisition (it has {series})"
            )
        series = acq[name]
        if series.data is not None and len(series.data) not in (0, n):
            raise ValueError(f"original={name!r} has {len(series.data)} frames, the result {n}")
        return series
    found = [
        v for v in acq.values() if isinstance(v, ImageSeries) and v.data is not None and len(v.data) == n
    ]
    return found[0] if len(found) == 1 else None


def _attr_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parameters_table(name: str, attrs: Mapping[str, Any]):
    from hdmf.common import DynamicTable

    table = DynamicTable(
        name=name,
        description="parameters of the motion correction, then the other attributes of the result "
        "(method, sign convention, source, package versions); values as text, JSON for numbers, lists and null",
    )
    table.add_column(name="parameter", description="parameter or attribute name")
    table.add_column(name="value", description="value as text (JSON for numbers, lists and null)")
    try:
        params = json.loads(attrs.get("parameters", "{}"))
    except (TypeError, json.JSONDecodeError):
        params = {}
    for k, v in params.items():
        table.add_row(parameter=str(k), value=_attr_text(v))
    for k, v in attrs.items():
        if k != "parameters" and k not in params:
            table.add_row(parameter=str(k), value=_attr_text(v))
    return table


def _patch_grid_table(name: str, res: xr.Dataset):
    from hdmf.common import DynamicTable

    ny, nx = res.sizes["patch_y"], res.sizes["patch_x"]
    iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    cols = {
        "patch_index_y": ("index of the patch along y (rows)", iy.ravel()),
        "patch_index_x": ("index of the patch along x (columns)", ix.ravel()),
        "centre_y": ("patch centre along y (row), pixels", np.repeat(res["patch_y"].values, nx)),
        "centre_x": ("patch centre along x (column), pixels", np.tile(res["patch_x"].values, ny)),
    }
    for ax, n_other, rep in (("y", nx, np.repeat), ("x", ny, np.tile)):
        for end in ("start", "stop"):
            coord = f"patch_{ax}_{end}"
            if coord in res.coords:
                what = "first pixel" if end == "start" else "one past the last pixel"
                cols[f"{ax}_{end}"] = (f"{what} of the patch along {ax}", rep(res[coord].values, n_other))
    table = DynamicTable(
        name=name,
        description=f"piecewise-rigid patch grid, one row per patch k = patch_index_y * {nx} + patch_index_x "
        "(the order of the patch dimension of the patch shifts); the patch is frame[y_start:y_stop, x_start:x_stop]",
    )
    for col, (desc, _) in cols.items():
        table.add_column(name=col, description=desc)
    for k in range(ny * nx):
        table.add_row(**{col: vals[k].item() for col, (_, vals) in cols.items()})
    return table


def _flat_patches(var: xr.DataArray) -> xr.DataArray:
    """(time, patch_y, patch_x[, axis]) -> (time, patch[, axis]) in row-major patch order."""
    order = ["time", "patch_y", "patch_x", *[d for d in var.dims if d not in ("time", "patch_y", "patch_x")]]
    return var.transpose(*order)


def _correction_xy(shifts: np.ndarray) -> np.ndarray:
    """xnormcorre shifts (..., axis=(y, x)) -> NWB correction (..., (x, y))."""
    return np.ascontiguousarray(-shifts[..., ::-1], dtype=np.float32)


# --------------------------------------------------------------------------- writer
def _build(
    nwbfile,
    res: xr.Dataset,
    *,
    movie: xr.DataArray | None,
    original: str | None,
    stack_name: str,
    device,
    imaging_plane,
    rate,
    dtype: np.dtype,
    compression,
    compression_opts,
    bar,
):
    """Add everything to ``nwbfile``; return (collectors to check, placeholder datasets to fill)."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb.base import Images, TimeSeries
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import CorrectedImageStack, MotionCorrection, TwoPhotonSeries

    n, h, w = res["corrected"].shape
    ophys = nwbfile.processing.get("ophys")
    if ophys is None:
        ophys = nwbfile.create_processing_module(
            name="ophys", description="optical physiology processed data"
        )
    mc = ophys.data_interfaces.get("MotionCorrection")
    if mc is not None and stack_name in mc.corrected_image_stacks:
        raise ValueError(
            f"the file already has a corrected image stack {stack_name!r}; pass another stack_name"
        )
    taken = [f"{stack_name}_{s}" for s in _SUFFIXES if f"{stack_name}_{s}" in ophys.data_interfaces]
    if taken:
        raise ValueError(f"the file's ophys module already has {taken}; pass another stack_name")

    piecewise = "patch_y" in res["shifts"].dims
    rigid_name = "rigid_shifts" if piecewise and "rigid_shifts" in res else "shifts"
    lazy_corrected = res["corrected"].chunks is not None
    plan = plan_chunks(res) if lazy_corrected else None
    small = [v for v in res.data_vars if v not in ("corrected", "template") and "time" in res[v].dims]
    per_chunk = [v for v in small if plan is not None and v in plan.local]

    # original series
    orig = None
    collectors: list[_Collector] = []
    if movie is None:
        orig = _find_original(nwbfile, original, n)
    dev = _device(nwbfile, device)
    plane = _imaging_plane(nwbfile, imaging_plane, dev, orig)
    timing = _timing(res, rate, orig)
    if movie is not None:
        m = cv.as_movie(movie)
        if m.shape != (n, h, w):
            raise ValueError(f"movie must have the result's shape {(n, h, w)}, got {m.shape}")
        oname = original or "TwoPhotonSeries"
        if oname in nwbfile.acquisition:
            raise ValueError(
                f"the file already has an acquisition series {oname!r}: pass original={oname!r} without "
                "movie to link it, or another name for the movie"
            )
        col = _Collector(m, {}, None, np.dtype(m.dtype), bar)
        collectors.append(col)
        orig = TwoPhotonSeries(
            name=oname,
            data=_stream(col, n, compression, compression_opts),
            imaging_plane=plane,
            unit=str(m.attrs.get("units", "a.u.")),
            description="raw two-photon movie, [time, x, y] (x = column, y = row)",
            **({"timestamps": timing["timestamps"]} if "timestamps" in timing else timing),
        )
        nwbfile.add_acquisition(orig)
    elif orig is None:
        source = res.attrs.get("source")
        if not source:
            raise ValueError(
                "NWB's CorrectedImageStack needs the original series: pass movie= (written to the file), "
                "original=<name of the series in the file>, or a result with attrs['source']"
            )
        oname = original or "TwoPhotonSeries"
        if oname in nwbfile.acquisition:
            raise ValueError(
                f"the file's acquisition series {oname!r} does not have the result's {n} frames; pass "
                "original=<name of the raw series> or movie="
            )
        orig = TwoPhotonSeries(
            name=oname,
            external_file=[str(source)],
            format="external",
            starting_frame=[0],
            num_samples=n,
            dimension=[w, h],
            imaging_plane=plane,
            unit="a.u.",
            description=f"raw movie, stored outside this file in {source}",
            **timing,
        )
        nwbfile.add_acquisition(orig)

    # corrected series, streamed; the per-chunk variables are collected on the way
    corr_col = _Collector(res["corrected"], {v: res[v] for v in per_chunk}, plan, dtype, bar)
    collectors.append(corr_col)
    comment = res["corrected"].attrs.get("comment", "")
    corrected = TwoPhotonSeries(
        name="corrected",
        data=_stream(corr_col, n, compression, compression_opts),
        imaging_plane=plane,
        unit=str(res["corrected"].attrs.get("units", "a.u.")),
        description=f"motion-corrected movie ({res.attrs.get('method', 'xnormcorre')}), [time, x, y] "
        f"(x = column, y = row); {comment}",
        comments=json.dumps({k: v for k, v in res.attrs.items()}, default=str),
        **({"timestamps": timing["timestamps"]} if "timestamps" in timing else timing),
    )
    later = _linked(timing, corrected)

    # small per-frame series: placeholders, filled once the corrected movie is written
    placeholders: dict[str, tuple[str, Any]] = {}  # h5 path -> (variable, transform)

    def empty(shape, dtype_, compress=False):
        kw = {"compression": "gzip"} if compress else {}
        return H5DataIO(shape=tuple(shape), dtype=np.dtype(dtype_), **kw)

    xy = TimeSeries(
        name="xy_translation",
        data=empty((n, 2), np.float32),
        unit="pixels",
        description=f"{_CORRECTION}"
        + (f"; the rigid step ({rigid_name}) of the piecewise-rigid correction" if piecewise else ""),
        **later,
    )
    placeholders["xy_translation"] = (rigid_name, _correction_xy)
    stack = CorrectedImageStack(name=stack_name, corrected=corrected, original=orig, xy_translation=xy)
    if mc is None:
        mc = MotionCorrection(name="MotionCorrection", corrected_image_stacks=[stack])
        ophys.add(mc)
    else:
        mc.add_corrected_image_stack(stack)

    tmpl = res["template"]
    images = Images(
        name=f"{stack_name}_template",
        description="registration template of the motion correction",
        images=[
            GrayscaleImage(
                name="template",
                data=np.ascontiguousarray(np.asarray(tmpl.values, np.float32).T),
                description=f"registration template ({tmpl.attrs.get('template_source', '')}), [x, y] "
                "(x = column, y = row)",
            )
        ],
    )
    ophys.add(images)
    ophys.add(_parameters_table(f"{stack_name}_parameters", res.attrs))

    if piecewise:
        grid = _patch_grid_table(f"{stack_name}_patch_grid", res)
        ophys.add(grid)
        ny, nx = res.sizes["patch_y"], res.sizes["patch_x"]
        patches = TimeSeries(
            name=f"{stack_name}_patch_shifts",
            data=empty((n, ny * nx, 2), np.float32, compress=True),
            unit="pixels",
            description=f"piecewise-rigid {_CORRECTION}; dims (time, patch, component): patch k is row k of "
            f"{grid.name} (k = patch_index_y * {nx} + patch_index_x)",
            **later,
        )
        ophys.add(patches)
        placeholders[patches.name] = ("shifts", lambda s: _correction_xy(s.reshape(n, ny * nx, 2)))

    for v in small:
        if v in ("shifts", "rigid_shifts"):
            continue
        var = res[v]
        shape = (n, int(np.prod([var.sizes[d] for d in var.dims if d != "time"], dtype=int)))
        shape = shape[:1] if shape[1] == 1 and var.ndim == 1 else shape
        desc = var.attrs.get("long_name", v)
        if var.attrs.get("comment"):
            desc += f"; {var.attrs['comment']}"
        if "patch_y" in var.dims:
            desc += f"; dims (time, patch): patch k is row k of {stack_name}_patch_grid"
        if "flag_meanings" in var.attrs:
            desc += f"; values {var.attrs.get('flag_values')} mean {var.attrs['flag_meanings']!r}"
        ts = TimeSeries(
            name=f"{stack_name}_{v}",
            data=empty(shape, var.dtype, compress=var.ndim > 1),
            unit=str(var.attrs.get("units", "n.a.")),
            description=desc,
            **later,
        )
        ophys.add(ts)
        placeholders[ts.name] = (v, lambda x, s=shape: np.ascontiguousarray(x.reshape(s)))

    def fill(h5file) -> None:
        """Write the per-frame values once the movie (and with it the per-chunk values) is done."""
        if corr_col.frames_done != n:
            raise RuntimeError(f"only {corr_col.frames_done} of {n} corrected frames were written")
        values = dict(corr_col.values)
        for v in small:
            if v not in values and (plan is None or v in plan.eager):
                values[v] = np.asarray(res[v].values)
        if plan is not None and plan.final:
            local = {v: values[v] for v in plan.local}
            values.update(compute_final(res, plan, local))
        base = f"processing/{ophys.name}"
        for name, (v, transform) in placeholders.items():
            va = res[v].copy(data=np.asarray(values[v]))
            if "patch_y" in va.dims:
                va = _flat_patches(va)
            if "axis" in va.dims:
                va = va.transpose(..., "axis").sel(axis=["y", "x"])
            data = transform(np.asarray(va.values))
            if name == "xy_translation":
                where = f"{base}/MotionCorrection/{stack_name}/xy_translation/data"
            else:
                where = f"{base}/{name}/data"
            dset = h5file[where]
            if dset.shape != data.shape:
                raise RuntimeError(f"{where}: shape {dset.shape}, values {data.shape}")
            dset[...] = data

    return fill


def to_nwb(
    res: xr.Dataset,
    path: str | os.PathLike,
    *,
    movie: xr.DataArray | np.ndarray | None = None,
    original: str | None = None,
    append: bool = False,
    overwrite: bool = False,
    stack_name: str = "CorrectedImageStack",
    session_description: str = "two-photon imaging session, motion-corrected with xnormcorre",
    identifier: str | None = None,
    session_start_time: datetime | None = None,
    subject: Mapping[str, Any] | None = None,
    device: str | Mapping[str, Any] = "Microscope",
    imaging_plane: str | Mapping[str, Any] | None = None,
    rate: float | None = None,
    dtype: Any = None,
    compression: str | None = "gzip",
    compression_opts: Any = 4,
    progress: bool = True,
) -> Path:
    """Write a registration result to an NWB file (``ophys.MotionCorrection``), streamed.

    Adds to ``processing["ophys"]``:

    * ``MotionCorrection`` with a ``CorrectedImageStack`` named ``stack_name``:
      ``corrected`` (``TwoPhotonSeries``, the corrected movie written chunk by chunk
      with ``H5DataIO``/``DataChunkIterator``, compressed; a lazy result is registered
      while it is written, so the movie is never whole in memory), ``original`` (link
      to the raw series) and ``xy_translation`` (``TimeSeries`` ``(time, 2)``: the
      correction, columns ``(x, y)``, i.e. ``-shifts`` with x first; for a
      piecewise-rigid result, of its rigid step);
    * ``{stack_name}_template``: ``Images`` with the template as a ``GrayscaleImage``;
    * ``{stack_name}_parameters``: ``DynamicTable`` of the result's attributes (every
      parameter, sign convention, source, versions); also as JSON in
      ``corrected.comments``;
    * ``{stack_name}_correlation``, ``{stack_name}_at_max_shift``, ... : one
      ``TimeSeries`` per other per-frame variable (correlation, quality flags);
    * piecewise-rigid results: ``{stack_name}_patch_shifts`` (``TimeSeries``
      ``(time, patch, 2)``, the correction per patch, ``(x, y)``) and
      ``{stack_name}_patch_grid`` (``DynamicTable``, one row per patch: indices,
      centre and bounds).

    Images are stored ``[time, x, y]`` (NWB's ``[time, width, height]``): read back
    with ``series.data[:].transpose(0, 2, 1)``.

    Parameters
    ----------
    res : xarray.Dataset
        Result of :func:`xnormcorre.rigid` or :func:`xnormcorre.pwrigid`, NumPy or
        dask-backed.
    path : str or path
        The NWB file.  A new file is written under a temporary name in the same folder
        and renamed when complete; with ``append=True`` the existing file is copied to
        a temporary file, extended and renamed over the original (needs free space for
        a copy), so an error never leaves a partial file.
    movie : DataArray or array (time, y, x), optional
        The raw movie, written (streamed, in its dtype) as the acquisition
        ``TwoPhotonSeries`` named ``original`` (default ``"TwoPhotonSeries"``) and
        linked as the stack's ``original``.
    original : str, optional
        Without ``movie``: name of the image series in the file's acquisition to link
        as ``original`` (default: the only one with as many frames as ``res``).  When
        there is none, a ``TwoPhotonSeries`` referring to ``res.attrs["source"]`` as an
        external file is added.
    append, overwrite : bool
        Add to an existing NWB file, or replace an existing file.  Default: a new file
        (``FileExistsError`` if it exists).
    stack_name : str
        Name of the ``CorrectedImageStack`` (and prefix of the objects next to it); use
        different names for several results in one file.
    session_description, identifier, session_start_time
        ``NWBFile`` fields of a new file (identifier: a random UUID; start time: now,
        local time zone).  Ignored with ``append``.
    subject : dict, optional
        ``pynwb.file.Subject`` fields of a new file (``subject_id``, ``species``,
        ``sex``, ``age``...); DANDI and ``nwbinspector`` require a subject.
    device : str or dict
        Name of the device (reused if in the file), or ``Device`` fields.
    imaging_plane : str, dict or None
        Name of an imaging plane in the file, or ``ImagingPlane`` fields for a new one
        (``description``, ``excitation_lambda``, ``indicator``, ``location``,
        ``imaging_rate``, ``grid_spacing``..., and ``optical_channel`` as a dict of
        ``OpticalChannel`` fields).  Default: the original series' plane, the file's
        only plane, or a new plane with unknown indicator, location and wavelengths.
    rate : float, optional
        Frame rate (Hz).  Default: from the ``time`` coordinate when it is in seconds
        (open the movie with ``fps=``; irregular times become timestamps), else from the
        original series in the file, else 1.0 with a warning.
    dtype : dtype, optional
        dtype of the corrected movie (float32 default; an integer dtype rounds and
        clips, NaN -> 0).
    compression, compression_opts
        HDF5 filter of the movies (gzip level 4 by default; None for none).
    progress : bool
        Show a tqdm progress bar (frames).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    FileExistsError, FileNotFoundError
        ``path`` exists (without ``append``/``overwrite``), or is missing with ``append``.
    ValueError
        Names already in the file, no original series to link, a ``movie`` of another
        shape, an invalid ``rate``.

    Examples
    --------
    >>> import pathlib, tempfile, pynwb, xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(64, 64), max_shift=2, fps=30.0)
    >>> res = xnormcorre.rigid(movie, max_shifts=3)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "session.nwb"
    >>> _ = to_nwb(res, path, movie=movie, progress=False)
    >>> with pynwb.NWBHDF5IO(path, "r") as io:
    ...     stack = io.read().processing["ophys"]["MotionCorrection"]["CorrectedImageStack"]
    ...     corrected = stack.corrected.data[:].transpose(0, 2, 1)
    ...     xy = stack.xy_translation.data[:]
    ...     rate = float(stack.corrected.rate)
    >>> bool((corrected == res.corrected.values).all()), rate
    (True, 30.0)
    >>> bool((xy == -res.shifts.sel(axis=["x", "y"]).values).all())
    True
    """
    pynwb = _require_pynwb()
    res = _check_result(res)
    out_dtype = _out_dtype(dtype)
    if not isinstance(stack_name, str) or not stack_name or "/" in stack_name:
        raise ValueError(f"stack_name must be a non-empty name without '/', got {stack_name!r}")
    target = _target(path, append=append, overwrite=overwrite)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part.nwb")
    if compression is None:
        compression_opts = None
    n = res.sizes["time"]
    total = n * (2 if movie is not None else 1)
    kwargs = dict(
        movie=movie,
        original=original,
        stack_name=stack_name,
        device=device,
        imaging_plane=imaging_plane,
        rate=rate,
        dtype=out_dtype,
        compression=compression,
        compression_opts=compression_opts,
    )
    try:
        with tqdm(total=total, unit="frame", desc=f"to_nwb {target.name}", disable=not progress) as bar:
            if append:
                shutil.copy2(target, tmp)
                with pynwb.NWBHDF5IO(tmp, "a") as io:
                    nwbfile = io.read()
                    fill = _build(nwbfile, res, bar=bar, **kwargs)
                    io.write(nwbfile)
            else:
                nwbfile = pynwb.NWBFile(
                    session_description=session_description,
                    identifier=identifier or str(uuid.uuid4()),
                    session_start_time=session_start_time or datetime.now().astimezone(),
                    subject=None if subject is None else pynwb.file.Subject(**dict(subject)),
                )
                fill = _build(nwbfile, res, bar=bar, **kwargs)
                with pynwb.NWBHDF5IO(tmp, "w") as io:
                    io.write(nwbfile)
        with h5py.File(tmp, "r+") as f:
            fill(f)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
