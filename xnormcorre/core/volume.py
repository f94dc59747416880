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
from ..engine import volume_pw as _vpw
from ..engine.patches import interp_matrix, patch_axis
from .movie import Frames, estimated_on, source_of

__all__ = [
    "is_volume_movie",
    "pwrigid_volume",
    "rigid_volume",
    "volume_flags",
    "volume_grid",
    "volume_max_shifts",
    "volume_result_flags",
    "volume_template",
]

#: Volumes whose minimum is the default ``min_mov`` (as for frames).
_MIN_MOV_VOLUMES = 400

#: Bytes of whole time chunks the template passes keep (a lazy movie's chunks are read in
#: order, each once per pass: a few chunks suffice; memory stays O(chunk)).
VOLUME_CACHE_BYTES = 2**26

#: rigid() parameters a volume run does not use, with their neutral values.
_UNUSED = {
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
    inplane.attrs = {}  # rigid in-plane shifts: no patch parameters
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


def _estimate(movie: xr.DataArray, params, settings: dict, with_shifts: bool = False):
    """The template of a volume run (and, ``with_shifts``, the shifts of its last pass)."""
    frames = Frames(movie, cache_bytes=VOLUME_CACHE_BYTES)
    tmpl, shifts = _vol.estimate_volume_template(
        frames, params, niter=settings["niter"], max_frames=settings["max_template_frames"]
    )
    return (tmpl, shifts) if with_shifts else tmpl


def _conclude(ds: xr.Dataset, max_shifts: tuple[int, ...], sample_shifts) -> xr.Dataset:
    """The verdict of a volume run (``qc_verdict``, ``qc_warnings``; a
    :class:`xnormcorre.qc.diagnose.RegistrationWarning` per suspect finding): motion at
    the search bound along z, y or x, many low-correlation volumes, many patches at the
    edge of their search window -- the checks of a run on frames, less the sensor defects
    (not searched in volumes: no ``defect_mask``)."""
    from ..engine.config import Calibration
    from ..engine.noise import UNIFORM
    from ..qc.diagnose import conclude

    out = conclude(ds, Calibration(None, UNIFORM, 1.0), sample_shifts, max_shifts)
    out = out.drop_vars(sc.DEFECT_MASK)
    del out.attrs["n_defects"]
    return out


def _user_template(template: Any, shape: tuple[int, ...], dims3: tuple[str, ...]) -> np.ndarray:
    """A user's volume template, checked: the volume's shape, finite; float32."""
    tmpl = np.asarray(template.transpose(*dims3) if isinstance(template, xr.DataArray) else template)
    if tmpl.shape != shape:
        raise ValueError(f"template must have the volume's shape {shape} {dims3}, got {tmpl.shape}")
    if not np.isfinite(tmpl).all():
        raise ValueError("template holds NaN or Inf")
    return tmpl.astype(np.float32)


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
    ref = _reference(movie, kwargs, plane_dim)
    est = movie if ref is None else ref
    n = movie.sizes[sc.DIM_TIME]
    border = settings["border"]
    template = kwargs.get("template")
    sample_shifts = None
    if template is None:
        tmpl, sample_shifts = _estimate(est, params, settings, with_shifts=True)
        how = "estimated"
    else:
        tmpl = _user_template(template, shape, dims3)
        how = "user"
    index = xr.Variable((sc.DIM_TIME,), np.arange(n, dtype=np.int64))
    data = est.variable
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
    if ref is not None:  # the shifts estimated on the reference, applied to the movie
        kw = dict(border=border, fill_min=params.fill_min, batch_size=params.batch_size, clip=params.clip)
        corrected = _move_lazily(movie, shifts, None, **kw)
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
    ds.attrs["shifts_estimated_on"] = estimated_on(ref, movie)
    return _conclude(ds, max_shifts, sample_shifts)


def _is_volume_pw(da: xr.DataArray) -> bool:
    """Whether ``da`` are piecewise-rigid shifts of a volume ``(time, patch_<z>, patch_y, patch_x, axis)``."""
    dims = da.dims
    return (
        len(dims) == 5
        and dims[0] == sc.DIM_TIME
        and dims[-1] == sc.DIM_AXIS
        and dims[2:4] == sc.PATCH_DIMS
        and str(dims[1]).startswith("patch_")
        and da.sizes[sc.DIM_AXIS] == 3
    )


def is_volume_shifts(shifts: Any) -> bool:
    """Whether ``shifts`` are 3-D shifts of a volume: a result of a volume run, rigid
    ``(time, axis)`` shifts of 3, or piecewise-rigid ``(time, patch_z, patch_y, patch_x, axis)``."""
    if isinstance(shifts, xr.Dataset):
        return shifts.attrs.get("planes") == "volume" and sc.SHIFTS in shifts
    return isinstance(shifts, xr.DataArray) and (
        (shifts.dims == (sc.DIM_TIME, sc.DIM_AXIS) and shifts.sizes[sc.DIM_AXIS] == 3)
        or _is_volume_pw(shifts)
    )


def _pw_matrices(sh: xr.DataArray, movie: xr.DataArray, dims3: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Interpolation matrices from the patch centres of volume pw shifts (their
    ``patch_*`` coordinates, checked against the movie's size) to the movie's samples."""
    mats = []
    for d, pd in zip(dims3, sh.dims[1:4], strict=True):
        if pd not in sh.coords:
            raise ValueError(f"piecewise-rigid shifts need their patch centres as the {pd!r} coordinate")
        centres = np.asarray(sh[pd].values, np.float64)
        stop = sh.coords.get(f"{pd}_stop")
        n = movie.sizes[d]
        if (stop is not None and int(np.max(stop)) != n) or centres.max() > n - 1:
            raise ValueError(
                f"the shifts' patches along {d!r} end at {int(np.max(stop)) if stop is not None else '?'}, "
                f"but the movie has {n} samples along {d!r}: these shifts belong to another movie"
            )
        mats.append(interp_matrix(n, centres))
    return tuple(mats)


def _apply_block(block, index, sh, *, border, fill_min, batch_size, clip):
    if block.shape[0] == 0:
        return np.empty(block.shape, np.float32)
    origin = int(np.asarray(index).reshape(-1)[0])
    return _vol.apply_volume_shifts(
        block, sh, border=border, fill_min=fill_min, batch_size=batch_size, clip=clip, origin=origin
    )


def _move_lazily(movie: xr.DataArray, shv: xr.Variable, mats, **kwargs) -> xr.Variable:
    """``movie`` moved by the shifts ``shv`` (rigid ``(time, axis)``, or patch shifts with
    the interpolation matrices ``mats``), chunk by chunk on dask input (or dask shifts)."""
    dims3 = tuple(movie.dims[1:])
    data = movie.variable
    index = xr.Variable((sc.DIM_TIME,), np.arange(movie.sizes[sc.DIM_TIME], dtype=np.int64))
    core = list(shv.dims[1:])
    if data.chunks is not None or shv.chunks is not None:
        chunks = data.chunks[0] if data.chunks is not None else shv.chunks[0]
        data = data.chunk({sc.DIM_TIME: chunks, **{d: -1 for d in dims3}})
        index = index.chunk({sc.DIM_TIME: chunks})
        shv = shv.chunk({sc.DIM_TIME: chunks, **{d: -1 for d in core}})
    if mats is not None:
        kwargs["mats"] = mats
    return xr.apply_ufunc(
        _apply_block if mats is None else _apply_pw_block,
        data,
        index,
        shv,
        input_core_dims=[list(dims3), [], core],
        output_core_dims=[list(dims3)],
        kwargs=kwargs,
        dask="parallelized",
        output_dtypes=[np.float32],
    )


def _reference(movie: xr.DataArray, kwargs: dict, plane_dim: str) -> xr.DataArray | None:
    """The ``reference`` volumes to estimate on (same sizes as ``movie``), or None; lazy
    like the movie (the same time chunks)."""
    ref = kwargs.get("reference")
    if ref is None:
        return None
    ref = _as_volume_movie(ref, plane_dim)
    if dict(ref.sizes) != dict(movie.sizes):
        raise ValueError(f"reference must have the movie's sizes {dict(movie.sizes)}, got {dict(ref.sizes)}")
    if movie.chunks is not None:
        ref = ref.chunk({sc.DIM_TIME: movie.chunks[0]})
    return ref


def apply_volume_shifts(movie: Any, shifts: Any, *, border: str, min_mov, batch_size, clip) -> xr.DataArray:
    """Move every volume of ``movie`` by ``-shifts`` (3-D rigid shifts ``(time, axis)``
    with ``axis`` = the movie's plane dim, y, x, or a result Dataset of a volume run),
    as the registration does: equal to its ``corrected`` for the same parameters."""
    attrs = dict(shifts.attrs) if isinstance(shifts, xr.Dataset) else {}
    sh = shifts[sc.SHIFTS] if isinstance(shifts, xr.Dataset) else shifts
    pw = _is_volume_pw(sh)
    if pw:
        plane_dim = str(sh.dims[1])[len("patch_") :]
    else:
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
    shv = xr.Variable(sh.dims, np.asarray(sh.values, np.float32))
    mats = _pw_matrices(sh, movie, dims3) if pw else None
    out = _move_lazily(
        movie, shv, mats, border=border, fill_min=float(min_mov or 0.0), batch_size=int(bs), clip=clip
    )
    units = movie.attrs.get("units", "a.u.")
    comment = (_PW_COMMENT if pw else "volume moved by -shifts (Fourier phase ramp); border: ") + border
    return xr.DataArray(out, coords=movie.coords, name=sc.CORRECTED, attrs=sc.corrected_attrs(units, comment))


# ----------------------------------------------------------------------- piecewise rigid
#: pwrigid() parameters a volume run does not use, with their neutral values.
_UNUSED_PW = {"num_splits_to_process_els": None}


def _triple(value: Any, name: str, dims: tuple[str, ...], minimum: int, example: str) -> tuple[int, ...]:
    """An int (the same on every axis) or 3 integers ``>= minimum`` (plane dim, y, x)."""
    vals = (value,) * 3 if np.isscalar(value) else tuple(value) if value is not None else ()
    if len(vals) != 3:
        raise ValueError(
            f"{name} must be an integer or have 3 entries {dims} for 3-D piecewise-rigid registration "
            f"of a volume, got {value!r}; e.g. {name}={example}"
        )
    out = []
    for v in vals:
        if isinstance(v, bool | np.bool_) or not float(v).is_integer():
            raise TypeError(f"{name} must hold integers, got {value!r}")
        if int(v) < minimum:
            raise ValueError(f"{name} must be >= {minimum} along each of {dims}, got {value!r}")
        out.append(int(v))
    return tuple(out)


def volume_grid(
    strides: Any, overlaps: Any, max_deviation_rigid: Any, shape: tuple[int, ...], dims: tuple[str, ...]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The patch grid of a volume, validated: ``(strides, overlaps, max_deviation_rigid)``,
    3 integers each (plane dim, y, x; an integer is the same on every axis); the patch size
    ``strides + overlaps`` at most the volume's size along each axis, ``0 <= overlaps <
    strides`` and ``max_deviation_rigid + 1`` below half the patch size.

    Examples
    --------
    >>> volume_grid((4, 24, 24), (2, 8, 8), (1, 2, 2), (8, 48, 48), ("z", "y", "x"))
    ((4, 24, 24), (2, 8, 8), (1, 2, 2))
    """
    st = _triple(strides, "strides", dims, 1, "(4, 48, 48)")
    ov = _triple(overlaps, "overlaps", dims, 0, "(2, 16, 16)")
    md = _triple(max_deviation_rigid, "max_deviation_rigid", dims, 0, "(1, 3, 3)")
    for s, o, d, n, dim in zip(st, ov, md, shape, dims, strict=True):
        unit = "planes" if dim not in (sc.DIM_Y, sc.DIM_X) else "px"
        if o >= s:
            raise ValueError(f"overlaps must be smaller than strides along {dim!r}, got {o} >= {s}")
        if s + o > n:
            raise ValueError(
                f"patch size strides + overlaps = {s + o} along {dim!r} is larger than the volume "
                f"({n} {unit}); strides + overlaps must be at most {n} along {dim!r}"
            )
        if 2 * (d + 1) >= s + o:
            raise ValueError(
                f"max_deviation_rigid + 1 must be smaller than half the patch size along {dim!r} "
                f"({(s + o) / 2:g} {unit} for strides + overlaps = {s + o}); got max_deviation_rigid={d}"
            )
    return st, ov, md


def _patch_coords(shape: tuple[int, ...], dims: tuple[str, ...], strides, overlaps) -> dict:
    coords: dict[str, Any] = {}
    for dim, n, s, o in zip(dims, shape, strides, overlaps, strict=True):
        geo = patch_axis(n, s, o)
        attrs = sc.patch_coord_attrs(dim)
        pd = f"patch_{dim}"
        coords[pd] = (pd, geo.centres, attrs["centre"])
        coords[f"{pd}_start"] = (pd, geo.starts, attrs["start"])
        coords[f"{pd}_stop"] = (pd, geo.stops, attrs["stop"])
    return coords


def volume_result_flags(ds: xr.Dataset) -> xr.Dataset:
    """The quality flags of a volume result (rigid: :func:`volume_flags`; piecewise rigid:
    also ``patch_at_max_deviation``), from its shifts, correlation and attributes."""
    plane_dim = ds.attrs["plane_dim"]
    max_shifts = tuple(int(v) for v in ds.attrs["max_shifts"])
    if sc.RIGID_SHIFTS in ds:
        return _pw_flags(ds, max_shifts, tuple(int(v) for v in ds.attrs["max_deviation_rigid"]), plane_dim)
    return volume_flags(ds, max_shifts, plane_dim)


def _register_pw_block(block, index, *, template, params):
    """apply_ufunc kernel: volumes ``(T, D, H, W)`` -> ``(corrected, patch shifts, rigid shifts, corr)``."""
    grid = params.grid_shape
    if block.shape[0] == 0:  # dask meta probing
        return (
            np.empty((0, *template.shape), np.float32),
            np.empty((0, *grid, 3), np.float32),
            np.empty((0, 3), np.float32),
            np.empty((0,), np.float32),
        )
    vd.check_finite_block(block.reshape(block.shape[0], block.shape[1] * block.shape[2], -1))
    origin = int(np.asarray(index).reshape(-1)[0])
    rigid, pshifts, corrected, corr = _vpw.register_volumes_pw(block, template, params, origin=origin)
    return corrected, pshifts, rigid, corr


def _pw_flags(ds: xr.Dataset, max_shifts, max_dev, plane_dim: str) -> xr.Dataset:
    """:func:`volume_flags` of the rigid shifts and ``patch_at_max_deviation (time, patch...)``:
    ``|patch shift - rigid shift| >= max_deviation_rigid - 0.05`` along an axis (axes with
    ``max_deviation_rigid = 0`` excepted)."""
    rigid = ds[[sc.RIGID_SHIFTS, sc.CORRELATION]].rename({sc.RIGID_SHIFTS: sc.SHIFTS})
    flags = volume_flags(rigid, max_shifts, plane_dim)
    dev = abs(ds[sc.SHIFTS] - ds[sc.RIGID_SHIFTS])
    lim = xr.DataArray(
        np.asarray(max_dev, np.float32), dims=(sc.DIM_AXIS,), coords={sc.DIM_AXIS: ds[sc.DIM_AXIS]}
    )
    hit = ((dev >= lim - 0.05) & (lim > 0)).any(sc.DIM_AXIS)
    flags["patch_at_max_deviation"] = hit.astype(np.int8).assign_attrs(
        long_name="patch shift at the bound of its search window around the rigid shift",
        units="1",
        flag_values=[0, 1],
        flag_meanings="ok at_max_deviation",
        comment=f"1 where |shifts - rigid_shifts| >= max_deviation_rigid - 0.05 along an axis "
        f"(max_deviation_rigid = {list(max_dev)}); the local motion may exceed the search window",
    )
    return flags


def pwrigid_volume(movie: Any, plane_dim: str, kwargs: dict) -> xr.Dataset:
    """3-D piecewise-rigid registration of a volumetric movie with the parameters of
    :func:`xnormcorre.pwrigid` (its ``locals()``): see its ``planes`` parameter."""
    movie = _as_volume_movie(movie, plane_dim)
    _check_unused(kwargs)
    for name, neutral in _UNUSED_PW.items():
        if kwargs.get(name, neutral) != neutral:
            raise ValueError(
                f"{name}= is not available for 3-D registration of a volume; leave it at {neutral!r}"
            )
    dims3, shape, max_shifts, rparams, settings = _setup(movie, plane_dim, kwargs)
    ref = _reference(movie, kwargs, plane_dim)
    est = movie if ref is None else ref
    strides, overlaps, max_dev = volume_grid(
        kwargs.get("strides"), kwargs.get("overlaps"), kwargs.get("max_deviation_rigid"), shape, dims3
    )
    refine = kwargs.get("refine_patches")
    refine = True if refine is None else vd.check_bool(refine, "refine_patches")
    niter_els = vd.integer(kwargs.get("niter_els", 1), "niter_els", minimum=0)
    params = _vpw.make_volume_pw_params(
        shape,
        strides=strides,
        overlaps=overlaps,
        max_deviation_rigid=max_dev,
        refine_patches=refine,
        batch_size=rparams.batch_size,
        n_frames=movie.sizes[sc.DIM_TIME],
        max_shifts=max_shifts,
        upsample_factor=settings["upsample_factor"],
        border=settings["border"],
        fill_min=rparams.fill_min,
        phase_corr=settings["phase_corr"],
        smooth_sigma=settings["smooth_sigma"],
        taper=settings["taper"],
        clip=settings["clip"],
    )
    n = movie.sizes[sc.DIM_TIME]
    template = kwargs.get("template")
    sample_shifts = None
    if template is None:
        frames = Frames(est, cache_bytes=VOLUME_CACHE_BYTES)
        tmpl, sample_shifts = _vpw.estimate_volume_pw_template(
            frames,
            params,
            niter_rig=settings["niter"],
            niter_els=niter_els,
            max_frames=settings["max_template_frames"],
        )
        how = "estimated"
    else:
        tmpl = _user_template(template, shape, dims3)
        how = "user"
    index = xr.Variable((sc.DIM_TIME,), np.arange(n, dtype=np.int64))
    data = est.variable
    if data.chunks is not None:
        data = data.chunk({plane_dim: -1, sc.DIM_Y: -1, sc.DIM_X: -1})
        index = index.chunk({sc.DIM_TIME: data.chunks[0]})
    pdims = [f"patch_{d}" for d in dims3]
    grid = params.grid_shape
    corrected, pshifts, rigid, corr = xr.apply_ufunc(
        _register_pw_block,
        data,
        index,
        input_core_dims=[list(dims3), []],
        output_core_dims=[list(dims3), [*pdims, sc.DIM_AXIS], [sc.DIM_AXIS], []],
        kwargs={"template": tmpl, "params": params},
        dask="parallelized",
        output_dtypes=[np.float32] * 4,
        dask_gufunc_kwargs={"output_sizes": {**dict(zip(pdims, grid, strict=True)), sc.DIM_AXIS: 3}},
    )
    if ref is not None:  # the shifts estimated on the reference, applied to the movie
        rp = params.rigid
        kw = dict(border=rp.border, fill_min=rp.fill_min, batch_size=params.batch_size, clip=rp.clip)
        corrected = _move_lazily(movie, pshifts, tuple(params.mats), **kw)
    units = movie.attrs.get("units", "a.u.")
    ds = xr.Dataset(coords=dict(movie.coords))
    ds = ds.assign_coords({sc.DIM_AXIS: (sc.DIM_AXIS, list(dims3), dict(sc.AXIS_ATTRS))})
    ds = ds.assign_coords(_patch_coords(shape, dims3, strides, overlaps))
    ds[sc.CORRECTED] = xr.DataArray(
        corrected, attrs=sc.corrected_attrs(units, _PW_COMMENT + settings["border"])
    )
    ds[sc.TEMPLATE] = xr.DataArray(
        tmpl, dims=dims3, coords={d: movie.coords[d] for d in dims3 if d in movie.coords}
    ).variable
    ds[sc.TEMPLATE].attrs = sc.template_attrs(units, how)
    ds[sc.CORRELATION] = xr.DataArray(corr, attrs=dict(sc.CORRELATION_ATTRS))
    unit = "pixel (planes along the plane dim)"
    ds[sc.SHIFTS] = xr.DataArray(pshifts, attrs={**sc.PW_SHIFT_ATTRS, "units": unit})
    ds[sc.RIGID_SHIFTS] = xr.DataArray(rigid, attrs={**sc.RIGID_SHIFTS_ATTRS, "units": unit})
    run_params: dict[str, Any] = {
        "max_shifts": list(max_shifts),
        "strides": list(strides),
        "overlaps": list(overlaps),
        "max_deviation_rigid": list(max_dev),
        "refine_patches": refine,
        "niter_els": niter_els,
        **settings,
        "batch_size": params.batch_size,
    }
    ds = ds.assign(_pw_flags(ds, max_shifts, max_dev, plane_dim))
    ds.attrs = sc.provenance_attrs(sc.PWRIGID, run_params, source_of(movie))
    ds.attrs["planes"] = "volume"
    ds.attrs["plane_dim"] = plane_dim
    ds.attrs["template_source"] = how
    ds.attrs["shifts_estimated_on"] = estimated_on(ref, movie)
    return _conclude(ds, max_shifts, sample_shifts)


_PW_COMMENT = (
    "volume resampled (Keys cubic) at r + field(r), the field interpolated linearly between patch "
    "centres along each axis; border: "
)


def _apply_pw_block(block, index, sh, *, mats, border, fill_min, batch_size, clip):
    if block.shape[0] == 0:
        return np.empty(block.shape, np.float32)
    origin = int(np.asarray(index).reshape(-1)[0])
    return _vpw.apply_volume_pw_shifts(
        block, sh, mats, border=border, fill_min=fill_min, batch_size=batch_size, clip=clip, origin=origin
    )
