"""Quality-control plots of registration results (matplotlib, optional extra ``plot``).

Each function returns a :class:`matplotlib.figure.Figure` that is *not* managed by
pyplot (no global state, nothing leaks in loops): a notebook displays it when it is the
value of a cell, a script saves it with ``fig.savefig("qc.png")``.  matplotlib is
imported only when a function is called; install it with ``pip install "xnormcorre[plot]"``.
The same functions are methods of the Dataset accessor: ``res.normcorre.plot_shifts()``.
:func:`plot_before_after` (mean images) lives in :mod:`xnormcorre.qc.plot_movie`.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..engine.patches import patch_axis
from .plot_common import check_result, figure, is_piecewise, time_axis
from .plot_movie import plot_before_after

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_before_after", "plot_patch_field", "plot_shifts"]

_FLAG_MARKERS = {
    "at_max_shift": {"marker": "x", "color": "C3"},
    "low_correlation": {"marker": "v", "color": "C1"},
}


def _component(da: xr.DataArray, comp: str) -> xr.DataArray:
    if "axis" in da.coords:
        return da.sel(axis=comp)
    return da.isel(axis=0 if comp == "y" else 1)


def _components(shifts: xr.DataArray) -> tuple[str, ...]:
    """The shift components: ``("y", "x")``, or ``(z, "y", "x")`` for a volume's 3-D shifts."""
    if "axis" in shifts.coords and shifts.sizes["axis"] == 3:
        return tuple(str(c) for c in shifts["axis"].values)
    return ("y", "x")


def _plane_of(shifts: xr.DataArray, pw: bool) -> str | None:
    """The plane dim of a multi-plane result's shifts (``(time, z, axis)``), else None."""
    extra = [d for d in shifts.dims if d not in ("time", "axis", "patch_y", "patch_x")]
    return extra[0] if len(extra) == 1 and not pw else None


_PATCH_FLAG_MARKERS = {
    "patch_jump": {"marker": "o", "s": 14, "facecolors": "none", "edgecolors": "C4"},
    "patch_at_max_deviation": {"marker": "s", "s": 14, "facecolors": "none", "edgecolors": "C3"},
}
#: Margin around the data range of a shift panel: this fraction of the range, at least ``_MIN_MARGIN`` px.
_MARGIN = 0.08
_MIN_MARGIN = 0.1


def _data_limits(values: list[np.ndarray]) -> tuple[float, float] | None:
    """``(low, high)`` of the finite values with a margin; None when there are none."""
    finite = np.concatenate([np.asarray(v, float).ravel() for v in values])
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    pad = max(_MARGIN * (hi - lo), _MIN_MARGIN)
    return lo - pad, hi + pad


def _draw_bound(ax: Any, bound: float, units: str) -> None:
    """Dashed ``±bound`` lines where they fall within the view; else a note in the corner."""
    lo, hi = ax.get_ylim()
    shown = [sign * bound for sign in (-1, 1) if lo <= sign * bound <= hi]
    for level in shown:
        ax.axhline(level, ls="--", lw=0.8, color="0.5", gid="max_shifts")
    if len(shown) < 2:
        ax.text(
            0.01,
            0.03,
            f"search bound ±{bound:g} {units}" + (" (off scale)" if not shown else ""),
            transform=ax.transAxes,
            fontsize="small",
            color="0.4",
            gid="max_shifts",
        )


def plot_shifts(ds: xr.Dataset) -> Figure:
    """Shift traces over time: one panel per component (y, x; z, y, x for a volume).

    Rigid results: one trace per panel (a multi-plane result: one per plane, ``gid``
    ``"plane"``).  Piecewise-rigid results (``shifts (time,
    patch_y, patch_x, axis)``): every patch as a thin line and ``rigid_shifts`` as a
    thick black line.  The y-axis spans the data (with a small margin), so sub-pixel
    motion is visible; the search bound ``±max_shifts`` (from ``ds.attrs``) is drawn as
    dashed grey lines where it falls within that range, else noted in the panel's
    lower-left corner.  Frames flagged ``at_max_shift`` / ``low_correlation`` are
    marked on the rigid trace with red crosses / orange triangles; patch estimates
    flagged ``patch_jump`` / ``patch_at_max_deviation`` with purple circles / red
    squares at the patch's value.  Artists carry a ``gid``: ``"patch"``, ``"rigid"``,
    ``"max_shifts"`` or the flag's name.

    Parameters
    ----------
    ds : xarray.Dataset
        A registration result (``shifts`` with dims ``time`` and ``axis``).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes sharing the time axis.

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=10, shape=(64, 64), max_shift=2)
    >>> res = movie.normcorre.rigid(max_shifts=4)
    >>> fig = plot_shifts(res)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['y shift [pixel]', 'x shift [pixel]']
    """
    ds = check_result(ds)
    t, tlabel = time_axis(ds)
    pw = is_piecewise(ds)
    shifts = ds["shifts"]
    comps = _components(shifts)
    fig = figure(figsize=(8, 2.25 * len(comps)))
    axes = fig.subplots(len(comps), 1, sharex=True)
    plane = _plane_of(shifts, pw)
    rigid = ds["rigid_shifts"] if pw and "rigid_shifts" in ds else (None if pw or plane else shifts)
    units = shifts.attrs.get("units", "pixel")
    ms = ds.attrs.get("max_shifts")
    for i, (ax, comp) in enumerate(zip(axes, comps, strict=True)):
        shown = []
        if plane is not None:
            s = _component(shifts, comp).transpose("time", plane)
            vals = np.asarray(s.values, dtype=float)
            shown.append(vals)
            labels = ds[plane].values if plane in ds.coords else range(s.sizes[plane])
            for k, lab in enumerate(labels):
                (line,) = ax.plot(t, vals[:, k], lw=0.8, label=f"{plane} = {lab}")
                line.set_gid("plane")
        if pw:
            s = _component(shifts, comp).transpose("time", "patch_y", "patch_x")
            vals = np.asarray(s.values, dtype=float).reshape(s.sizes["time"], -1)
            shown.append(vals)
            lines = ax.plot(t, vals, lw=0.6, alpha=0.5, color="C0")
            for k, line in enumerate(lines):
                line.set_gid("patch")
                line.set_label(f"patches ({len(lines)})" if k == 0 else "_nolegend_")
            for flag, style in _PATCH_FLAG_MARKERS.items():
                if flag in ds and ds[flag].dims == ("time", "patch_y", "patch_x"):
                    hit = np.asarray(ds[flag].values).astype(bool).reshape(len(t), -1)
                    if hit.any():
                        ti, pi = np.nonzero(hit)
                        ax.scatter(
                            t[ti], vals[ti, pi], zorder=3, label=flag.replace("_", " "), **style
                        ).set_gid(flag)
        if rigid is not None:
            r = np.asarray(_component(rigid, comp).values, dtype=float)
            shown.append(r)
            (line,) = ax.plot(t, r, lw=2.0 if pw else 1.2, color="k" if pw else "C0", label="rigid")
            line.set_gid("rigid")
            for flag, style in _FLAG_MARKERS.items():
                if flag in ds and ds[flag].dims == ("time",):
                    hit = np.asarray(ds[flag].values).astype(bool)
                    if hit.any():
                        ax.scatter(t[hit], r[hit], zorder=3, label=flag.replace("_", " "), **style).set_gid(
                            flag
                        )
        limits = _data_limits(shown)
        if limits is not None:
            ax.set_ylim(*limits)
        if isinstance(ms, (list, tuple, np.ndarray)) and len(ms) == len(comps):
            _draw_bound(ax, float(ms[i]), units)
        unit = ("plane" if i == 0 else "pixel") if len(comps) == 3 else units
        ax.set_ylabel(f"{comp} shift [{unit}]")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel(tlabel)
    fig.suptitle(
        "displacement of frame content relative to the template" + (" (piecewise-rigid)" if pw else "")
    )
    return fig


def _patch_centres(ds: xr.Dataset, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Patch centres (px): the ``patch_y``/``patch_x`` coordinates, else the grid of the
    run's ``strides``/``overlaps`` (:mod:`xnormcorre.engine.patches`)."""
    strides, overlaps = ds.attrs.get("strides"), ds.attrs.get("overlaps")
    out = []
    for i, (dim, n) in enumerate((("patch_y", shape[0]), ("patch_x", shape[1]))):
        c = ds.coords.get(dim)
        if c is not None and np.issubdtype(c.dtype, np.number):
            out.append(np.asarray(c.values, dtype=float))
        elif strides is not None and overlaps is not None:
            out.append(patch_axis(n, int(strides[i]), int(overlaps[i])).centres)
        else:
            raise ValueError(
                f"ds has no numeric {dim!r} coordinate (patch centres, px) and no strides/overlaps "
                "attributes: the patch positions are unknown"
            )
    return out[0], out[1]


def plot_patch_field(ds: xr.Dataset, t: int = 0, *, scale: float | None = None) -> Figure:
    """Quiver plot of the shifts of frame ``t`` over the template.

    Arrows start at the patch centres (coordinates ``patch_y``/``patch_x``, in pixels)
    and point along the displacement of the frame content; a rigid result gets a single
    arrow at the frame centre, a piecewise-rigid one also its ``rigid_shifts`` (black).

    Parameters
    ----------
    ds : xarray.Dataset
        A registration result with ``shifts`` and ``template`` (else the corrected frame
        is the background).
    t : int
        Position of the frame along ``time`` (negative counts from the end).
    scale : float, optional
        Arrow magnification (drawn length / shift).  Default: the longest shift over all
        frames is drawn as 40% of the patch spacing (25% of the frame for rigid), never
        magnified less than 1×, so that frames of one result are comparable.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with the background image and the quiver(s).

    Examples
    --------
    >>> import xnormcorre
    >>> movie = xnormcorre.datasets.synthetic_movie(n_frames=10, shape=(64, 64), max_shift=2)
    >>> res = movie.normcorre.rigid(max_shifts=4)
    >>> fig = plot_patch_field(res, 3, scale=5)
    >>> len(fig.axes[0].collections), fig.axes[0].get_title()
    (1, 'frame index = 3, arrows ×5')
    """
    ds = check_result(ds)
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral):
        raise TypeError(f"t must be an integer frame position, got {t!r}")
    n = ds.sizes["time"]
    if not -n <= t < n:
        raise ValueError(f"t must be in [{-n}, {n}) for {n} frames, got {t}")
    t = int(t) % n
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale > 0
    ):
        raise ValueError(f"scale must be a positive number or None, got {scale!r}")

    if "template" in ds:
        bg = ds["template"]
    elif "corrected" in ds:
        bg = ds["corrected"].isel(time=t)
    else:
        raise ValueError("ds has neither 'template' nor 'corrected' to draw the arrows on")
    img = np.asarray(bg.transpose("y", "x").values, dtype=float)
    h, w = img.shape
    pw = is_piecewise(ds)
    shifts = ds["shifts"]

    if pw:
        s = shifts.transpose("time", "patch_y", "patch_x", "axis")
        cy, cx = _patch_centres(ds, (h, w))
        yy, xx = np.meshgrid(cy, cx, indexing="ij")
        frame = np.asarray(s.isel(time=t).values, dtype=float)
        dy, dx = frame[..., 0], frame[..., 1]
        spacing = min(np.min(np.diff(cy)) if cy.size > 1 else h, np.min(np.diff(cx)) if cx.size > 1 else w)
        target = 0.4 * spacing
    else:
        s = shifts.transpose("time", "axis")
        yy, xx = np.array([(h - 1) / 2]), np.array([(w - 1) / 2])
        dy, dx = (np.array([float(v)]) for v in s.isel(time=t).values)
        target = 0.25 * min(h, w)
    if scale is None:
        biggest = float(np.nanmax(np.sqrt((np.asarray(s.values, dtype=float) ** 2).sum(-1))))
        scale = max(1.0, target / biggest) if np.isfinite(biggest) and biggest > 0 else 1.0

    fig = figure(figsize=(6, 6 * h / w + 0.6))
    ax = fig.subplots()
    lo, hi = np.nanpercentile(img, [1, 99.5]) if np.isfinite(img).any() else (0, 1)
    ax.imshow(
        img, cmap="gray", vmin=lo, vmax=hi, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest"
    )
    qkw = {"angles": "xy", "scale_units": "xy", "scale": 1.0 / scale, "width": 0.004}
    ax.quiver(xx, yy, dx, dy, color="C1", label="patch shifts" if pw else "rigid shift", **qkw).set_gid(
        "patches" if pw else "rigid"
    )
    if pw and "rigid_shifts" in ds:
        r = np.asarray(ds["rigid_shifts"].transpose("time", "axis").isel(time=t).values, dtype=float)
        ax.quiver(
            [(w - 1) / 2], [(h - 1) / 2], [r[1]], [r[0]], color="k", label="rigid shift", **qkw
        ).set_gid("rigid")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    tvals, tlabel = time_axis(ds)
    tv = tvals[t]
    tv = f"{tv:g}" if isinstance(tv, numbers.Real) else str(tv)
    ax.set_title(f"{tlabel} = {tv}, arrows ×{scale:.3g}")
    return fig
