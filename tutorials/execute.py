"""Execute the tutorial notebooks, storing their outputs in place.

Usage (from the repository root)::

    python tutorials/execute.py                      # run every notebook, save the outputs
    python tutorials/execute.py quickstart.ipynb     # only these notebooks
    python tutorials/execute.py --fast               # quick check: few epochs, saves nothing

``--fast`` sets ``PDAE_TUTORIAL_FAST=1``, which the notebooks read to train for a couple of
epochs; the notebooks are executed but not written back, so the stored outputs stay those of
a full run. The kernel runs the Python that runs this script, which needs the
``tutorials`` extra (``pip install -e ".[tutorials]"``: muon, nbclient, nbformat, ipykernel).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from traitlets import default

HERE = Path(__file__).resolve().parent
FAST_ENV = "PDAE_TUTORIAL_FAST"


class ThisPythonKernelManager(AsyncKernelManager):
    """Start the ``python3`` kernel with the interpreter running this script.

    Only ipykernel's own spec is searched (``sys.executable -m ipykernel_launcher``), so a
    ``python3`` kernelspec installed elsewhere (e.g. in ``~/.local/share/jupyter``) for
    another Python cannot be picked up by mistake.
    """

    @default("kernel_spec_manager")
    def _default_kernel_spec_manager(self) -> KernelSpecManager:
        return KernelSpecManager(parent=self, kernel_dirs=[])


def notebooks(names: list[str] | None = None) -> list[Path]:
    """The tutorial notebooks, sorted by name (or the named ones)."""
    if not names:
        return sorted(HERE.glob("*.ipynb"))
    paths = [Path(n) if Path(n).exists() else HERE / n for n in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"No such notebook(s): {missing}")
    return paths


def execute(path: Path, *, fast: bool, timeout: int = 1200) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel and return it with its outputs.

    The kernel runs in the notebook's folder, with ``PDAE_TUTORIAL_FAST`` set to ``"1"``
    when ``fast`` and removed otherwise. Raises ``nbclient.exceptions.CellExecutionError``
    on the first failing cell.
    """
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env.pop(FAST_ENV, None)
    if fast:
        env[FAST_ENV] = "1"
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures as outputs
    client = NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=ThisPythonKernelManager,
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=env)
    return nb


def _clean(nb: nbformat.NotebookNode) -> None:
    """Drop run-specific metadata so that re-running gives small diffs."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"set {FAST_ENV}=1 (a few epochs) and do not write the notebooks back",
    )
    args = parser.parse_args(argv)
    for path in notebooks(args.notebooks):
        start = time.perf_counter()
        nb = execute(path, fast=args.fast)
        secs = time.perf_counter() - start
        if args.fast:
            print(f"{path.name}: ran in {secs:.0f} s (fast, not saved)")
        else:
            _clean(nb)
            nbformat.write(nb, path)
            print(f"{path.name}: ran in {secs:.0f} s, outputs saved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
