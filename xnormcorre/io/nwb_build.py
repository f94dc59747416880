"""NWB export, the writing side: the NWB objects of a result, the movies streamed.

:func:`build` adds a result's objects to an ``NWBFile`` (layout in :mod:`xnormcorre.io.nwb`):
the movies are streamed chunk by chunk with ``DataChunkIterator`` while the file is
written, the per-frame variables collected on the way and written afterwards into
placeholder datasets by the function :func:`build` returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import dask
import numpy as np
import xarray as xr

from .. import conventions as cv
from ._common import default_time_chunk
from .nwb_meta import (
    CORRECTION,
    correction_xy,
    device_for,
    find_original,
    flat_patches,
    imaging_plane_for,
    linked_timing,
    parameters_table,
    patch_grid_table,
    series_timing,
)
from .store_plan import ChunkPlan, compute_final, plan_chunks
from .writers import cast_block

__all__ = ["SUFFIXES", "Collector", "block_bounds", "build", "iter_blocks", "stream"]

#: Names of the objects written next to the MotionCorrection container: f"{stack_name}_{suffix}".
SUFFIXES = ("template", "parameters", "patch_shifts", "patch_grid")


# --------------------------------------------------------------------------- streaming
def block_bounds(da: xr.DataArray, plan: ChunkPlan | None) -> list[tuple[int, int]]:
    n = da.sizes["time"]
    if plan is not None and da.chunks is not None:
        return plan.bounds
    if da.chunks is not None:
        stops = np.cumsum(da.chunks[0]).tolist()
        return list(zip([0, *stops[:-1]], stops, strict=True))
    step = default_time_chunk(tuple(da.shape))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def iter_blocks(arrays: list[xr.DataArray], bounds: list[tuple[int, int]]) -> Iterator[list[np.ndarray]]:
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


class Collector:
    """Streams a movie's frames (transposed to NWB's [x, y]) and keeps the small variables."""

    def __init__(self, movie: xr.DataArray, extra: Mapping[str, xr.DataArray], plan, dtype, bar):
        self.movie, self.extra, self.plan, self.dtype, self.bar = movie, dict(extra), plan, dtype, bar
        self.values = {k: np.empty(v.shape, v.dtype) for k, v in self.extra.items()}
        self.frames_done = 0

    def frames(self) -> Iterator[np.ndarray]:
        names = list(self.extra)
        bounds = block_bounds(self.movie, self.plan)
        for (a, b), block in zip(
            bounds, iter_blocks([self.movie, *self.extra.values()], bounds), strict=True
        ):
            for name, vals in zip(names, block[1:], strict=True):
                axis = self.extra[name].dims.index("time")
                key = tuple(slice(a, b) if k == axis else slice(None) for k in range(vals.ndim))
                self.values[name][key] = vals
            frames = cast_block(block[0], self.dtype).transpose(0, 2, 1)
            yield from frames
            self.frames_done += b - a
            self.bar.update(b - a)


def stream(collector: Collector, n: int, compression: str | None, compression_opts: Any):
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.data_utils import DataChunkIterator

    _, h, w = collector.movie.shape
    buffer = max(b - a for a, b in block_bounds(collector.movie, collector.plan))
    dci = DataChunkIterator(
        data=collector.frames(), maxshape=(n, w, h), dtype=collector.dtype, buffer_size=buffer
    )
    return H5DataIO(dci, chunks=(1, w, h), compression=compression, compression_opts=compression_opts)


# --------------------------------------------------------------------------- writer
def build(
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
    """Add everything to ``nwbfile``; return ``fill(h5file)``, which writes the per-frame
    series into their placeholder datasets once the file is written and returns their values."""
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
    taken = [f"{stack_name}_{s}" for s in SUFFIXES if f"{stack_name}_{s}" in ophys.data_interfaces]
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
    collectors: list[Collector] = []
    if movie is None:
        orig = find_original(nwbfile, original, n)
    dev = device_for(nwbfile, device)
    plane = imaging_plane_for(nwbfile, imaging_plane, dev, orig)
    timing = series_timing(res, rate, orig)
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
        col = Collector(m, {}, None, np.dtype(m.dtype), bar)
        collectors.append(col)
        orig = TwoPhotonSeries(
            name=oname,
            data=stream(col, n, compression, compression_opts),
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
    corr_col = Collector(res["corrected"], {v: res[v] for v in per_chunk}, plan, dtype, bar)
    collectors.append(corr_col)
    comment = res["corrected"].attrs.get("comment", "")
    corrected = TwoPhotonSeries(
        name="corrected",
        data=stream(corr_col, n, compression, compression_opts),
        imaging_plane=plane,
        unit=str(res["corrected"].attrs.get("units", "a.u.")),
        description=f"motion-corrected movie ({res.attrs.get('method', 'xnormcorre')}), [time, x, y] "
        f"(x = column, y = row); {comment}",
        comments=json.dumps({k: v for k, v in res.attrs.items()}, default=str),
        **({"timestamps": timing["timestamps"]} if "timestamps" in timing else timing),
    )
    later = linked_timing(timing, corrected)

    # small per-frame series: placeholders, filled once the corrected movie is written
    placeholders: dict[str, tuple[str, Any]] = {}  # h5 path -> (variable, transform)

    def empty(shape, dtype_, compress=False):
        kw = {"compression": "gzip"} if compress else {}
        return H5DataIO(shape=tuple(shape), dtype=np.dtype(dtype_), **kw)

    xy = TimeSeries(
        name="xy_translation",
        data=empty((n, 2), np.float32),
        unit="pixels",
        description=f"{CORRECTION}"
        + (f"; the rigid step ({rigid_name}) of the piecewise-rigid correction" if piecewise else ""),
        **later,
    )
    placeholders["xy_translation"] = (rigid_name, correction_xy)
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
    ophys.add(parameters_table(f"{stack_name}_parameters", res.attrs))

    if piecewise:
        grid = patch_grid_table(f"{stack_name}_patch_grid", res)
        ophys.add(grid)
        ny, nx = res.sizes["patch_y"], res.sizes["patch_x"]
        patches = TimeSeries(
            name=f"{stack_name}_patch_shifts",
            data=empty((n, ny * nx, 2), np.float32, compress=True),
            unit="pixels",
            description=f"piecewise-rigid {CORRECTION}; dims (time, patch, component): patch k is row k of "
            f"{grid.name} (k = patch_index_y * {nx} + patch_index_x)",
            **later,
        )
        ophys.add(patches)
        placeholders[patches.name] = ("shifts", lambda s: correction_xy(s.reshape(n, ny * nx, 2)))

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

    def fill(h5file) -> dict[str, np.ndarray]:
        """Write the per-frame values once the movie (and with it the per-chunk values) is done;
        return them (name -> values of each per-frame variable but ``corrected``)."""
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
                va = flat_patches(va)
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
        return {v: np.asarray(values[v]) for v in small}

    return fill
