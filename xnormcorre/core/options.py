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
import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .. import validate as vd
from ..engine.config import PwParams, RigidParams, make_pw_params, make_rigid_params

__all__ = ["Options", "options_for", "pw_options", "rigid_options", "translate_aliases", "with_aliases"]


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
    refine_patches: bool = False

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
            refine_patches=self.refine_patches,
            max_shifts=self.max_shifts,
            upsample_factor=self.upsample_factor,
            border=self.border,
            fill_min=fill_min,
            **self.estimator(),
        )

    def as_dict(self) -> dict[str, Any]:
        """Every option by name."""
        return asdict(self)

    def run_parameters(self, *, min_mov, batch_size, clip, scan_phase) -> dict[str, Any]:
        """The parameters a result records, by the public names of the run, with the
        values its final pass used (``min_mov``, ``batch_size``, ``clip``, ``scan_phase``)."""
        if self.piecewise:
            head = {
                "max_shifts": self.max_shifts,
                "strides": self.strides,
                "overlaps": self.overlaps,
                "max_deviation_rigid": self.max_deviation_rigid,
                "refine_patches": self.refine_patches,
                "upsample_factor": self.upsample_factor,
                "upsample_factor_grid": self.upsample_factor_grid,
                "frames_per_split": self.frames_per_split,
                "num_splits_to_process_rig": self.num_splits_to_process,
                "niter_rig": self.niter,
                "num_splits_to_process_els": self.num_splits_to_process_els,
                "niter_els": self.niter_els,
            }
        else:
            head = {
                "max_shifts": self.max_shifts,
                "upsample_factor": self.upsample_factor,
                "frames_per_split": self.frames_per_split,
                "num_splits_to_process": self.num_splits_to_process,
                "niter": self.niter,
            }
        return {
            **head,
            "max_template_frames": self.max_template_frames,
            "min_mov": min_mov,
            "border": self.border,
            "batch_size": batch_size,
            "seed": self.seed,
            "clip": clip,
            "scan_phase": scan_phase,
            **self.estimator(),
        }


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
    out.update(
        max_template_frames=vd.integer(kw["max_template_frames"], "max_template_frames", allow_none=True),
        min_mov=None if min_mov is None else vd.finite_number(min_mov, "min_mov"),
        phase_corr=bool(kw["phase_corr"]),
        smooth_sigma=vd.nonnegative_number(smooth_sigma, "smooth_sigma"),
        taper=None if taper is None else vd.nonnegative_number(taper, "taper"),
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
        # None: the default for frames (off; volumes resolve their own default first)
        refine_patches=(
            False
            if kw.get("refine_patches") is None
            else vd.check_bool(kw["refine_patches"], "refine_patches")
        ),
    )


# --------------------------------------------------------------------------- other tools' names
#: CaImAn / jnormcorre / NoRMCorre keywords with no exact xnormcorre equivalent: what to write instead.
FOREIGN_HINTS: dict[str, str] = {
    "border_nan": 'border="nan" (True), border="copy" ("copy"), or border="min" (fills with min_mov, '
    "the movie floor, rather than each frame's minimum)",
    "gSig_filt": "reference=xnormcorre.highpass(movie, sigma=gSig_filt)",
    "pw_rigid": "xnormcorre.pwrigid(...) for piecewise-rigid registration, xnormcorre.rigid(...) otherwise",
    "shifts_opencv": "nothing: shifts are applied by a Fourier phase ramp (rigid) or a Keys-cubic "
    "resampling of the dense field, OpenCV's INTER_CUBIC (piecewise rigid)",
    "nonneg_movie": "nothing: registration does not depend on a constant offset (min_mov is only the "
    'fill value of border="min")',
    "use_cuda": "nothing: JAX uses the accelerator it finds",
    "max_deviation_patch": "max_deviation_rigid",
    "grid_size": "strides (NoRMCorre's grid_size)",
    "overlap_pre": "overlaps (twice NoRMCorre's overlap_pre)",
    "us_fac": "upsample_factor",
    "upsample_factor_fft": "upsample_factor",
    "iter": "niter",
    "shifts_method": "nothing: rigid shifts use a Fourier phase ramp, piecewise-rigid ones Keys-cubic resampling",
}
#: Keywords of other tools that mean the same as an xnormcorre keyword (same value).
RENAMED = {"num_frames_split": "frames_per_split"}
#: CaImAn's number of splits -> frames per split (``ceil(T / splits)``, the same splits).
SPLITS = ("splits_rig", "splits_els")


def translate_aliases(
    func: str, aliases: dict[str, Any], valid: list[str], n_frames: int | None = None
) -> dict[str, Any]:
    """xnormcorre keywords for the keywords of other tools that mean the same thing.

    Aliases: ``border_nan=True`` -> ``border="nan"``, ``border_nan="copy"`` ->
    ``border="copy"``, ``num_frames_split`` -> ``frames_per_split``, ``splits_rig`` /
    ``splits_els`` (CaImAn's number of splits) -> ``frames_per_split = ceil(T / splits)``.
    Any other keyword raises ``TypeError`` naming the closest valid keyword or, for a
    CaImAn/jnormcorre/NoRMCorre name, what to write instead.

    Examples
    --------
    >>> translate_aliases("rigid", {"border_nan": True}, ["border"])
    {'border': 'nan'}
    >>> translate_aliases("rigid", {"splits_rig": 4}, ["frames_per_split"], n_frames=10)
    {'frames_per_split': 3}
    >>> translate_aliases("rigid", {"max_shift": 3}, ["max_shifts", "border"])
    Traceback (most recent call last):
    ...
    TypeError: rigid() got an unexpected keyword argument 'max_shift'; did you mean 'max_shifts'?
    """
    out: dict[str, Any] = {}

    def put(name: str, value: Any, source: str) -> None:
        if name in out and out[name] != value:
            raise ValueError(f"{source}={aliases[source]!r} contradicts another alias of {name}")
        out[name] = value

    for name, value in aliases.items():
        if name == "border_nan" and "border" in valid and (value is True or value == "copy"):
            put("border", "nan" if value is True else "copy", name)
        elif RENAMED.get(name) in valid:
            put(RENAMED[name], value, name)
        elif name in SPLITS and "frames_per_split" in valid and n_frames is not None:
            splits = vd.integer(value, name)
            put("frames_per_split", max(1, math.ceil(n_frames / splits)), name)
        else:
            raise TypeError(_unknown(func, name, value, valid))
    return out


def _unknown(func: str, name: str, value: Any, valid: list[str]) -> str:
    msg = f"{func}() got an unexpected keyword argument {name!r}"
    if name in FOREIGN_HINTS:
        what = FOREIGN_HINTS[name]
        if name == "border_nan" and value is False:
            what = 'border="copy" (xnormcorre never wraps pixels around, so False has no equivalent)'
        return f"{msg}: a CaImAn/jnormcorre/NoRMCorre name; in xnormcorre write {what}"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return msg + (f"; did you mean {close[0]!r}?" if close else f"; valid keywords: {', '.join(valid)}")


#: Keywords of the registration functions that are inputs of a run, not options.
RUN_INPUTS = frozenset(
    {
        "movie",
        "template",
        "reference",
        "defects",
        "clip",
        "scan_phase",
        "store",
        "resume",
        "planes",
        "plane_dim",
        "aliases",
    }
)


def options_for(
    func: Callable, arguments: dict[str, Any], shape: tuple[int, int], n_frames: int, **fixed: Any
) -> Options:
    """The validated :class:`Options` of a call of ``func`` (:func:`xnormcorre.rigid`,
    :func:`xnormcorre.pwrigid` or :func:`estimate_template`) for frames of ``shape``.

    ``arguments``: the call's keyword values by name (its ``locals()``; only the options
    in ``func``'s signature are read), its ``aliases`` translated by :func:`with_aliases`;
    ``fixed``: options that ``func`` does not take, with their values.
    """
    params = inspect.signature(func).parameters
    given = {
        name: arguments[name]
        for name, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in RUN_INPUTS
    }
    given.update(fixed)
    given = with_aliases(func, given, arguments.get("aliases") or {}, n_frames)
    return (pw_options if "strides" in params else rigid_options)(shape, **given)


def with_aliases(
    func: Callable, given: dict[str, Any], aliases: dict[str, Any], n_frames: int
) -> dict[str, Any]:
    """``given`` (the explicit keywords of ``func``) updated by the translated ``aliases``.

    An alias and an explicit keyword that disagree raise ``ValueError`` (an explicit
    keyword left at its default gives way to the alias).
    """
    if not aliases:
        return given
    params = inspect.signature(func).parameters
    valid = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    out = dict(given)
    for name, value in translate_aliases(func.__name__, aliases, valid, n_frames).items():
        if name in out and out[name] != params[name].default and out[name] != value:
            raise ValueError(f"give either {name}={out[name]!r} or its alias, not both")
        out[name] = value
    return out
