"""Execute the example notebooks in ``notebooks/`` (CI, and before building the docs).

Each notebook is run top to bottom in a fresh ``python3`` kernel, in the notebooks
folder (so ``../../shared/data`` finds the real movies beside the repository, else the
notebook falls back to the synthetic generator).  The stored notebooks must have their
outputs stripped; the executed copies go to ``--output-dir`` (default
``docs/examples``, where the Sphinx build renders them) and never overwrite the
sources.

Usage::

    python docs/run_notebooks.py                 # all notebooks
    python docs/run_notebooks.py notebooks/02_piecewise_rigid.ipynb
    python docs/run_notebooks.py --strip         # strip outputs of the stored notebooks in place

Ends with a line ``notebooks: N passed, N failed``; exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "docs" / "examples"
KERNEL = "xnormcorre-run-notebooks"


def kernel_for_this_interpreter() -> Path:
    """A kernelspec that runs ``sys.executable`` (first on ``JUPYTER_PATH``): no stray
    ``python3`` kernelspec of another environment can be picked instead."""
    root = Path(tempfile.mkdtemp(prefix="xnormcorre_kernel_"))
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(root), os.environ.get("JUPYTER_PATH")) if p)
    return root


def has_outputs(nb) -> bool:
    """True if any code cell stores outputs or an execution count."""
    return any(c.cell_type == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb.cells)


def strip(nb):
    """Remove outputs and execution counts (in place); returns the notebook."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return nb


def run(path: Path, out_dir: Path, timeout: int) -> tuple[bool, float, str]:
    """Execute one notebook; returns (ok, seconds, message)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    if has_outputs(nb):
        return (
            False,
            0.0,
            f"{path.name} has stored outputs: strip them (python docs/run_notebooks.py --strip)",
        )
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        return False, time.perf_counter() - t0, f"{path.name}: " + (lines[-1] if lines else "cell failed")
    except Exception as exc:  # kernel died, timeout, ...
        return False, time.perf_counter() - t0, f"{path.name}: {type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    return True, elapsed, f"{path.name}: {elapsed:.1f} s"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)")
    p.add_argument("--output-dir", type=Path, default=DEFAULT_OUT, help="where executed copies go")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default: %(default)s)")
    p.add_argument(
        "--budget", type=float, default=None, help="fail a notebook that takes longer than this many seconds"
    )
    p.add_argument("--strip", action="store_true", help="strip outputs of the stored notebooks and exit")
    args = p.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print(f"no notebooks found in {NOTEBOOKS}", file=sys.stderr)
        return 1
    if args.strip:
        import nbformat

        for path in paths:
            nb = nbformat.read(path, as_version=4)
            if has_outputs(nb):
                nbformat.write(strip(nb), path)
                print(f"stripped {path}")
        return 0
    passed = failed = 0
    kernel_root = kernel_for_this_interpreter()
    try:
        for path in paths:
            ok, elapsed, msg = run(path.resolve(), args.output_dir, args.timeout)
            if ok and args.budget is not None and elapsed > args.budget:
                ok, msg = False, f"{msg}, over the budget of {args.budget:g} s"
            print(("ok     " if ok else "FAILED ") + msg, flush=True)
            passed += ok
            failed += not ok
    finally:
        shutil.rmtree(kernel_root, ignore_errors=True)
    print(f"notebooks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
