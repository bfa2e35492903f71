"""Dependency direction: module is pure torch; tl and data.simulate never import the model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pdae_sc"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
    return names


@pytest.mark.parametrize("path", sorted((SRC / "module").glob("*.py")), ids=lambda p: p.name)
def test_module_imports_torch_only(path):
    third_party = {n.split(".")[0] for n in _imports(path) if not n.startswith(".")}
    assert third_party <= {
        "__future__",
        "torch",
        "collections",
        "dataclasses",
        "typing",
        "math",
    }, third_party


@pytest.mark.parametrize(
    "path",
    [*sorted((SRC / "tl").glob("*.py")), SRC / "data" / "_simulate.py"],
    ids=lambda p: p.name,
)
def test_tools_do_not_import_model(path):
    assert not any("model" in n for n in _imports(path)), _imports(path)


@pytest.mark.parametrize("path", sorted((SRC / "pp").glob("*.py")), ids=lambda p: p.name)
def test_preprocessing_imports_only_data_helpers(path):
    """pp runs before a model exists: it may use data's label helpers, never model/tl/pl."""
    ours = {n for n in _imports(path) if n.startswith(("pdae_sc", "."))}
    assert not any(n.split(".")[1:2] in (["model"], ["tl"], ["pl"]) for n in ours), ours
    assert all(n.startswith((".", "pdae_sc.data.")) for n in ours), ours


def test_data_does_not_import_pp():
    """pp builds on data's label helpers; data imports pp only for the deprecated aliases of
    its ``__init__`` (names that moved to pp, resolved on first use)."""
    reach = {
        p.name
        for p in (SRC / "data").glob("*.py")
        if p.name != "__init__.py"
        and any(n == "pdae_sc" or n.startswith("pdae_sc.pp") for n in _imports(p))
    }
    assert not reach, reach

