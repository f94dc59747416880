"""Accuracy of rigid and piecewise-rigid shift estimates against the Cramér-Rao bound.

Movies come from the independent simulator :mod:`xnormcorre.testing.simulate`
(oversampled tissue scene, cubic B-spline motion, pixel integration, Poisson-Gaussian
camera); the bound and the efficiency from :mod:`xnormcorre.testing.crlb`.  Prints
markdown tables:

1. rigid RMSE, CRLB and efficiency at 1, 5 and 20 photons/px (walk <= 5 px, 128^2),
   for xnormcorre (default and classic parameters), a 2-pass scikit-image
   ``phase_cross_correlation`` pipeline (if installed) and a reference noise-weighted
   Gauss-Newton fit against the clean template (shows that the bound is reachable),
   each with the template estimated from the movie and with the clean template given;
2. per-patch efficiency of ``pwrigid`` at 1, 5 and 20 photons/px, on a non-rigid movie
   and on a rigidly moving one (every patch shares the frame's shift), with the per-patch
   refinement off (the default) and on (``refine_patches=True``);
3. two-position, three-position, alternating and jump movies;
4. static sensor defects (hot, dead, stuck, a line) at 0.5 % against the clean movie.

Run by hand (minutes; ``--quick`` for one seed and shorter movies)::

    python benchmarks/accuracy.py [--quick] [--seeds 0 1 2] [--frames 300]
"""

from __future__ import annotations

import os

# scikit-image's upsampled DFT is made of small matrix products: a multi-threaded BLAS on
# shared cores only adds overhead (30 ms instead of 3 ms per call).  Set before NumPy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

import xnormcorre  # noqa: E402
from xnormcorre.testing.crlb import crlb, crlb_patches, efficiency, rmse  # noqa: E402
from xnormcorre.testing.simulate import SimulatedMovie, add_defects, simulate_movie  # noqa: E402

try:  # the peer pipeline is optional
    from skimage.registration import phase_cross_correlation
except ImportError:  # pragma: no cover
    phase_cross_correlation = None

SHAPE = (128, 128)
MAX_SHIFTS = 7
CLASSIC = {"phase_corr": False, "smooth_sigma": 0.0, "taper": 0.0}
FIVE_POINT = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0


# ------------------------------------------------------------------ estimators


def xnc(params: dict) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    def run(frames, template):
        res = xnormcorre.rigid(frames, template=template, max_shifts=MAX_SHIFTS, **params)
        return res.shifts.values.astype(np.float64)

    return run


def skimage_two_pass(normalization: str | None, upsample: int = 20) -> Callable:
    """Naive peer pipeline: register to the mean frame, average the corrected frames, register again."""

    def run(frames: np.ndarray, template: np.ndarray | None) -> np.ndarray:
        def register(ref):  # phase_cross_correlation returns the correction: -displacement
            return np.array(
                [
                    -phase_cross_correlation(ref, f, upsample_factor=upsample, normalization=normalization)[0]
                    for f in frames
                ]
            )

        if template is None:
            first = register(frames.mean(0))
            moved = [
                ndimage.shift(f, -s, order=3, mode="nearest") for f, s in zip(frames, first, strict=True)
            ]
            template = np.mean(moved, axis=0)
        return register(template)

    return run


def gauss_newton_oracle(sim: SimulatedMovie, init: np.ndarray, iters: int = 4) -> np.ndarray:
    """Noise-weighted Gauss-Newton of each frame against the *clean* template (weights from the model).

    Only pixels whose source ``r - s`` lies inside the template are used (content that
    entered the field of view is not in the template).  A reference for what the data
    allow, not a practical estimator (it needs the clean template and the camera model).
    """
    spline = ndimage.spline_filter(sim.template.astype(np.float64), order=3)
    h, w = sim.template.shape
    out = np.empty_like(init)
    for t, (frame, s) in enumerate(zip(sim.frames.astype(np.float64), init.astype(np.float64), strict=True)):
        for _ in range(iters):
            mu = ndimage.shift(spline, s, order=3, mode="nearest", prefilter=False)
            gy = ndimage.correlate1d(mu, FIVE_POINT, axis=0, mode="nearest")
            gx = ndimage.correlate1d(mu, FIVE_POINT, axis=1, mode="nearest")
            m = int(np.ceil(np.abs(s).max())) + 2
            sl = (slice(m, h - m), slice(m, w - m))
            wgt = 1.0 / np.maximum(sim.gain * (mu[sl] - sim.offset) + sim.read_noise**2, sim.read_noise**2)
            jac = -np.stack([gy[sl].ravel(), gx[sl].ravel()])  # d mu / d s
            r = (frame[sl] - mu[sl]).ravel()
            s = s + np.linalg.solve((jac * wgt.ravel()) @ jac.T, (jac * wgt.ravel()) @ r)
        out[t] = s
    return out


# ------------------------------------------------------------------ tables


def fmt(values: list[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ({v.min():.{digits}f}–{v.max():.{digits}f})"


def rigid_vs_snr(seeds, n_frames, photons_levels) -> str:
    estimators: dict[str, Callable] = {
        "xnormcorre default": xnc({}),
        "xnormcorre classic": xnc(CLASSIC),
    }
    if phase_cross_correlation is not None:
        estimators["scikit-image pcc 2-pass, normalization='phase' (its default)"] = skimage_two_pass("phase")
        estimators["scikit-image pcc 2-pass, normalization=None"] = skimage_two_pass(None)
    rows: dict[tuple[str, str, float], list[tuple[float, float]]] = {}
    bounds: dict[float, list[tuple[float, float]]] = {}
    for seed in seeds:
        base = simulate_movie(SHAPE, n_frames, motion="walk", max_shift=5.0, with_gradient=True, seed=seed)
        for p in photons_levels:
            sim = base.expose(p, seed=seed)
            kw = {"gain": sim.gain, "read_noise": sim.read_noise, "offset": sim.offset}
            bound = crlb(sim.clean, gradient=sim.gradient, **kw)
            bounds.setdefault(p, []).append((bound.rmse, crlb(sim.clean, **kw).rmse))
            for name, est in estimators.items():
                for tmpl_name, tmpl in (("estimated", None), ("clean", sim.template)):
                    s = est(sim.frames, tmpl)
                    rows.setdefault((name, tmpl_name, p), []).append(
                        (rmse(s, sim.shifts), efficiency(s, sim.shifts, bound))
                    )
                    if name == "xnormcorre default" and tmpl_name == "clean":
                        ref = gauss_newton_oracle(sim, s)
                        rows.setdefault(("reference: weighted Gauss-Newton (oracle)", "clean", p), []).append(
                            (rmse(ref, sim.shifts), efficiency(ref, sim.shifts, bound))
                        )
    lines = [
        f"### Rigid: {n_frames} frames of {SHAPE[0]}x{SHAPE[1]}, walk <= 5 px, seeds {list(seeds)}",
        "",
        "CRLB from the simulator's exact gradient (efficiencies use it);"
        " RMSE of the 2-D shift after removing the constant offset; efficiency = CRLB² / MSE;"
        " mean (min–max) over seeds.",
        "",
        "| photons/px | CRLB px (exact gradient) | CRLB px (3-point central differences) |",
        "|---|---|---|",
    ]
    for p in photons_levels:
        b = np.array(bounds[p])
        lines.append(f"| {p:g} | {fmt(b[:, 0], 4)} | {fmt(b[:, 1], 4)} |")
    lines += [
        "",
        "| estimator | template | " + " | ".join(f"{p:g} ph: RMSE / eff." for p in photons_levels) + " |",
    ]
    lines.append("|---|---|" + "---|" * len(photons_levels))
    for name, tmpl_name in dict.fromkeys((k[0], k[1]) for k in rows):
        cells = []
        for p in photons_levels:
            r = np.array(rows[(name, tmpl_name, p)])
            cells.append(f"{fmt(r[:, 0], 4)} / {fmt(r[:, 1], 2)}")
        lines.append(f"| {name} | {tmpl_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def patches(seeds, n_frames, photons_levels=(1.0, 5.0, 20.0), nonrigid: float = 1.5) -> str:
    strides, overlaps = (40, 40), (24, 24)
    motion = (
        f"walk <= 3 px + non-rigid {nonrigid:g} px (wavelength 96 px)" if nonrigid else "rigid walk <= 3 px"
    )
    lines = [
        f"### pwrigid per patch: {n_frames} frames of {SHAPE[0]}x{SHAPE[1]}, {motion}, "
        f"strides {strides}, overlaps {overlaps} (3x3 patches of 64 px)",
        "",
        "True patch shift: the displacement field averaged over the patch with each pixel's Fisher"
        " information (what a rigid ML fit of the patch converges to; with rigid motion, the frame's"
        " shift); offset removed per patch; median (min–max) over the 9 patches.",
        "",
        "| seed | photons/px | template | refine_patches | patch RMSE px | patch CRLB px | patch efficiency |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        base = simulate_movie(
            SHAPE,
            n_frames,
            max_shift=3.0,
            nonrigid=nonrigid,
            nonrigid_scale=96 if nonrigid else None,
            with_gradient=True,
            seed=seed,
        )
        for p in photons_levels:
            sim = base.expose(p, seed=seed)
            for (tmpl_name, tmpl), refine in itertools.product(
                (("estimated", None), ("clean", sim.template)), (False, True)
            ):
                res = xnormcorre.pwrigid(
                    sim.frames,
                    template=tmpl,
                    max_shifts=MAX_SHIFTS,
                    strides=strides,
                    overlaps=overlaps,
                    refine_patches=refine,
                )
                yb = list(zip(res.patch_y_start.values, res.patch_y_stop.values, strict=True))
                xb = list(zip(res.patch_x_start.values, res.patch_x_stop.values, strict=True))
                true = sim.patch_shifts(yb, xb, weighting="fisher")
                kw = {
                    "gain": sim.gain,
                    "read_noise": sim.read_noise,
                    "offset": sim.offset,
                    "gradient": sim.gradient,
                }
                pb = crlb_patches(sim.clean, yb, xb, **kw)
                est = res.shifts.transpose("time", "patch_y", "patch_x", "axis").values.astype(np.float64)
                eff = efficiency(est, true, pb)
                err = rmse(est, true)
                lines.append(
                    f"| {seed} | {p:g} | {tmpl_name} | {'on' if refine else 'off'} "
                    f"| {np.median(err):.4f} ({err.min():.4f}–{err.max():.4f}) "
                    f"| {np.median(pb.rmse):.4f} ({pb.rmse.min():.4f}–{pb.rmse.max():.4f}) "
                    f"| {np.median(eff):.2f} ({eff.min():.2f}–{eff.max():.2f}) |"
                )
    return "\n".join(lines)


def positions(seeds, n_frames) -> str:
    configs = [  # (motion, separation px, direction degrees or None = random)
        ("two_position", 6.0, None),
        ("three_position", 6.0, None),
        ("alternating", 6.0, None),
        ("jumps", 4.0, None),
        ("two_position", 9.0, 0.0),
        ("alternating", 12.0, 0.0),
    ]
    lines = [
        f"### Multi-position movies: {n_frames} frames of {SHAPE[0]}x{SHAPE[1]}, 5 photons/px, "
        f"max_shifts={MAX_SHIFTS}",
        "",
        "RMSE px (offset removed), mean (min–max) over seeds; separation = distance between positions"
        " in a random direction, or along x (direction 0°: beyond max_shifts from either position);"
        " jumps: 4 positions within ±4 px.",
        "",
        "| motion | separation | direction | default | classic | CRLB |",
        "|---|---|---|---|---|---|",
    ]
    for motion, sep, angle in configs:
        out: dict[str, list[float]] = {"default": [], "classic": [], "crlb": []}
        for seed in seeds:
            sim = simulate_movie(
                SHAPE,
                n_frames,
                motion=motion,
                separation=sep,
                max_shift=sep,
                angle=angle,
                with_gradient=True,
                seed=seed,
            )
            kw = {
                "gain": sim.gain,
                "read_noise": sim.read_noise,
                "offset": sim.offset,
                "gradient": sim.gradient,
            }
            out["crlb"].append(crlb(sim.clean, **kw).rmse)
            for name, params in (("default", {}), ("classic", CLASSIC)):
                out[name].append(rmse(xnc(params)(sim.frames, None), sim.shifts))
        lines.append(
            f"| {motion} | {sep:g} | {'random' if angle is None else f'{angle:g}°'} | {fmt(out['default'])} "
            f"| {fmt(out['classic'])} | {fmt(out['crlb'], 4)} |"
        )
    return "\n".join(lines)


def defects(seeds, n_frames) -> str:
    lines = [
        f"### Static sensor defects at 0.5 %: {n_frames} frames of {SHAPE[0]}x{SHAPE[1]}, walk <= 4 px, "
        "5 photons/px",
        "",
        "RMSE px (offset removed), mean (min–max) over seeds; ratio to the clean movie's RMSE.",
        "",
        "| defects | default RMSE | ratio | classic RMSE | ratio |",
        "|---|---|---|---|---|",
    ]
    res: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        sim = simulate_movie(SHAPE, n_frames, max_shift=4.0, seed=seed)
        movies = {"none (clean)": sim.frames}
        for kind in ("hot", "dead", "stuck", "line"):
            movies[kind] = add_defects(sim.frames, 0.005, kind, seed=seed)[0]
        for kind, frames in movies.items():
            for name, params in (("default", {}), ("classic", CLASSIC)):
                res.setdefault(kind, {}).setdefault(name, []).append(
                    rmse(xnc(params)(frames, None), sim.shifts)
                )
    clean = res["none (clean)"]
    for kind, r in res.items():
        cells = []
        for name in ("default", "classic"):
            ratio = np.array(r[name]) / np.array(clean[name])
            cells += [fmt(r[name]), fmt(ratio, 2)]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed, 100 frames (about a minute)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2)")
    ap.add_argument("--frames", type=int, default=None, help="frames per movie (default 300)")
    ap.add_argument(
        "--sections",
        nargs="+",
        default=["rigid", "patches", "patches_rigid", "positions", "defects"],
        choices=["rigid", "patches", "patches_rigid", "positions", "defects"],
    )
    args = ap.parse_args(argv)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    n_frames = args.frames or (100 if args.quick else 300)
    print(f"xnormcorre {xnormcorre.__version__}; seeds {seeds}; {n_frames} frames\n")
    sections = {
        "rigid": lambda: rigid_vs_snr(seeds, n_frames, (1.0, 5.0, 20.0)),
        "patches": lambda: patches(seeds, n_frames),
        "patches_rigid": lambda: patches(seeds, n_frames, nonrigid=0.0),
        "positions": lambda: positions(seeds, min(n_frames, 100)),
        "defects": lambda: defects(seeds, min(n_frames, 200)),
    }
    for name in args.sections:
        t0 = time.perf_counter()
        print(sections[name]())
        print(f"\n({name}: {time.perf_counter() - t0:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
