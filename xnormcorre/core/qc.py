"""Compatibility module: :func:`quality_flags` now lives in :mod:`xnormcorre.qc.flags`."""

from ..qc.flags import LOW_CORR_K, PATCH_JUMP_PX, quality_flags

__all__ = ["LOW_CORR_K", "PATCH_JUMP_PX", "quality_flags"]
