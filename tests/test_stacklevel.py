"""Warnings name the user's line, whatever the package's call depth (xnormcorre.stacklevel)."""

from __future__ import annotations

import warnings
from pathlib import Path

from xnormcorre import stacklevel


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    assert len(caught) == 1
    return caught[0]


def test_warn_from_outside_the_package_names_the_caller():
    def users_function():
        stacklevel.warn("from the user", RuntimeWarning)  # this line

    w = _caught(users_function)
    assert w.filename == __file__
    assert w.category is RuntimeWarning and str(w.message) == "from the user"
    assert "this line" in Path(__file__).read_text().splitlines()[w.lineno - 1]


def test_package_frames_are_skipped(monkeypatch):
    """Frames of the package's modules (here: a function whose globals claim to be one)
    are walked past, however many."""
    namespace = {"__name__": "xnormcorre.core.fake", "stacklevel": stacklevel}
    exec(
        "def deep():\n    stacklevel.warn('deep')\ndef middle():\n    deep()\ndef outer():\n    middle()\n",
        namespace,
    )
    w = _caught(lambda: namespace["outer"]())  # the lambda is this file's
    assert w.filename == __file__
