"""The options of a registration run, validated once, up front, and carried down.

:func:`rigid_options` / :func:`pw_options` check every parameter of
:func:`xnormcorre.rigid` / :func:`xnormcorre.pwrigid` (and :func:`estimate_template`)
against the movie's frame shape and return one frozen :class:`Options`; the engine
parameters, the template estimation and the provenance attributes are all derived from
it.  Keywords that CaImAn or jnormcorre users are used to are translated here
(:func:`translate_aliases`); an unknown keyword gets a ``TypeError`` naming the closest
valid one.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .. import validate as vd
from ..engine.config import PwParams, RigidParams, make_pw_params, make_rigid_params

__all__ = ["Options", "pw_options", "rigid_options", "translate_aliases"]


@dataclass(frozen=True)
class Options:
    """Every validated parameter of a rigid or piecewise-rigid run.

    The piecewise-rigid fields (``strides`` ... ``niter_els``) are None for a rigid run;
    ``num_splits_to_process``/``niter`` are the rigid template's (``*_rig`` of pwrigid).
    """

    max_shifts: tuple[int, int]
    upsample_factor: int
    frames_per_split: int
    num_splits_to_process: int | None
    niter: int
    max_template_frames: int | None
    min_mov: float | None
    border: str
    batch_size: int | None
    seed: int
    phase_corr: bool
    smooth_sigma: float
    taper: float | None
    strides: tuple[int, int] | None = None
    overlaps: tuple[int, int] | None = None
    max_deviation_rigid: tuple[int, int] | None = None
    upsample_factor_grid: int | None = None
    num_splits_to_process_els: int | None = None
    niter_els: int | None = None

    @property
    def piecewise(self) -> bool:
        return self.strides is not None

    def estimator(self) -> dict[str, Any]:
        """The keywords of the shift estimate shared by every pass."""
        return {"phase_corr": self.phase_corr, "smooth_sigma": self.smooth_sigma, "taper": self.taper}

    def rigid_params(
        self,
        shape: tuple[int, int],
        n_frames: int,
        *,
        fill_min: float = 0.0,
        border: str | None = None,
        batch_size: int | None = None,
    ) -> RigidParams:
        """Engine parameters of a rigid pass over frames of ``shape`` (``border`` and
        ``batch_size`` default to the run's)."""
        return make_rigid_params(
            shape,
            n_frames=n_frames,
            max_shifts=self.max_shifts,
            upsample_factor=self.upsample_factor,
            border=self.border if border is None else border,
            batch_size=self.batch_size if batch_size is None else batch_size,
            fill_min=fill_min,
            **self.estimator(),
        )

    def pw_params(self, shape: tuple[int, int], n_frames: int, *, fill_min: float = 0.0) -> PwParams:
        """Engine parameters of a piecewise-rigid pass over frames of ``shape``."""
        return make_pw_params(
            shape,
            strides=self.strides,
            overlaps=self.overlaps,
            max_deviation_rigid=self.max_deviation_rigid,
            batch_size=self.batch_size,
            n_frames=n_frames,
            max_shifts=self.max_shifts,
            upsample_factor=self.upsample_factor,
            border=self.border,
            fill_min=fill_min,
            **self.estimator(),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _alias(value, alias, name: str, alias_name: str, default):
    if alias is not None:
        if value is not None and value != alias:
            raise ValueError(f"give either {name} or its alias {alias_name}, not both")
        return alias
    return default if value is None else value


def _common(shape: tuple[int, int], kw: dict[str, Any]) -> dict[str, Any]:
    smooth_sigma, taper, min_mov = kw["smooth_sigma"], kw["taper"], kw["min_mov"]
    out = {
        "max_shifts": vd.check_max_shifts(kw["max_shifts"], shape),
        "upsample_factor": vd.integer(kw["upsample_factor"], "upsample_factor"),
        "frames_per_split": vd.integer(kw["frames_per_split"], "frames_per_split"),
        "num_splits_to_process": vd.integer(
            kw["num_splits_to_process"], "num_splits_to_process", allow_none=True
        ),
        "niter": vd.integer(kw["niter"], "niter", minimum=0),
        "batch_size": vd.integer(kw["batch_size"], "batch_size", allow_none=True),
        "seed": vd.integer(kw["seed"], "seed", minimum=0),
        "border": vd.check_border(kw["border"]),
    }
    if smooth_sigma is None or smooth_sigma < 0:
        raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma!r}")
    if taper is not None and taper < 0:
        raise ValueError(f"taper must be >= 0 or None, got {taper!r}")
    if min_mov is not None and not math.isfinite(min_mov):
        raise ValueError(f"min_mov must be finite, got {min_mov!r}")
    out.update(
        max_template_frames=vd.integer(kw["max_template_frames"], "max_template_frames", allow_none=True),
        min_mov=None if min_mov is None else float(min_mov),
        phase_corr=bool(kw["phase_corr"]),
        smooth_sigma=float(smooth_sigma),
        taper=taper,
    )
    return out


def rigid_options(shape: tuple[int, int], **kw: Any) -> Options:
    """Validate the parameters of :func:`xnormcorre.rigid` for frames of ``shape``."""
    kw["num_splits_to_process"] = _alias(
        kw["num_splits_to_process"],
        kw.pop("num_splits_to_process_rig", None),
        "num_splits_to_process",
        "num_splits_to_process_rig",
        None,
    )
    kw["niter"] = _alias(kw["niter"], kw.pop("niter_rig", None), "niter", "niter_rig", 1)
    return Options(**_common(shape, kw))


def pw_options(shape: tuple[int, int], **kw: Any) -> Options:
    """Validate the parameters of :func:`xnormcorre.pwrigid` for frames of ``shape``."""
    kw["num_splits_to_process"] = kw.pop("num_splits_to_process_rig")
    kw["niter"] = kw.pop("niter_rig")
    base = _common(shape, kw)
    st, ov, md = vd.check_grid(
        shape, kw["strides"], kw["overlaps"], base["max_shifts"], kw["max_deviation_rigid"]
    )
    return Options(
        **base,
        strides=st,
        overlaps=ov,
        max_deviation_rigid=md,
        upsample_factor_grid=vd.integer(kw["upsample_factor_grid"], "upsample_factor_grid"),
        num_splits_to_process_els=vd.integer(
            kw["num_splits_to_process_els"], "num_splits_to_process_els", allow_none=True
        ),
        niter_els=vd.integer(kw["niter_els"], "niter_els", minimum=0),
    )


# --------------------------------------------------------------------------- other tools' names
#: CaImAn / jnormcorre / NoRMCorre keywords with no exact xnormcorre equivalent: what to write instead.
FOREIGN_HINTS: dict[str, str] = {
    "border_nan": 'border="nan" (True), border="copy" ("copy") or border="min" (fills with min_mov)',
    "gSig_filt": "reference=xnormcorre.highpass(movie, sigma=gSig_filt)",
    "pw_rigid": "xnormcorre.pwrigid(...) for piecewise-rigid registration (rigid(...) otherwise)",
    "shifts_opencv": "nothing: xnormcorre always applies shifts with its own interpolation "
    "(Fourier phase ramp for rigid, Keys cubic for piecewise rigid)",
    "nonneg_movie": "nothing: registration does not depend on a constant offset (min_mov is only "
    'the fill value of border="min")',
    "use_cuda": "nothing: JAX picks the accelerator",
    "num_splits_to_process": "num_splits_to_process_rig / num_splits_to_process_els",
    "splits_rig": "frames_per_split (frames per split rather than the number of splits)",
    "splits_els": "frames_per_split (frames per split rather than the number of splits)",
    "num_frames_split": "frames_per_split",
    "max_deviation_patch": "max_deviation_rigid",
    "grid_size": "strides (NoRMCorre's grid_size)",
    "overlap_pre": "overlaps (= 2 * NoRMCorre's overlap_pre)",
    "us_fac": "upsample_factor",
    "bin_width": "frames_per_split",
    "iter": "niter",
    "template_each_split": "nothing: the template is the median of the split means",
}


def translate_aliases(kwargs: dict[str, Any], valid: list[str], func: str) -> dict[str, Any]:
    """Keywords of other tools with the same meaning, renamed; any other unknown keyword raises.

    Aliases (same meaning): ``border_nan=True`` -> ``border="nan"``,
    ``border_nan="copy"`` -> ``border="copy"``, ``num_frames_split`` -> ``frames_per_split``.
    Everything else raises ``TypeError`` naming the closest valid keyword and, for a
    CaImAn/jnormcorre/NoRMCorre name, what to write instead.

    Examples
    --------
    >>> translate_aliases({"border_nan": True}, ["border"], "rigid")
    {'border': 'nan'}
    >>> translate_aliases({"max_shift": 3}, ["max_shifts", "border"], "rigid")
    Traceback (most recent call last):
    ...
    TypeError: rigid() got an unexpected keyword argument 'max_shift'; did you mean 'max_shifts'?
    """
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name == "border_nan" and (value is True or value == "copy"):
            out["border"] = "nan" if value is True else "copy"
        elif name == "num_frames_split" and "frames_per_split" in valid:
            out["frames_per_split"] = value
        else:
            raise TypeError(_unknown(name, value, valid, func))
    return out


def _unknown(name: str, value: Any, valid: list[str], func: str) -> str:
    msg = f"{func}() got an unexpected keyword argument {name!r}"
    if name in FOREIGN_HINTS and name not in valid:
        what = FOREIGN_HINTS[name]
        if name == "border_nan" and value is False:
            what = 'border="copy" (xnormcorre never wraps pixels around; False has no equivalent)'
        return f"{msg}: this is a CaImAn/jnormcorre/NoRMCorre name; in xnormcorre write {what}"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return msg + (f"; did you mean {close[0]!r}?" if close else f"; valid keywords: {', '.join(valid)}")


def keyword_names(options_cls: type = Options) -> list[str]:
    """Names of the fields of :class:`Options`."""
    return [f.name for f in fields(options_cls)]
