"""The documentation builds without warnings and documents every public name."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SUBPACKAGES = ["model", "module", "data", "datasets", "pp", "tl", "pl"]


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_api_reference_lists_every_public_name(name):
    """docs/api.md has an autosummary entry for each name in the subpackage's __all__."""
    text = (DOCS / "api.md").read_text()
    listed = set(re.findall(rf"^\s+{name}\.(\w+)\s*$", text, flags=re.MULTILINE))
    public = set(importlib.import_module(f"pdae_sc.{name}").__all__)
    assert public - listed == set(), f"add to docs/api.md: {sorted(public - listed)}"
    assert listed - public == set(), f"not public any more: {sorted(listed - public)}"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "-d",
        str(tmp_path / "doctrees"),
        str(DOCS),
        str(tmp_path / "html"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stdout}\n{proc.stderr}"
    html = tmp_path / "html"
    for page in ["index", "user_guide", "api", "tutorials/quickstart"]:
        assert (html / f"{page}.html").exists(), f"{page}.html was not built"
    assert (html / "generated" / "pdae_sc.model.PDAE.html").exists()


def _readme_simulate_call() -> str:
    usage = (ROOT / "README.md").read_text().split("## Usage", 1)[1]
    code = usage.split("```python", 1)[1].split("```", 1)[0]
    (call,) = [line.split("=", 1)[1].strip() for line in code.splitlines() if "simulate(" in line]
    return call


def test_readme_and_quickstart_use_or_explain_the_scale_users_have():
    """README's data are log-normalised like a screen; the quickstart says what its X is."""
    import json

    import numpy as np

    import pdae_sc as pdae

    adata = eval(_readme_simulate_call(), {"pdae": pdae})  # the README's own call
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    # cell-eval's range
    assert x.min() >= 0
    assert x.max() < 15
    assert "counts" in adata.layers
    # the quickstart keeps the paper's default scale and must say so where it simulates
    cells = json.loads((ROOT / "tutorials" / "quickstart.ipynb").read_text())["cells"]
    i = next(
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "code" and "pdae.data.simulate(" in "".join(c["source"])
    )
    note = "".join(cells[i - 1]["source"])
    assert "counts=True" in note
    assert "negative" in note
    assert "normalize_counts" in note
    default = pdae.data.simulate(n_perturbations=8, n_genes=100, n_cells_per_condition=80)
    assert 0.3 < float((np.asarray(default.X) < 0).mean()) < 0.7  # "about half negative"
