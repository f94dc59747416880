"""The piecewise-rigid patch grid as labeled coordinates (geometry from
:mod:`xnormcorre.engine.patches`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema as sc
from .. import validate as vd
from ..engine.patches import patch_axis

__all__ = ["get_patch_start_and_end_coords", "patch_coords", "patch_grid"]


def patch_coords(shape: tuple[int, ...], dims: tuple[str, ...], strides, overlaps) -> dict[str, Any]:
    """The coordinates of a patch grid along ``dims`` (sizes ``shape``, validated
    ``strides`` and ``overlaps`` per dim): ``patch_<dim>`` (patch centres) and
    ``patch_<dim>_start`` / ``patch_<dim>_stop``, as ``{name: (dim, values, attrs)}``.

    Examples
    --------
    >>> patch_coords((8, 48), ("z", "y"), (4, 24), (2, 8))["patch_z_stop"][1].tolist()
    [6, 8]
    """
    coords: dict[str, Any] = {}
    for dim, n, s, o in zip(dims, shape, strides, overlaps, strict=True):
        geo = patch_axis(n, s, o)
        attrs = sc.patch_coord_attrs(dim)
        pd = f"patch_{dim}"
        coords[pd] = (pd, geo.centres, attrs["centre"])
        coords[f"{pd}_start"] = (pd, geo.starts, attrs["start"])
        coords[f"{pd}_stop"] = (pd, geo.stops, attrs["stop"])
    return coords


def patch_grid(
    shape: tuple[int, int], strides: int | tuple[int, int], overlaps: int | tuple[int, int]
) -> xr.Dataset:
    """The piecewise-rigid patch grid of a frame, as labeled coordinates.

    Patch size is ``strides + overlaps`` (CaImAn/jnormcorre semantics).  Along each axis
    patches start every ``strides`` pixels, and a last patch is placed flush with the
    far edge, so the whole frame is covered by full-size patches.

    Returns
    -------
    xarray.Dataset
        Dimension coordinates ``patch_y`` / ``patch_x`` (patch centres, pixels) and
        coordinates ``patch_y_start``/``patch_y_stop``, ``patch_x_start``/``patch_x_stop``
        (so that ``frame[start:stop]`` is the patch).

    Examples
    --------
    >>> g = patch_grid((128, 100), strides=(48, 40), overlaps=(24, 16))
    >>> g.patch_y.values.tolist(), g.patch_y_start.values.tolist()
    ([35.5, 83.5, 91.5], [0, 48, 56])
    >>> g.patch_x_stop.values.tolist()
    [56, 96, 100]
    """
    st, ov, _ = vd.check_grid(shape, strides, overlaps)
    return xr.Dataset(coords=patch_coords(shape, (sc.DIM_Y, sc.DIM_X), st, ov))


def get_patch_start_and_end_coords(
    x: int, y: int, strides_0: int, strides_1: int, overlaps_0: int, overlaps_1: int
) -> tuple[np.ndarray, np.ndarray]:
    """jnormcorre-compatible patch bounds: ``(start, end)``, each ``(n_patches, 2)``.

    ``x``/``y`` are the frame's first/second dimension sizes (jnormcorre's naming);
    patch ``k`` is ``frame[start[k, 0]:end[k, 0], start[k, 1]:end[k, 1]]`` and
    corresponds to ``res.shifts.stack(patch=("patch_y", "patch_x"))[:, k]``.

    Examples
    --------
    >>> start, end = get_patch_start_and_end_coords(96, 96, 48, 48, 24, 24)
    >>> start.tolist(), end.tolist()
    ([[0, 0], [0, 24], [24, 0], [24, 24]], [[72, 72], [72, 96], [96, 72], [96, 96]])
    """
    g = patch_grid((x, y), (strides_0, strides_1), (overlaps_0, overlaps_1))
    ys, xs = np.meshgrid(g.patch_y_start.values, g.patch_x_start.values, indexing="ij")
    ye, xe = np.meshgrid(g.patch_y_stop.values, g.patch_x_stop.values, indexing="ij")
    start = np.stack([ys.ravel(), xs.ravel()], axis=1)
    end = np.stack([ye.ravel(), xe.ravel()], axis=1)
    return start, end
