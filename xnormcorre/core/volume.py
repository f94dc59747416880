"""Labeled 3-D rigid registration of volumetric movies ``(time, z, y, x)``.

:func:`xnormcorre.rigid` on a movie with a plane dim (``planes=None`` or ``"volume"``)
lands here: each volume is registered to a volume template with a 3-D rigid shift
``(z, y, x)`` (:mod:`xnormcorre.engine.volume`), as NoRMCorre and CaImAn do for a 4-D
movie.  Multi-plane rigs whose planes are not a contiguous volume use
``planes="independent"`` (:mod:`xnormcorre.core.planes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine import volume as _vol
from .movie import Frames, source_of

__all__ = ["is_volume_movie", "rigid_volume", "volume_flags", "volume_max_shifts", "volume_template"]

#: Volumes whose minimum is the default ``min_mov`` (as for frames).
_MIN_MOV_VOLUMES = 400

#: Bytes of whole time chunks the template passes keep (a lazy movie's chunks are read in
#: order, each once per pass: a few chunks suffice; memory stays O(chunk)).
VOLUME_CACHE_BYTES = 2**26

#: rigid() parameters a volume run does not use, with their neutral values.
_UNUSED = {
    "reference": None,
    "scan_phase": None,
    "frames_per_split": 1000,
    "num_splits_to_process": None,
    "num_splits_to_process_rig": None,
}


def volume_max_shifts(value: Any, shape: tuple[int, int, int], dims: tuple[str, str, str]) -> tuple[int, ...]:
    """``max_shifts`` of a volume: 3 integers ``>= 0`` (z, y, x), each below half the axis."""
    if np.isscalar(value) or len(value) != 3:
        raise ValueError(
            f"max_shifts must have 3 entries {dims} for 3-D registration of a volume, got {value!r}; "
            f"e.g. max_shifts=(2, 8, 8), or register each plane alone with planes='independent'"
        )
    out = []
    for v, n, d in zip(value, shape, dims, strict=True):
        if isinstance(v, bool | np.bool_) or not float(v).is_integer():
            raise TypeError(f"max_shifts must hold integers, got {value!r}")
        v = int(v)
        if v < 0 or 2 * v >= n:
            raise ValueError(
                f"max_shifts along {d!r} must be >= 0 and below half of its {n} samples, got {v}"
            )
        out.append(v)
    return tuple(out)


def _as_volume_movie(movie: Any, plane_dim: str) -> xr.DataArray:
    dims = (sc.DIM_TIME, plane_dim, sc.DIM_Y, sc.DIM_X)
    if not isinstance(movie, xr.DataArray):
        movie = np.asarray(movie) if not hasattr(movie, "shape") else movie
        if len(movie.shape) != 4:
            raise ValueError(f"a volumetric movie must be 4-D {dims}, got shape {tuple(movie.shape)}")
        movie = xr.DataArray(movie, dims=dims, name="movie")
    if set(movie.dims) != set(dims):
        raise ValueError(
            f"a volumetric movie must have dims {dims}, got {movie.dims}; name its plane dim with plane_dim=..."
        )
    movie = movie.transpose(*dims)
    if movie.dtype.kind not in "iuf":
        raise TypeError(f"movie must have an integer or floating dtype, got {movie.dtype}")
    if movie.sizes[sc.DIM_TIME] == 0:
        raise ValueError("movie has zero volumes: nothing to register")
    vd.check_finite(movie)
    return movie


def _check_unused(kwargs: dict) -> None:
    for name, neutral in _UNUSED.items():
        value = kwargs.get(name, neutral)
        if (value is not None) if neutral is None else (value != neutral):
            raise ValueError(
                f"{name}= is not available for 3-D registration of a volume; leave it at {neutral!r} "
                "or register each plane alone with planes='independent'"
            )
    defects = kwargs.get("defects", True)
    if not isinstance(defects, bool | np.bool_):
        raise ValueError(
            "a defects mask is not available for 3-D registration of a volume; pass True or False"
        )
    if kwargs.get("aliases"):
        raise TypeError(f"unexpected keyword arguments for a volume: {sorted(kwargs['aliases'])}")


def volume_flags(ds: xr.Dataset, max_shifts: tuple[int, ...], plane_dim: str) -> xr.Dataset:
    """The quality flags of :func:`xnormcorre.qc.flags.quality_flags` (``at_max_shift``,
    ``low_correlation``), ``at_max_shift`` also along the plane dim."""
    from ..qc.flags import quality_flags

    inplane = ds[[sc.SHIFTS, sc.CORRELATION]].sel({sc.DIM_AXIS: [sc.DIM_Y, sc.DIM_X]})
    flags = quality_flags(inplane, max_shifts=max_shifts[1:])
    at = flags["at_max_shift"]
    attrs = dict(at.attrs)
    attrs["comment"] = (
        f"1 where |shifts| >= max_shifts - 0.5 along {plane_dim}, y or x (max_shifts = {list(max_shifts)}); "
        "the true motion may exceed the search range"
    )
    if max_shifts[0] > 0:
        z = abs(ds[sc.SHIFTS].sel({sc.DIM_AXIS: plane_dim})) >= max_shifts[0] - 0.5
        at = (at.astype(bool) | z.drop_vars(sc.DIM_AXIS)).astype(np.int8)
    flags["at_max_shift"] = at.assign_attrs(attrs)
    return flags


def _register_block(block, index, *, template, params):
    """apply_ufunc kernel: volumes ``(T, D, H, W)`` -> ``(corrected, shifts, corr)``."""
    if block.shape[0] == 0:  # dask meta probing
        return (
            np.empty((0, *template.shape), np.float32),
            np.empty((0, 3), np.float32),
            np.empty((0,), np.float32),
        )
    vd.check_finite_block(block.reshape(block.shape[0], block.shape[1] * block.shape[2], -1))
    origin = int(np.asarray(index).reshape(-1)[0])
    shifts, corrected, corr = _vol.register_volumes(block, template, params, origin=origin)
    return corrected, shifts, corr


def _setup(movie: xr.DataArray, plane_dim: str, kwargs: dict) -> tuple:
    """``(dims3, shape, max_shifts, params, settings)`` of a volume run from the parameters
    of :func:`xnormcorre.rigid` (``settings``: the validated scalars, for the run's attrs)."""
    dims3 = (plane_dim, sc.DIM_Y, sc.DIM_X)
    shape = tuple(movie.sizes[d] for d in dims3)
    n = movie.sizes[sc.DIM_TIME]
    max_shifts = volume_max_shifts(kwargs.get("max_shifts"), shape, dims3)
    upsample_factor = vd.integer(kwargs.get("upsample_factor", 10), "upsample_factor")
    niter = kwargs.get("niter") if kwargs.get("niter") is not None else kwargs.get("niter_rig")
    niter = 1 if niter is None else vd.integer(niter, "niter", minimum=0)
    border = vd.check_border(kwargs.get("border", "copy"))
    batch_size = vd.integer(kwargs.get("batch_size"), "batch_size", allow_none=True)
    max_frames = vd.integer(kwargs.get("max_template_frames", 2000), "max_template_frames", allow_none=True)
    clip = vd.check_bool(kwargs.get("clip", True), "clip")
    phase_corr = vd.check_bool(kwargs.get("phase_corr", True), "phase_corr")
    smooth_sigma = float(kwargs.get("smooth_sigma", 1.15) or 0.0)
    if smooth_sigma < 0:
        raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
    taper = kwargs.get("taper")
    min_mov = kwargs.get("min_mov")
    if border == "min" and min_mov is None:
        head = movie.isel(time=slice(0, _MIN_MOV_VOLUMES))
        min_mov = float(np.asarray(head.min()))
    params = _vol.make_volume_params(
        shape,
        max_shifts=max_shifts,
        upsample_factor=upsample_factor,
        border=border,
        batch_size=batch_size,
        n_frames=n,
        fill_min=float(min_mov or 0.0),
        phase_corr=phase_corr,
        smooth_sigma=smooth_sigma,
        taper=taper,
        clip=clip,
    )
    settings = dict(
        upsample_factor=upsample_factor,
        niter=niter,
        max_template_frames=max_frames,
        min_mov=min_mov,
        border=border,
        clip=clip,
        phase_corr=phase_corr,
        smooth_sigma=smooth_sigma,
        taper=taper,
    )
    return dims3, shape, max_shifts, params, settings


def _estimate(movie: xr.DataArray, params, settings: dict) -> np.ndarray:
    frames = Frames(movie, cache_bytes=VOLUME_CACHE_BYTES)
    tmpl, _ = _vol.estimate_volume_template(
        frames, params, niter=settings["niter"], max_frames=settings["max_template_frames"]
    )
    return tmpl


def is_volume_movie(movie: Any, plane_dim: str = "z") -> bool:
    """Whether ``movie`` is a volumetric movie: a DataArray with ``plane_dim``, or a 4-D array."""
    if isinstance(movie, xr.DataArray):
        return plane_dim in movie.dims
    shape = getattr(movie, "shape", None)
    return shape is not None and len(shape) == 4


def volume_template(movie: Any, kwargs: dict, plane_dim: str = "z") -> xr.DataArray:
    """The template of a volumetric movie, as :func:`xnormcorre.rigid` estimates it for a
    volume (``planes="volume"``), with the parameters of
    :func:`xnormcorre.estimate_template` (its ``locals()``): ``(z, y, x)`` float32."""
    movie = _as_volume_movie(movie, plane_dim)
    for name, neutral in (("frames_per_split", 1000), ("num_splits_to_process", None)):
        if kwargs.get(name, neutral) != neutral:
            raise ValueError(
                f"{name}= is not available for the template of a volume (its volumes are sampled evenly, "
                f"up to max_template_frames); leave it at {neutral!r}"
            )
    if kwargs.get("aliases"):
        raise TypeError(f"unexpected keyword arguments for a volume: {sorted(kwargs['aliases'])}")
    dims3, _, _, params, settings = _setup(movie, plane_dim, kwargs)
    tmpl = _estimate(movie, params, settings)
    coords = {d: movie.coords[d] for d in dims3 if d in movie.coords}
    return xr.DataArray(
        tmpl,
        dims=dims3,
        coords=coords,
        name=sc.TEMPLATE,
        attrs=sc.template_attrs(movie.attrs.get("units", "a.u."), "estimated"),
    )


def rigid_volume(movie: Any, plane_dim: str, kwargs: dict) -> xr.Dataset:
    """3-D rigid registration of a volumetric movie with the parameters of
    :func:`xnormcorre.rigid` (its ``locals()``): see its ``planes`` parameter."""
    movie = _as_volume_movie(movie, plane_dim)
    _check_unused(kwargs)
    dims3, shape, max_shifts, params, settings = _setup(movie, plane_dim, kwargs)
    n = movie.sizes[sc.DIM_TIME]
    border = settings["border"]
    template = kwargs.get("template")
    if template is None:
        tmpl = _estimate(movie, params, settings)
        how = "estimated"
    else:
        tmpl = np.asarray(template.transpose(*dims3) if isinstance(template, xr.DataArray) else template)
        if tmpl.shape != shape:
            raise ValueError(f"template must have the volume's shape {shape} {dims3}, got {tmpl.shape}")
        if not np.isfinite(tmpl).all():
            raise ValueError("template holds NaN or Inf")
        tmpl = tmpl.astype(np.float32)
        how = "user"
    index = xr.Variable((sc.DIM_TIME,), np.arange(n, dtype=np.int64))
    data = movie.variable
    if data.chunks is not None:
        data = data.chunk({plane_dim: -1, sc.DIM_Y: -1, sc.DIM_X: -1})
        index = index.chunk({sc.DIM_TIME: data.chunks[0]})
    corrected, shifts, corr = xr.apply_ufunc(
        _register_block,
        data,
        index,
        input_core_dims=[list(dims3), []],
        output_core_dims=[list(dims3), [sc.DIM_AXIS], []],
        kwargs={"template": tmpl, "params": params},
        dask="parallelized",
        output_dtypes=[np.float32] * 3,
        dask_gufunc_kwargs={"output_sizes": {sc.DIM_AXIS: 3}},
    )
    units = movie.attrs.get("units", "a.u.")
    ds = xr.Dataset(coords=dict(movie.coords))
    ds = ds.assign_coords({sc.DIM_AXIS: (sc.DIM_AXIS, list(dims3), dict(sc.AXIS_ATTRS))})
    ds[sc.CORRECTED] = xr.DataArray(
        corrected,
        attrs=sc.corrected_attrs(units, "volume moved by -shifts (Fourier phase ramp); border: " + border),
    )
    ds[sc.TEMPLATE] = xr.DataArray(
        tmpl, dims=dims3, coords={d: movie.coords[d] for d in dims3 if d in movie.coords}
    ).variable
    ds[sc.TEMPLATE].attrs = sc.template_attrs(units, how)
    ds[sc.CORRELATION] = xr.DataArray(corr, attrs=dict(sc.CORRELATION_ATTRS))
    shift_attrs = dict(sc.SHIFT_ATTRS)
    shift_attrs["units"] = "pixel (planes along the plane dim)"
    ds[sc.SHIFTS] = xr.DataArray(shifts, attrs=shift_attrs)
    run_params: dict[str, Any] = {
        "max_shifts": list(max_shifts),
        **settings,
        "batch_size": params.batch_size,
        "refine_steps": params.refine_steps,
    }
    ds = ds.assign(volume_flags(ds, max_shifts, plane_dim))
    ds.attrs = sc.provenance_attrs(sc.RIGID, run_params, source_of(movie))
    ds.attrs["planes"] = "volume"
    ds.attrs["plane_dim"] = plane_dim
    ds.attrs["template_source"] = how
    return ds


def is_volume_shifts(shifts: Any) -> bool:
    """Whether ``shifts`` are 3-D rigid shifts of a volume (a result or ``(time, axis)`` of 3)."""
    if isinstance(shifts, xr.Dataset):
        return shifts.attrs.get("planes") == "volume" and sc.SHIFTS in shifts
    return (
        isinstance(shifts, xr.DataArray)
        and shifts.dims == (sc.DIM_TIME, sc.DIM_AXIS)
        and shifts.sizes[sc.DIM_AXIS] == 3
    )


def _apply_block(block, index, sh, *, border, fill_min, batch_size, clip):
    if block.shape[0] == 0:
        return np.empty(block.shape, np.float32)
    origin = int(np.asarray(index).reshape(-1)[0])
    return _vol.apply_volume_shifts(
        block, sh, border=border, fill_min=fill_min, batch_size=batch_size, clip=clip, origin=origin
    )


def apply_volume_shifts(movie: Any, shifts: Any, *, border: str, min_mov, batch_size, clip) -> xr.DataArray:
    """Move every volume of ``movie`` by ``-shifts`` (3-D rigid shifts ``(time, axis)``
    with ``axis`` = the movie's plane dim, y, x, or a result Dataset of a volume run),
    as the registration does: equal to its ``corrected`` for the same parameters."""
    attrs = dict(shifts.attrs) if isinstance(shifts, xr.Dataset) else {}
    sh = shifts[sc.SHIFTS] if isinstance(shifts, xr.Dataset) else shifts
    plane_dim = str(sh[sc.DIM_AXIS].values[0]) if sc.DIM_AXIS in sh.coords else "z"
    movie = _as_volume_movie(movie, plane_dim)
    if sh.sizes[sc.DIM_TIME] != movie.sizes[sc.DIM_TIME]:
        raise ValueError(
            f"shifts has {sh.sizes[sc.DIM_TIME]} volumes but the movie has {movie.sizes[sc.DIM_TIME]}"
        )
    border = vd.check_border(border)
    if min_mov is None:
        min_mov = attrs.get("min_mov")
    if border == "min" and min_mov is None:
        min_mov = float(np.asarray(movie.isel(time=slice(0, _MIN_MOV_VOLUMES)).min()))
    clip = vd.check_bool(attrs.get("clip", True) if clip is None else clip, "clip")
    bs = batch_size or attrs.get("batch_size") or 1
    dims3 = tuple(movie.dims[1:])
    data = movie.variable
    index = xr.Variable((sc.DIM_TIME,), np.arange(movie.sizes[sc.DIM_TIME], dtype=np.int64))
    shv = xr.Variable((sc.DIM_TIME, sc.DIM_AXIS), np.asarray(sh.values, np.float32))
    if data.chunks is not None:
        data = data.chunk({d: -1 for d in dims3})
        index = index.chunk({sc.DIM_TIME: data.chunks[0]})
        shv = shv.chunk({sc.DIM_TIME: data.chunks[0], sc.DIM_AXIS: -1})
    out = xr.apply_ufunc(
        _apply_block,
        data,
        index,
        shv,
        input_core_dims=[list(dims3), [], [sc.DIM_AXIS]],
        output_core_dims=[list(dims3)],
        kwargs=dict(border=border, fill_min=float(min_mov or 0.0), batch_size=int(bs), clip=clip),
        dask="parallelized",
        output_dtypes=[np.float32],
    )
    units = movie.attrs.get("units", "a.u.")
    comment = "volume moved by -shifts (Fourier phase ramp); border: " + border
    return xr.DataArray(out, coords=movie.coords, name=sc.CORRECTED, attrs=sc.corrected_attrs(units, comment))
