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
