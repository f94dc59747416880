"""Shared fixtures and the hypothesis profiles."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import xnormcorre
from xnormcorre.io import tiff_files

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=15,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "XNORMCORRE_DATA" in os.environ:
    DATA = Path(os.environ["XNORMCORRE_DATA"])


def data_file(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real test movie {path} not available")
    return path


@pytest.fixture(scope="session")
def sima_path() -> Path:
    return data_file("sima_example_20x128x256.tif")


@pytest.fixture(scope="session")
def neurofinder_path() -> Path:
    return data_file("neurofinder_crop_480x256x256.tif")


@pytest.fixture(scope="session")
def movie300():
    """The issue's reference case: 300 x 128 x 128, subpixel walk up to 5 px."""
    return xnormcorre.datasets.synthetic_movie(n_frames=300, shape=(128, 128), max_shift=5, seed=0)


@pytest.fixture(scope="session")
def small_movie():
    return xnormcorre.datasets.synthetic_movie(n_frames=40, shape=(64, 64), max_shift=3, seed=3)


@pytest.fixture(scope="session")
def true_shifts():
    def get(movie):
        return np.stack([movie.true_shift_y.values, movie.true_shift_x.values], axis=1)

    return get


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["np"] = np
    doctest_namespace["xnormcorre"] = xnormcorre


@pytest.fixture(scope="session")
def synthetic_tiff(tmp_path_factory):
    """A 60 x 64 x 64 uint16 synthetic movie written as a multi-page TIFF: ``(path, array)``."""
    import tifffile

    movie = xnormcorre.datasets.synthetic_movie(n_frames=60, shape=(64, 64), max_shift=3, seed=5)
    arr = np.clip(np.rint(movie.values), 0, 65535).astype(np.uint16)
    path = tmp_path_factory.mktemp("synthetic_tiff") / "movie.tif"
    tifffile.imwrite(path, arr)
    return path, arr


def _log_reads(monkeypatch, method: str) -> list[int]:
    """Patch ``TiffPart.<method>`` to log the indices it is asked for; the log."""
    log: list[int] = []
    orig = getattr(tiff_files.TiffPart, method)

    def spy(self, idx, *args):
        log.extend(int(i) for i in idx)
        return orig(self, idx, *args)

    monkeypatch.setattr(tiff_files.TiffPart, method, spy)
    return log


@pytest.fixture
def reads(monkeypatch):
    """Frame numbers read from TIFF files (one entry per frame read)."""
    return _log_reads(monkeypatch, "read")


@pytest.fixture
def planes_read(monkeypatch):
    """Image planes (pages) the TIFF backend reads, in order."""
    return _log_reads(monkeypatch, "_read_planes")


@pytest.fixture(scope="session")
def tree_digest():
    """``tree_digest(folder)``: a hash of every file name and content under ``folder``."""

    def digest(path: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode())
            if p.is_file():
                h.update(p.read_bytes())
        return h.hexdigest()

    return digest


@pytest.fixture(scope="session")
def kill_when():
    """``kill_when(child, ready, what, timeout=240)``: SIGKILL the subprocess ``child`` (a
    ``Popen`` with ``stderr=PIPE``) once ``ready()`` is true; the test fails if the child
    ends first or ``ready()`` is not true within ``timeout`` seconds (``"the run did not
    <what> in time"``).  The child never outlives the call."""

    def kill(child, ready, what: str, timeout: float = 240) -> None:
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if child.poll() is not None:
                    pytest.fail(f"the run ended before it was killed: {child.stderr.read().decode()[-2000:]}")
                if ready():
                    break
                time.sleep(0.05)
            else:
                pytest.fail(f"the run did not {what} in time")
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    return kill
