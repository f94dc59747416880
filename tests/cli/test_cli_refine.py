"""``--refine-patches``: parsed into pwrigid(refine_patches=True), refused without --pw-rigid."""

from __future__ import annotations

import pytest

from xnormcorre.cli import CLIError, build_parser
from xnormcorre.cli.commands import _registration_kwargs


def _kwargs(*argv: str) -> dict:
    return _registration_kwargs(build_parser().parse_args(["correct", "m.tif", "-o", "out.tif", *argv]))


def test_refine_patches_flag():
    # without the flag: pwrigid's own default (off for frames, on for volumes)
    assert _kwargs("--pw-rigid")["refine_patches"] is None
    assert _kwargs("--pw-rigid", "--refine-patches")["refine_patches"] is True
    assert "refine_patches" not in _kwargs()
    with pytest.raises(CLIError, match="--refine-patches applies to --pw-rigid only"):
        _kwargs("--refine-patches")
