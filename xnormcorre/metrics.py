"""Quality metrics of a registration (public home: :mod:`xnormcorre.qc.metrics`, optical
flow in :mod:`xnormcorre.qc.flow`)."""

from .qc.flow import FARNEBACK_PARAMS, residual_optical_flow
from .qc.metrics import correlation_with_mean, crispness, shift_rmse, summary

__all__ = [
    "FARNEBACK_PARAMS",
    "correlation_with_mean",
    "crispness",
    "residual_optical_flow",
    "shift_rmse",
    "summary",
]
