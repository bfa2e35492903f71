"""The ``pdae_sc`` loggers print their INFO lines by default, as scvi-tools does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

SETUP_MUDATA = """
import logging, warnings
warnings.simplefilter("ignore")
import mudata as md, scvi
import pdae_sc as pdae
{before}
assert logging.getLogger().handlers == [{root}]  # importing pdae_sc left the root alone
adata = pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=10, seed=0)
def setup(n_unassigned):
    labels = adata.obs["perturbation"].astype(str).to_numpy().astype(object)
    labels[-n_unassigned:] = "unassigned"
    rna = adata.copy()
    rna.obs["perturbation"] = labels
    pdae.model.PDAE.setup_mudata(md.MuData({{"rna": rna}}), perturbation_key="perturbation")
setup(3)
scvi.settings.verbosity = logging.WARNING  # silences pdae-sc's INFO lines as scvi's
setup(4)
"""


def _run(before: str = "", root: str = "") -> str:
    code = SETUP_MUDATA.format(before=before, root=root)
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}  # packages found as here
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_info_lines_are_shown_by_default_and_follow_scvi_verbosity():
    out = _run()
    assert out.count("have a label in obs['perturbation']; 3 left out of training") == 1
    assert "4 left out of training" not in out


def test_configured_logging_gets_each_line_once():
    out = _run("logging.basicConfig(level=logging.INFO)", root="logging.getLogger().handlers[0]")
    assert out.count("3 left out of training") == 1
