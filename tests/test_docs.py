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
