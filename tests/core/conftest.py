"""Fixtures shared by the volume tests: each module simulates its own volumetric movie (its
``sim`` fixture, a :class:`xnormcorre.testing.volume.SimulatedVolume` or
:class:`~xnormcorre.testing.volume.DeformedVolume`); these label and register it once per module."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


@pytest.fixture(scope="module")
def vol(sim):
    """The module's ``sim`` as a ``(time, z, y, x)`` movie, planes 5 µm apart."""
    return xr.DataArray(sim.frames, dims=("time", "z", "y", "x"), name="movie").assign_coords(
        z=np.arange(sim.frames.shape[1]) * 5.0
    )


@pytest.fixture(scope="module")
def res(vol, sim):
    """``vol`` registered rigidly to its true template, ``max_shifts=(2, 4, 4)`` (a module
    may override this fixture with another registration)."""
    return vol.normcorre.rigid(max_shifts=(2, 4, 4), template=sim.template)
