"""``open_movie`` checks ``chunks`` before opening the file: one clear error naming the value."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import xnormcorre


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, np.zeros((12, 16, 16), np.uint16))
    return p


@pytest.mark.parametrize(
    ("chunks", "error", "match"),
    [
        (-5, ValueError, r"chunks=-5: a chunk size must be an integer >= 1 \(frames\), -1 or None"),
        (0, ValueError, r"chunks=0: a chunk size must be an integer >= 1"),
        ({"time": 0}, ValueError, r"chunks=\{'time': 0\}: a chunk size must be an integer >= 1"),
        ({"time": -5}, ValueError, r"chunks=\{'time': -5\}: a chunk size"),
        ({"frames": 4}, ValueError, r"chunks names 'frames', not a dimension of a movie; use 'time'"),
        ({"time": "x"}, ValueError, r"chunks=\{'time': 'x'\}"),
        (True, TypeError, r"chunks must be an int, \"auto\" or a dict"),
        (2.5, TypeError, r"chunks must be an int, \"auto\" or a dict"),
    ],
)
def test_bad_chunks_are_refused(path, chunks, error, match):
    with pytest.raises(error, match=match):
        xnormcorre.open_movie(path, chunks=chunks)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [(5, (5, 5, 2)), (-1, (12,)), ({"time": 4}, (4, 4, 4)), ({"time": (6, 6)}, (6, 6)), ("auto", (12,))],
)
def test_good_chunks_still_work(path, chunks, expected):
    movie = xnormcorre.open_movie(path, chunks=chunks)
    assert movie.chunks[0] == expected
    movie.close()
