"""Quality control of a registration: flags (:mod:`~xnormcorre.qc.flags`; those of
patches in :mod:`~xnormcorre.qc.patch_flags`), the run's verdict
(:mod:`~xnormcorre.qc.diagnose`), metrics (:mod:`~xnormcorre.qc.metrics`; the summary
table and a result's QC in :mod:`~xnormcorre.qc.summary`, optical flow in
:mod:`~xnormcorre.qc.flow`) and plots (:mod:`~xnormcorre.qc.plot`; before/after movie
views in :mod:`~xnormcorre.qc.plot_movie`)."""

from .flags import quality_flags

__all__ = ["quality_flags"]
