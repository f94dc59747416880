"""QC plots rendered with the Agg backend: figure contents, labels, accessor, errors."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import xarray as xr

import xnormcorre
from xnormcorre import metrics, plot

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402


@pytest.fixture(scope="module")
def movie() -> xr.DataArray:
    return xnormcorre.datasets.synthetic_movie(n_frames=30, shape=(64, 64), max_shift=3, seed=4)


@pytest.fixture(scope="module")
def res(movie) -> xr.Dataset:
    return xnormcorre.rigid(movie, max_shifts=5)


@pytest.fixture(scope="module")
def pw(res) -> xr.Dataset:
    """A piecewise-rigid-shaped result: 2 x 3 patches around the rigid shifts."""
    rng = np.random.default_rng(0)
    rigid = res.shifts.values.astype(float)
    s = rigid[:, None, None, :] + rng.normal(scale=0.2, size=(res.sizes["time"], 2, 3, 2))
    s[7, 1, 2] = [3.0, -4.0]
    ds = xr.Dataset(
        {
            "shifts": (
                ("time", "patch_y", "patch_x", "axis"),
                s,
                {"units": "pixel", "long_name": "patch shifts"},
            ),
            "rigid_shifts": (("time", "axis"), rigid),
            "template": res.template,
        },
        coords={"time": res.time, "axis": ["y", "x"], "patch_y": [16.0, 48.0], "patch_x": [10.0, 32.0, 54.0]},
        attrs={"max_shifts": [5, 5]},
    )
    return ds


def _render(fig: Figure) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def _lines(ax, gid):
    return [line for line in ax.get_lines() if line.get_gid() == gid]


def test_plot_shifts_rigid(res):
    fig = plot.plot_shifts(res)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    for ax, comp in zip(fig.axes, ("y", "x"), strict=True):
        assert ax.get_ylabel() == f"{comp} shift [pixel]"
        (trace,) = _lines(ax, "rigid")
        np.testing.assert_array_equal(trace.get_ydata(), res.shifts.sel(axis=comp).values)
        np.testing.assert_array_equal(trace.get_xdata(), res.time.values)
        assert not _lines(ax, "patch")
        # the axis spans the data (walk within +-3 px), not the +-5 px search bound
        data = res.shifts.sel(axis=comp).values
        lo, hi = ax.get_ylim()
        assert data.min() - 0.5 < lo < data.min() and data.max() < hi < data.max() + 0.5
        assert not _lines(ax, "max_shifts")
        (note,) = [txt for txt in ax.texts if txt.get_gid() == "max_shifts"]
        assert note.get_text() == "search bound ±5 pixel (off scale)"
        assert len(ax.get_lines()) == 1
    assert fig.axes[1].get_xlabel() == "frame index"
    _render(fig)


def _scaled(res: xr.Dataset, factor: float) -> xr.Dataset:
    out = res.copy()
    out["shifts"] = res.shifts * factor
    return out


def test_plot_shifts_small_motion_fills_the_axis(res):
    """Sub-pixel motion (within +-0.7 px) is not drawn flat on a +-5 px axis."""
    small = _scaled(res, 0.7 / float(abs(res.shifts).max()))
    fig = plot.plot_shifts(small)
    for ax, comp in zip(fig.axes, ("y", "x"), strict=True):
        data = small.shifts.sel(axis=comp).values
        lo, hi = ax.get_ylim()
        span = data.max() - data.min()
        assert lo < data.min() and hi > data.max()
        assert (hi - lo) - span < max(0.2 * span, 0.25)  # a margin, not the search range
        assert abs(lo) < 1 and abs(hi) < 1
    _render(fig)


def test_plot_shifts_draws_the_bound_when_in_view(res):
    near = _scaled(res, 4.95 / float(abs(res.shifts.sel(axis="y")).max()))
    fig = plot.plot_shifts(near)
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    levels = sorted(line.get_ydata()[0] for line in _lines(ax, "max_shifts"))
    assert levels == [level for level in (-5, 5) if lo <= level <= hi] and levels
    assert ax.get_ylim() == (lo, hi)  # the bound lines do not rescale the axis
    if len(levels) == 1:
        (note,) = [txt for txt in ax.texts if txt.get_gid() == "max_shifts"]
        assert note.get_text() == "search bound ±5 pixel"


def test_plot_shifts_piecewise_patches_thin_rigid_thick(pw):
    fig = plot.plot_shifts(pw)
    for ax, comp in zip(fig.axes, ("y", "x"), strict=True):
        patches = _lines(ax, "patch")
        assert len(patches) == 6
        (rigid,) = _lines(ax, "rigid")
        assert rigid.get_linewidth() > 2 * max(p.get_linewidth() for p in patches)
        np.testing.assert_array_equal(rigid.get_ydata(), pw.rigid_shifts.sel(axis=comp).values)
        ys = np.stack([p.get_ydata() for p in patches], 1)
        np.testing.assert_array_equal(ys, pw.shifts.sel(axis=comp).values.reshape(-1, 6))
    assert "piecewise" in fig._suptitle.get_text()
    # the jumped patch of frame 7 (3, -4) is within view
    lo, hi = fig.axes[1].get_ylim()
    x = np.concatenate([pw.shifts.sel(axis="x").values.ravel(), pw.rigid_shifts.sel(axis="x").values])
    assert lo < -4 < hi and x.max() < hi < x.max() + 0.8
    _render(fig)


def test_plot_shifts_marks_flagged_patches(pw):
    flagged = pw.copy()
    flagged["patch_jump"] = xr.zeros_like(pw.shifts.isel(axis=0, drop=True), dtype=np.int8)
    flagged["patch_jump"][7, 1, 2] = 1
    flagged["patch_at_max_deviation"] = flagged["patch_jump"].copy()
    fig = plot.plot_shifts(flagged)
    for ax, value in zip(fig.axes, (3.0, -4.0), strict=True):
        for gid in ("patch_jump", "patch_at_max_deviation"):
            (marks,) = [c for c in ax.collections if c.get_gid() == gid]
            np.testing.assert_allclose(marks.get_offsets(), [[7, value]])
    _render(fig)


def test_plot_shifts_marks_flagged_frames(res):
    flagged = res.copy()
    flagged["at_max_shift"] = xr.zeros_like(res.correlation, dtype=np.int8)
    flagged["at_max_shift"][[3, 11]] = 1
    fig = plot.plot_shifts(flagged)
    marks = [c for c in fig.axes[0].collections if c.get_gid() == "at_max_shift"]
    assert len(marks) == 1
    np.testing.assert_allclose(marks[0].get_offsets()[:, 0], [3, 11])
    assert not [c for c in plot.plot_shifts(res).axes[0].collections if c.get_gid() == "at_max_shift"]


def test_plot_patch_field_rigid_single_arrow(res):
    fig = plot.plot_patch_field(res, 4, scale=3)
    (ax,) = fig.axes
    quivers = [c for c in ax.collections if isinstance(c, Quiver)]
    assert len(quivers) == 1
    q = quivers[0]
    assert q.N == 1
    np.testing.assert_allclose(q.get_offsets(), [[31.5, 31.5]])
    np.testing.assert_allclose([q.U[0], q.V[0]], res.shifts.values[4, ::-1], rtol=1e-6)  # (dx, dy)
    assert q.scale == pytest.approx(1 / 3)
    assert len(ax.images) == 1
    np.testing.assert_array_equal(ax.images[0].get_array(), res.template.values)
    assert ax.get_xlabel() == "x [pixel]" and ax.get_ylabel() == "y [pixel]"
    assert ax.get_title() == "frame index = 4, arrows ×3"
    _render(fig)


def test_plot_patch_field_piecewise(pw):
    fig = plot.plot_patch_field(pw, -23)  # = frame 7
    (ax,) = fig.axes
    quivers = {c.get_gid(): c for c in ax.collections if isinstance(c, Quiver)}
    assert set(quivers) == {"patches", "rigid"}
    q = quivers["patches"]
    assert q.N == 6
    yy, xx = np.meshgrid([16.0, 48.0], [10.0, 32.0, 54.0], indexing="ij")
    np.testing.assert_allclose(q.get_offsets(), np.stack([xx.ravel(), yy.ravel()], 1))
    np.testing.assert_allclose(q.U, pw.shifts.values[7, ..., 1].ravel())
    np.testing.assert_allclose(q.V, pw.shifts.values[7, ..., 0].ravel())
    # auto scale: the longest shift of the movie (5 px) is drawn as 40% of the 22-px spacing
    biggest = np.sqrt((pw.shifts.values**2).sum(-1)).max()
    assert 1 / q.scale == pytest.approx(max(1.0, 0.4 * 22 / biggest))
    assert quivers["rigid"].N == 1
    _render(fig)


def test_plot_before_after(movie, res):
    fig = plot.plot_before_after(movie, res)
    assert len(fig.axes) == 3
    assert [len(ax.images) for ax in fig.axes] == [1, 1, 0]
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), movie.mean("time").values, rtol=1e-6)
    np.testing.assert_allclose(
        fig.axes[1].images[0].get_array(), res.corrected.mean("time").values, rtol=1e-5
    )
    crisp = metrics.crispness(res.corrected, crop=5)
    assert f"{crisp:.4g}" in fig.axes[1].get_title()
    ax = fig.axes[2]
    assert ax.get_ylabel() == "correlation with mean image" and ax.get_xlabel() == "frame index"
    (raw,) = _lines(ax, "raw")
    (cor,) = _lines(ax, "corrected")
    assert len(ax.get_lines()) == 2
    np.testing.assert_allclose(raw.get_ydata(), metrics.correlation_with_mean(movie, crop=5).values)
    np.testing.assert_allclose(cor.get_ydata(), metrics.correlation_with_mean(res.corrected, crop=5).values)
    assert np.mean(cor.get_ydata()) > np.mean(raw.get_ydata())
    _render(fig)
    # the corrected movie itself also works (crop defaults to 0 then)
    fig = plot.plot_before_after(movie, res.corrected, crop=2)
    np.testing.assert_allclose(
        _lines(fig.axes[2], "raw")[0].get_ydata(), metrics.correlation_with_mean(movie, crop=2).values
    )


def test_dataset_accessor(movie, res, pw):
    fig = res.normcorre.plot_shifts()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(_lines(pw.normcorre.plot_shifts().axes[0], "patch")) == 6
    q = [c for c in res.normcorre.plot_patch_field(2, scale=2).axes[0].collections if isinstance(c, Quiver)]
    assert len(q) == 1 and q[0].scale == pytest.approx(0.5)
    assert len(res.normcorre.plot_before_after(movie).axes) == 3
    # the DataArray accessor is untouched
    assert hasattr(movie.normcorre, "rigid") and not hasattr(movie.normcorre, "plot_shifts")


def test_bad_input(res, movie):
    with pytest.raises(TypeError, match="ds"):
        plot.plot_shifts(res.shifts)
    with pytest.raises(ValueError, match="shifts"):
        plot.plot_shifts(res.drop_vars("shifts"))
    with pytest.raises(ValueError, match="t must be"):
        plot.plot_patch_field(res, 30)
    with pytest.raises(TypeError, match="t must be"):
        plot.plot_patch_field(res, 1.0)
    with pytest.raises(ValueError, match="scale"):
        plot.plot_patch_field(res, 0, scale=0)
    with pytest.raises(ValueError, match="shape"):
        plot.plot_before_after(movie.isel(x=slice(0, 32)), res)
    with pytest.raises(ValueError, match="corrected"):
        plot.plot_before_after(movie, res.drop_vars("corrected"))


def test_clear_error_without_matplotlib(monkeypatch, res):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "xnormcorre\[plot\]"'):
        plot.plot_shifts(res)
    with pytest.raises(ImportError, match="matplotlib"):
        res.normcorre.plot_patch_field(0)
