"""Labeled 3-D piecewise-rigid registration of volumetric movies ``(time, z, y, x)``.

:func:`xnormcorre.pwrigid` on a movie with a plane dim (``planes=None`` or ``"volume"``)
lands here: each volume is split into overlapping 3-D patches, each registered to the
template within ``max_deviation_rigid`` of the volume's rigid shift
(:mod:`xnormcorre.engine.volume_pw`), and resampled along the interpolated shift field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine import volume_pw as _vpw
from ..stacklevel import warn
from .grid import patch_coords
from .volume import (
    SHIFT_UNITS,
    as_volume_movie,
    check_unused,
    pick_template,
    reference_volumes,
    registration_input,
    volume_dataset,
    volume_flags,
    volume_frames,
    volume_params_kw,
    volume_result,
    volume_setup,
)
from .volume_move import PW_COMMENT, block_origin, move_volumes

__all__ = ["pwrigid_volume", "volume_grid", "volume_result_flags"]

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
    rigid, pshifts, corrected, corr = _vpw.register_volumes_pw(
        block, template, params, origin=block_origin(index)
    )
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
    movie = as_volume_movie(movie, plane_dim)
    check_unused(kwargs)
    grid = vd.integer(kwargs.get("upsample_factor_grid", 4), "upsample_factor_grid", minimum=1)
    if grid != 4:
        warn(
            f"upsample_factor_grid={grid} has no effect: the patch shifts are interpolated to a dense "
            "3-D displacement field, the limit of an infinitely upsampled patch grid; leave it at its default",
            UserWarning,
        )
    for name, neutral in _UNUSED_PW.items():
        if kwargs.get(name, neutral) != neutral:
            raise ValueError(
                f"{name}= is not available for 3-D registration of a volume; leave it at {neutral!r}"
            )
    dims3, shape, max_shifts, rparams, settings = volume_setup(movie, plane_dim, kwargs)
    ref = reference_volumes(movie, kwargs, plane_dim)
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
        **volume_params_kw(settings, max_shifts),
    )

    def estimate():
        return _vpw.estimate_volume_pw_template(
            volume_frames(est),
            params,
            niter_rig=settings["niter"],
            niter_els=niter_els,
            max_frames=settings["max_template_frames"],
        )

    tmpl, sample_shifts, how = pick_template(kwargs.get("template"), shape, dims3, estimate)
    data, index = registration_input(est, dims3)
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
        corrected = move_volumes(movie, pshifts, tuple(params.mats), **kw)
    coords = patch_coords(shape, dims3, strides, overlaps)
    comment = PW_COMMENT + settings["border"]
    ds = volume_dataset(movie, dims3, coords, corrected, comment, tmpl, how, corr)
    ds[sc.SHIFTS] = xr.DataArray(pshifts, attrs={**sc.PW_SHIFT_ATTRS, "units": SHIFT_UNITS})
    ds[sc.RIGID_SHIFTS] = xr.DataArray(rigid, attrs={**sc.RIGID_SHIFTS_ATTRS, "units": SHIFT_UNITS})
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
    return volume_result(ds, sc.PWRIGID, run_params, movie, ref, plane_dim, how, max_shifts, sample_shifts)
