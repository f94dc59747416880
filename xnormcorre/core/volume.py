"""Labeled 3-D rigid registration of volumetric movies ``(time, z, y, x)``.

:func:`xnormcorre.rigid` on a movie with a plane dim (``planes=None`` or ``"volume"``)
lands here: each volume is registered to a volume template with a 3-D rigid shift
``(z, y, x)`` (:mod:`xnormcorre.engine.volume`), as NoRMCorre and CaImAn do for a 4-D
movie.  Multi-plane rigs whose planes are not a contiguous volume use
``planes="independent"`` (:mod:`xnormcorre.core.planes`).

It also holds what every volume run shares: the checks of the movie and its parameters, the
template, the result Dataset and its verdict.  Piecewise-rigid registration of a volume is
:mod:`xnormcorre.core.volume_pw`; volumes moved by their shifts, :mod:`xnormcorre.core.volume_move`
and :mod:`xnormcorre.core.volume_apply`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine import volume as _vol
from .movie import Frames, estimated_on, source_of
from .volume_move import RIGID_COMMENT, block_origin, move_volumes

__all__ = [
    "as_volume_movie",
    "check_unused",
    "is_volume_movie",
    "pick_template",
    "reference_volumes",
    "registration_input",
    "rigid_volume",
    "volume_dataset",
    "volume_flags",
    "volume_frames",
    "volume_max_shifts",
    "volume_params_kw",
    "volume_result",
    "volume_setup",
    "volume_template",
]

#: Volumes whose minimum is the default ``min_mov`` (as for frames).
MIN_MOV_VOLUMES = 400

#: ``units`` of the shifts of a volume run.
SHIFT_UNITS = "pixel (planes along the plane dim)"

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


def as_volume_movie(movie: Any, plane_dim: str) -> xr.DataArray:
    """``movie`` as a volumetric DataArray ``(time, plane_dim, y, x)``, checked: integer or
    floating dtype, at least one volume, finite."""
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


def check_unused(kwargs: dict) -> None:
    """Refuse the parameters of :func:`xnormcorre.rigid` a volume run does not use (its
    ``locals()``), each with the value to leave it at."""
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
    shifts, corrected, corr = _vol.register_volumes(block, template, params, origin=block_origin(index))
    return corrected, shifts, corr


def volume_setup(movie: xr.DataArray, plane_dim: str, kwargs: dict) -> tuple:
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
        head = movie.isel(time=slice(0, MIN_MOV_VOLUMES))
        min_mov = float(np.asarray(head.min()))
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
    params = _vol.make_volume_params(
        shape, batch_size=batch_size, n_frames=n, **volume_params_kw(settings, max_shifts)
    )
    return dims3, shape, max_shifts, params, settings


def volume_params_kw(settings: dict, max_shifts: tuple[int, ...]) -> dict:
    """The keyword arguments of :func:`xnormcorre.engine.volume.make_volume_params` (and
    of the rigid step of :func:`xnormcorre.engine.volume_pw.make_volume_pw_params`) from a
    volume run's ``settings`` (:func:`volume_setup`) and ``max_shifts``."""
    return dict(
        max_shifts=max_shifts,
        upsample_factor=settings["upsample_factor"],
        border=settings["border"],
        fill_min=float(settings["min_mov"] or 0.0),
        phase_corr=settings["phase_corr"],
        smooth_sigma=settings["smooth_sigma"],
        taper=settings["taper"],
        clip=settings["clip"],
    )


def _estimate(movie: xr.DataArray, params, settings: dict, with_shifts: bool = False):
    """The template of a volume run (and, ``with_shifts``, the shifts of its last pass)."""
    frames = volume_frames(movie)
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


def volume_frames(movie: xr.DataArray) -> Frames:
    """The volumes of ``movie`` as the template passes read them: whole time chunks, at most
    :data:`VOLUME_CACHE_BYTES` of them kept."""
    return Frames(movie, cache_bytes=VOLUME_CACHE_BYTES)


def pick_template(template: Any, shape: tuple[int, ...], dims3: tuple[str, ...], estimate) -> tuple:
    """``(template, sample_shifts, template_source)`` of a volume run: the user's ``template``,
    checked, or (``template=None``) ``estimate()``'s ``(template, sample_shifts)``."""
    if template is None:
        tmpl, sample_shifts = estimate()
        return tmpl, sample_shifts, "estimated"
    return _user_template(template, shape, dims3), None, "user"


def registration_input(est: xr.DataArray, dims3: tuple[str, ...]) -> tuple[xr.Variable, xr.Variable]:
    """``(volumes, time index)`` of the volumes to register, as the ``apply_ufunc`` kernels take
    them: whole volumes, one dask block per time chunk on lazy input."""
    index = xr.Variable((sc.DIM_TIME,), np.arange(est.sizes[sc.DIM_TIME], dtype=np.int64))
    data = est.variable
    if data.chunks is not None:
        data = data.chunk(dict.fromkeys(dims3, -1))
        index = index.chunk({sc.DIM_TIME: data.chunks[0]})
    return data, index


def volume_dataset(
    movie: xr.DataArray, dims3: tuple[str, ...], coords: dict, corrected, comment: str, tmpl, how: str, corr
) -> xr.Dataset:
    """The result Dataset of a volume run up to its shifts: the movie's and the ``axis``
    coordinates (then ``coords``), ``corrected`` (``comment``), ``template``, ``correlation``."""
    units = movie.attrs.get("units", "a.u.")
    ds = xr.Dataset(coords=dict(movie.coords))
    ds = ds.assign_coords({sc.DIM_AXIS: (sc.DIM_AXIS, list(dims3), dict(sc.AXIS_ATTRS))})
    ds = ds.assign_coords(coords)
    ds[sc.CORRECTED] = xr.DataArray(corrected, attrs=sc.corrected_attrs(units, comment))
    ds[sc.TEMPLATE] = xr.DataArray(
        tmpl, dims=dims3, coords={d: movie.coords[d] for d in dims3 if d in movie.coords}
    ).variable
    ds[sc.TEMPLATE].attrs = sc.template_attrs(units, how)
    ds[sc.CORRELATION] = xr.DataArray(corr, attrs=dict(sc.CORRELATION_ATTRS))
    return ds


def volume_result(
    ds: xr.Dataset,
    kind: str,
    run_params: dict,
    movie: xr.DataArray,
    ref: xr.DataArray | None,
    plane_dim: str,
    how: str,
    max_shifts: tuple[int, ...],
    sample_shifts,
) -> xr.Dataset:
    """``ds`` (shifts and flags assigned) with the attributes of a volume run (``kind``:
    :data:`xnormcorre.schema.RIGID` or ``PWRIGID``; ``how``: the template source) and its verdict."""
    ds.attrs = sc.provenance_attrs(kind, run_params, source_of(movie))
    ds.attrs["planes"] = "volume"
    ds.attrs["plane_dim"] = plane_dim
    ds.attrs["template_source"] = how
    ds.attrs["shifts_estimated_on"] = estimated_on(ref, movie)
    return _conclude(ds, max_shifts, sample_shifts)


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
    movie = as_volume_movie(movie, plane_dim)
    for name, neutral in (("frames_per_split", 1000), ("num_splits_to_process", None)):
        if kwargs.get(name, neutral) != neutral:
            raise ValueError(
                f"{name}= is not available for the template of a volume (its volumes are sampled evenly, "
                f"up to max_template_frames); leave it at {neutral!r}"
            )
    if kwargs.get("aliases"):
        raise TypeError(f"unexpected keyword arguments for a volume: {sorted(kwargs['aliases'])}")
    dims3, _, _, params, settings = volume_setup(movie, plane_dim, kwargs)
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
    movie = as_volume_movie(movie, plane_dim)
    check_unused(kwargs)
    dims3, shape, max_shifts, params, settings = volume_setup(movie, plane_dim, kwargs)
    ref = reference_volumes(movie, kwargs, plane_dim)
    est = movie if ref is None else ref
    border = settings["border"]
    tmpl, sample_shifts, how = pick_template(
        kwargs.get("template"), shape, dims3, lambda: _estimate(est, params, settings, with_shifts=True)
    )
    data, index = registration_input(est, dims3)
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
        corrected = move_volumes(movie, shifts, None, **kw)
    ds = volume_dataset(movie, dims3, {}, corrected, RIGID_COMMENT + border, tmpl, how, corr)
    ds[sc.SHIFTS] = xr.DataArray(shifts, attrs={**sc.SHIFT_ATTRS, "units": SHIFT_UNITS})
    run_params: dict[str, Any] = {
        "max_shifts": list(max_shifts),
        **settings,
        "batch_size": params.batch_size,
        "refine_steps": params.refine_steps,
    }
    ds = ds.assign(volume_flags(ds, max_shifts, plane_dim))
    return volume_result(ds, sc.RIGID, run_params, movie, ref, plane_dim, how, max_shifts, sample_shifts)


def reference_volumes(movie: xr.DataArray, kwargs: dict, plane_dim: str) -> xr.DataArray | None:
    """The ``reference`` volumes to estimate on (same sizes as ``movie``), or None; lazy
    like the movie (the same time chunks)."""
    ref = kwargs.get("reference")
    if ref is None:
        return None
    ref = as_volume_movie(ref, plane_dim)
    if dict(ref.sizes) != dict(movie.sizes):
        raise ValueError(f"reference must have the movie's sizes {dict(movie.sizes)}, got {dict(ref.sizes)}")
    if movie.chunks is not None:
        ref = ref.chunk({sc.DIM_TIME: movie.chunks[0]})
    return ref
