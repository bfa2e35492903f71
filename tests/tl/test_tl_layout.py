"""The tools share helpers through ``tl/_common.py``, not by importing each other's privates."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TL = Path(__file__).parents[2] / "src" / "pdae_sc" / "tl"


@pytest.mark.parametrize("path", sorted(TL.glob("_*.py")), ids=lambda p: p.name)
def test_no_private_names_imported_from_sibling_modules(path):
    tree = ast.parse(path.read_text())
    reach_ins = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module != "_common"
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not reach_ins, f"{path.name} imports private names {reach_ins}; use tl/_common.py"
