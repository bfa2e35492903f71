"""The declared licence ships as a file, and the version has a single source (pyproject)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pdae_sc as pdae

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_license_file_matches_the_declared_bsd3_licence():
    assert PYPROJECT["license"] == "BSD-3-Clause"
    assert PYPROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert re.search(r"^Copyright \(c\) \d{4}, pdae-sc developers$", text, flags=re.MULTILINE)
    # the three clauses, the third being the non-endorsement clause that makes it BSD-3
    assert re.findall(r"^(\d)\. ", text, flags=re.MULTILINE) == ["1", "2", "3"]
    assert "endorse or promote products derived" in text


def test_version_comes_from_the_package_metadata_only():
    assert pdae.__version__ == version("pdae-sc")
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", PYPROJECT["version"])
    # No module, doc page or config repeats the version by hand.
    literal = re.compile(r"""(__version__|release|version)\s*=\s*["']\d+\.\d+\.\d+""")
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "docs").glob("*.py")]:
        hits = [m.group(0) for m in literal.finditer(path.read_text())]
        assert all(h.endswith('"0.0.0') or h.endswith("'0.0.0") for h in hits), (path, hits)
