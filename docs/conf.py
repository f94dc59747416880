"""Sphinx configuration of the xnormcorre documentation.

Build (warnings are errors, as in CI)::

    pip install -e ".[docs]"
    python docs/run_notebooks.py            # optional: executed notebooks -> docs/examples/
    sphinx-build -W -b html docs docs/_build/html

At start-up this file writes ``docs/_generated/`` (command-line help, result Dataset
reprs, the benchmark results) and copies the stored, output-free notebooks into
``docs/examples/`` unless executed copies from ``run_notebooks.py`` are there and newer.
Nothing is downloaded: intersphinx links are on only with ``XNORMCORRE_DOCS_INTERSPHINX=1``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import sphinx_autosummary_accessors

import xnormcorre

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GENERATED = HERE / "_generated"
EXAMPLES = HERE / "examples"

# -- project -----------------------------------------------------------------------------
project = "xnormcorre"
author = "xnormcorre developers"
copyright = "xnormcorre developers"
release = xnormcorre.__version__
version = ".".join(release.split(".")[:2])

# -- extensions --------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_autosummary_accessors",
    "myst_nb",
]
templates_path = ["_templates", sphinx_autosummary_accessors.templates_path]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]

autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # docs/run_notebooks.py executes them (CI runs it before this build)
nb_merge_streams = True
# the benchmark results are written by hand by another page's author: a skipped heading
# level there must not fail the build
suppress_warnings = ["myst.header"]

intersphinx_mapping = {}
if os.environ.get("XNORMCORRE_DOCS_INTERSPHINX"):
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "xarray": ("https://docs.xarray.dev/en/stable", None),
        "dask": ("https://docs.dask.org/en/stable", None),
        "jax": ("https://docs.jax.dev/en/latest", None),
    }

# -- HTML --------------------------------------------------------------------------------
try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {"show_toc_level": 2, "navigation_with_keys": False}
except ImportError:  # pragma: no cover
    html_theme = "alabaster"
html_title = f"xnormcorre {release}"
html_static_path: list[str] = []


# -- generated pages ---------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    """Write only when changed (keeps Sphinx's incremental builds incremental)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _cli_help() -> None:
    """``xnormcorre [COMMAND] --help`` as text files for the command-line page."""
    from xnormcorre.cli import build_parser

    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal width
    parser = build_parser()
    _write(GENERATED / "cli_xnormcorre.txt", parser.format_help())
    for name, subparser in parser._subparsers._group_actions[0].choices.items():
        _write(GENERATED / f"cli_{name}.txt", subparser.format_help())


def _result_reprs() -> None:
    """Reprs of small rigid and piecewise-rigid results for the data-model page."""
    movie = xnormcorre.datasets.synthetic_movie(n_frames=20, shape=(96, 96), max_shift=2, seed=0)
    rigid = xnormcorre.rigid(movie, max_shifts=(4, 4))
    pw = xnormcorre.pwrigid(movie, max_shifts=(4, 4), strides=(32, 32), overlaps=(16, 16))
    with xr_display():
        _write(GENERATED / "rigid_repr.txt", repr(rigid.drop_vars(["true_shift_y", "true_shift_x"])) + "\n")
        _write(GENERATED / "pwrigid_repr.txt", repr(pw.drop_vars(["true_shift_y", "true_shift_x"])) + "\n")
        _write(
            GENERATED / "rigid_shifts_repr.txt",
            repr(rigid.shifts.drop_vars(["true_shift_y", "true_shift_x"])) + "\n",
        )
    attrs = "\n".join(f"{k}: {v!r}" for k, v in rigid.attrs.items() if k != "parameters")
    _write(GENERATED / "rigid_attrs.txt", attrs + "\n")


@contextlib.contextmanager
def xr_display():
    import xarray as xr

    with xr.set_options(display_width=100, display_max_rows=40, display_expand_attrs=False):
        yield


_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _benchmark_results() -> None:
    """``benchmarks/RESULTS.md`` made safe to include (or a placeholder without it).

    Headings are demoted one level (the page has its own title); relative links and
    images, which point into the repository rather than the docs, become plain text.
    """
    src = ROOT / "benchmarks" / "RESULTS.md"
    text = src.read_text(encoding="utf-8") if src.exists() else ""
    if len(text.strip()) < 20:
        _write(
            GENERATED / "benchmark_results.md",
            "No benchmark results have been published yet: run the scripts in `benchmarks/` "
            "(see its README) to produce `benchmarks/RESULTS.md`.\n",
        )
        return

    def link(m: re.Match) -> str:
        bang, label, target = m.groups()
        if re.match(r"^[a-z]+://", target) and not bang:
            return m.group(0)
        return f"{label} (`{target}`)" if bang else f"{label}"

    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            if line.startswith("#"):
                line = "#" + line
            line = _LINK.sub(link, line)
        out.append(line)
    _write(GENERATED / "benchmark_results.md", "\n".join(out) + "\n")


def _notebooks() -> None:
    """Stored notebooks -> docs/examples/, unless a newer executed copy is there."""
    EXAMPLES.mkdir(exist_ok=True)
    for src in sorted((ROOT / "notebooks").glob("*.ipynb")):
        dst = EXAMPLES / src.name
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            shutil.copy2(src, dst)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(io.StringIO()):
        _cli_help()
    _result_reprs()
_benchmark_results()
_notebooks()
sys.stdout.flush()
