"""Run every tutorial notebook top to bottom in fast mode (a couple of training epochs).

The notebooks read ``PDAE_TUTORIAL_FAST=1`` to shorten training; they are executed with
``tutorials/execute.py`` (the script that also stores their outputs) and not written back.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

pytest.importorskip("nbclient")
pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")


def _load_execute():
    spec = importlib.util.spec_from_file_location(
        "_pdae_tutorials_execute", TUTORIALS / "execute.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tutorials_exist():
    names = {p.name for p in NOTEBOOKS}
    expected = {"quickstart", "combinatorial_perturbseq", "real_screen", "beyond_the_span"}
    assert {f"{name}.ipynb" for name in expected} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_stored_outputs(path):
    """The docs render the stored outputs, so every code cell must have been run."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    not_run = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not not_run, f"{path.name}: code cells {not_run} have no stored outputs"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was stored with an error: {errors[0].get('ename')}"
    first = code[0].source
    assert "PDAE_TUTORIAL_FAST" in first, "the first code cell must read PDAE_TUTORIAL_FAST"


def _rich_outputs(cell) -> set[str]:
    """Figures and tables a code cell displays (what the rendered docs show)."""
    kinds = set()
    for out in cell.outputs:
        if out.output_type in ("display_data", "execute_result"):
            kinds |= {k for k in out.get("data", {}) if k in ("image/png", "text/html")}
    return kinds


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_fast(path):
    """Every cell runs (nbclient raises on an error), shows the figures and tables of the
    stored outputs, and no pdae call in it is deprecated."""
    import nbformat

    execute = _load_execute()
    nb = execute.execute(path, fast=True, timeout=600)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "FAST=True" in streams, "the notebook did not pick up PDAE_TUTORIAL_FAST=1"
    stored = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    ran = [c for c in nb.cells if c.cell_type == "code"]
    lost = {
        i: sorted(_rich_outputs(a) - _rich_outputs(b))
        for i, (a, b) in enumerate(zip(stored, ran, strict=True))
        if _rich_outputs(a) - _rich_outputs(b)
    }
    assert not lost, f"{path.name}: code cells stopped displaying {lost}"
    deprecated = [
        line for line in streams.splitlines() if "FutureWarning" in line and "pdae" in line
    ]
    assert not deprecated, f"{path.name} uses deprecated pdae names: {deprecated[:3]}"


def test_kernel_is_this_python(tmp_path):
    """The notebooks run in the interpreter of the test session, not some other python3."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, sys; print(sys.executable)")]
    path = tmp_path / "which.ipynb"
    nbformat.write(nb, path)
    out = _load_execute().execute(path, fast=True, timeout=120)
    assert out.cells[0].outputs[0]["text"].strip() == sys.executable
