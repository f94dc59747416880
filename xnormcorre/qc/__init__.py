"""Quality control of a registration: flags (:mod:`~xnormcorre.qc.flags`; those of
patches in :mod:`~xnormcorre.qc.patch_flags`), metrics
(:mod:`~xnormcorre.qc.metrics`, optical flow in :mod:`~xnormcorre.qc.flow`) and plots
(:mod:`~xnormcorre.qc.plot`)."""

from .flags import quality_flags

__all__ = ["quality_flags"]
