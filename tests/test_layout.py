"""Dependency direction: module is pure torch; tl and data.simulate never import the model."""

from __future__ import annotations

import ast
import re
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


def _code_lines(source: str, node) -> int:
    """Lines of code of a function: no docstrings, comments or blank lines."""
    skip = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if ast.get_docstring(sub, clean=False) is not None:
                doc = sub.body[0]
                skip |= set(range(doc.lineno, doc.end_lineno + 1))
    lines = source.splitlines()
    return sum(
        1
        for i in range(node.lineno, node.end_lineno + 1)
        if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")
    )


def test_the_model_room_has_small_files_and_functions():
    """No file of model/ over 500 lines; no function over 80 lines of code there or in the
    baselines."""
    files = sorted((SRC / "model").glob("*.py"))
    long_files = {p.name: n for p in files if (n := len(p.read_text().splitlines())) > 500}
    assert not long_files, long_files
    long_functions = {}
    for path in [*files, SRC / "tl" / "_baselines.py"]:
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and (n := _code_lines(source, node)) > 80:
                long_functions[f"{path.name}::{node.name}"] = n
    assert not long_functions, long_functions


def test_one_file_reads_the_setup_arguments_from_the_registry():
    """Everything else reads named attributes of ``PDAE.registration``."""
    readers = [
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if re.search(r"registry\[[\"']setup_args[\"']\]", p.read_text())
    ]
    assert readers == ["model/_registration.py"], readers


def test_the_baselines_build_no_obs_columns():
    """Predicted cells of every method come from data/_prediction_adata.prediction_adata."""
    source = (SRC / "tl" / "_baselines.py").read_text()
    assert not re.search(r"\bobs\[[^\]]+\]\s*=[^=]", source)
    assert not re.search(r"[\"']pdae_source", source.replace('``obs["pdae_source', ""))
    assert "prediction_adata(" in source
