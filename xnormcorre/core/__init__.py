"""Labeled API: xarray in, xarray out.  Each function wraps one engine step."""

from .rigid import estimate_template, rigid

__all__ = ["estimate_template", "rigid"]
