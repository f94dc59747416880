"""Quality-control plots of registration results (public home: :mod:`xnormcorre.qc.plot`)."""

from .qc.plot import plot_before_after, plot_patch_field, plot_shifts

__all__ = ["plot_before_after", "plot_patch_field", "plot_shifts"]
