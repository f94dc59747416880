"""Compatibility module: the engine's NumPy-boundary names under their former home.

The engine is split by job: :mod:`~xnormcorre.engine.runner` (batches, threads),
:mod:`~xnormcorre.engine.config` (pass parameters), :mod:`~xnormcorre.engine.rigid`
and :mod:`~xnormcorre.engine.pwrigid` (kernels and drivers), :mod:`~xnormcorre.engine.warp`,
:mod:`~xnormcorre.engine.template` (template estimation),
:mod:`~xnormcorre.engine.borders`, :mod:`~xnormcorre.engine.patches`.  New code imports
those modules.
"""

from __future__ import annotations

from .borders import fill_edges
from .config import (
    PEAK_FIT_MIN_SIGMA,
    PwParams,
    RigidParams,
    auto_taper,
    edge_taper,
    make_pw_params,
    make_rigid_params,
)
from .pwrigid import register_pw_frames
from .rigid import apply_shifts, register_frames
from .runner import default_batch_size, iter_batches, kernel_batch, kernel_threads
from .template import estimate_template, initial_template, split_bounds
from .warp import apply_pw_shifts

__all__ = [
    "PEAK_FIT_MIN_SIGMA",
    "PwParams",
    "RigidParams",
    "apply_pw_shifts",
    "apply_shifts",
    "auto_taper",
    "default_batch_size",
    "edge_taper",
    "estimate_template",
    "fill_edges",
    "initial_template",
    "iter_batches",
    "kernel_batch",
    "kernel_threads",
    "make_pw_params",
    "make_rigid_params",
    "register_frames",
    "register_pw_frames",
    "split_bounds",
]
