"""Test helpers for xnormcorre and for users' own pipelines: hypothesis strategies and assertions."""

from .assertions import assert_shifts_close, shift_rmse

__all__ = ["assert_shifts_close", "shift_rmse"]
