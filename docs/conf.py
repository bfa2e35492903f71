"""Sphinx configuration of the pdae-sc documentation.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The tutorials are the notebooks in ``tutorials/``, rendered with their stored outputs
(``nb_execution_mode = "off"``); ``python tutorials/execute.py`` refreshes those outputs.
"""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))  # document the source tree, installed or not

# -- Project -------------------------------------------------------------------------------
project = "pdae-sc"
author = "pdae-sc developers"
copyright = "pdae-sc developers"
try:
    release = version("pdae-sc")
except PackageNotFoundError:  # pragma: no cover - docs built from a bare source tree
    release = "0.0.0"
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
templates_path = ["_templates"]
default_role = "literal"  # `x` in a docstring is code, as in scanpy
pygments_style = "default"
suppress_warnings = [
    # Notebook outputs carry mime types that docutils does not render (widget state, etc.).
    "mystnb.unknown_mime_type",
]

# -- autodoc / autosummary / napoleon ------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes" as :ivar: fields, not duplicate attribute entries

# -- MyST / MyST-NB ------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # render the outputs stored in the notebooks
nb_merge_streams = True

# -- HTML ----------------------------------------------------------------------------------
try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:  # pragma: no cover - any Sphinx install still builds
    html_theme = "alabaster"
html_title = f"pdae-sc {release}"
html_static_path: list[str] = []
html_show_sourcelink = False


# -- The tutorials live in ../tutorials; expose them to Sphinx as docs/tutorials -------------
def _link_tutorials() -> None:
    source, target = ROOT / "tutorials", HERE / "tutorials"
    if target.is_symlink() or not source.is_dir():
        return
    if target.exists():  # a copy from an earlier build on a system without symlinks
        shutil.rmtree(target)
    try:
        target.symlink_to(Path("..") / "tutorials", target_is_directory=True)
    except OSError:  # pragma: no cover - e.g. Windows without symlink rights
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.py", ".*"))


_link_tutorials()
exclude_patterns += ["tutorials/*.py", "tutorials/README*"]

# autosummary writes one stub per API entry to generated/ but never removes old ones; a stub
# left from a renamed function would be "not in any toctree" (an error with -W).
shutil.rmtree(HERE / "generated", ignore_errors=True)


# -- Returns sections written as prose (scanpy style) --------------------------------------
def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _prose_returns(app, what, name, obj, options, lines: list[str]) -> None:
    """Let napoleon render a numpydoc ``Returns`` section written as prose.

    Napoleon reads the first line of a ``Returns`` section as a type. Our docstrings
    describe the returned object, and every AnnData slot written, in sentences (as scanpy
    does). An empty ``:`` entry with the prose indented under it renders as
    ``Returns: <prose>``.
    """
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        rule = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if lines[i].strip() != "Returns" or not rule or set(rule) != {"-"}:
            i += 1
            continue
        indent = _indent(lines[i])
        out.append(lines[i + 1])
        j = i + 2
        body: list[str] = []
        while j < len(lines):
            line, nxt = lines[j], (lines[j + 1].strip() if j + 1 < len(lines) else "")
            header = (
                line.strip() and _indent(line) == indent and len(nxt) >= 3 and set(nxt) == {"-"}
            )
            if header:
                break
            body.append(line)
            j += 1
        while body and not body[-1].strip():
            body.pop()
        text = [b for b in body if b.strip()]
        structured = len(text) > 1 and _indent(text[1]) > _indent(text[0])
        if structured:  # "name : type" lines with indented descriptions: napoleon's job
            out.extend(body)
            i = j
            continue
        out.append(" " * indent + ":")
        out.extend(" " * (indent + 4) + b[indent:] if b.strip() else "" for b in body)
        out.append("")
        i = j
    lines[:] = out


def setup(app):
    # Before napoleon (priority 500) so that it never sees the prose sections.
    app.connect("autodoc-process-docstring", _prose_returns, priority=100)
