"""assign_guides on hand-built guide count matrices; add_guide_assignment on a .h5mu file."""

from __future__ import annotations

import logging

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import pdae_sc as pdae
from pdae_sc.pp._guides import add_guide_assignment, assign_guides

# mudata 0.3 announces a change of MuData.update(); not ours to act on
pytestmark = pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")

GUIDES = ["A_guide1", "A_guide2", "B_sg1", "C_g1", "non-targeting", "NT_2"]
# one row per case; expected label with min_counts=5 (inclusive) and max_perturbations=2
CASES = {
    "single": ([10, 0, 0, 0, 0, 0], "A"),
    "same_gene": ([6, 8, 0, 0, 0, 0], "A"),
    "combo": ([7, 0, 9, 0, 0, 0], "A+B"),
    "control": ([0, 0, 0, 0, 12, 0], "ctrl"),
    "two_controls": ([0, 0, 0, 0, 6, 7], "ctrl"),
    "control_and_target": ([0, 0, 5, 0, 6, 0], "B"),
    "below_threshold": ([4, 0, 3, 0, 0, 0], "unassigned"),
    "multiplet": ([5, 0, 6, 7, 0, 0], "multiplet"),
    "empty": ([0, 0, 0, 0, 0, 0], "unassigned"),
    "dominant": ([5, 0, 20, 0, 0, 0], "A+B"),
}


def _guide_adata(as_sparse: bool) -> ad.AnnData:
    x = np.array([row for row, _ in CASES.values()], dtype=np.float32)
    return ad.AnnData(
        sparse.csr_matrix(x) if as_sparse else x,
        obs=pd.DataFrame(index=list(CASES)),
        var=pd.DataFrame(index=GUIDES),
    )


@pytest.mark.parametrize("as_sparse", [False, True])
def test_assignment_rule(as_sparse, caplog):
    gdo = _guide_adata(as_sparse)
    with caplog.at_level(logging.INFO, logger="pdae_sc"):
        report = assign_guides(gdo, min_counts=5)
    assert report.index.equals(gdo.obs_names)
    assert report["perturbation"].to_dict() == {k: lab for k, (_, lab) in CASES.items()}
    assert list(report.columns) == [
        "perturbation",
        "n_guides",
        "guides",
        "max_count",
        "total_counts",
    ]
    assert report.loc["same_gene", "guides"] == "A_guide2,A_guide1"  # highest count first
    assert report.loc["same_gene", "n_guides"] == 2
    assert report.loc["multiplet", "n_guides"] == 3
    assert report.loc["below_threshold", "max_count"] == 4
    assert report.loc["empty", "guides"] == ""
    assert "10 cells; 7 assigned (2 control, 2 combinations), 2 unassigned, 1 multiplets" in (
        caplog.text
    )


def test_min_fraction_and_no_multiplet_limit():
    gdo = _guide_adata(as_sparse=True)
    report = assign_guides(gdo, min_counts=5, min_fraction=0.3, max_perturbations=None)
    assert report.loc["dominant", "perturbation"] == "B"  # A has 5/25 = 0.2 of the UMIs
    assert report.loc["multiplet", "perturbation"] == "B+C"  # A has 5/18 < 0.3
    report = assign_guides(gdo, min_counts=5, max_perturbations=None)
    assert report.loc["multiplet", "perturbation"] == "A+B+C"


def test_mapping_and_control_guides():
    gdo = _guide_adata(as_sparse=False)
    mapping = dict(zip(GUIDES, ["KLF1", "KLF1", "MAP2K6", "CEBPA", "ctrl", "ctrl"], strict=True))
    report = assign_guides(gdo, guide_to_perturbation=mapping)
    assert report.loc["combo", "perturbation"] == "KLF1+MAP2K6"
    assert report.loc["control", "perturbation"] == "ctrl"
    with pytest.raises(KeyError, match=r"no entry for 1 guides.*NT_2"):
        assign_guides(gdo, guide_to_perturbation={g: "X" for g in GUIDES[:-1]})
    report = assign_guides(gdo, control_guides=["C_g1"], guide_pattern=None)
    assert report.loc["multiplet", "perturbation"] == "A_guide1+B_sg1"
    assert report.loc["control", "perturbation"] == "ctrl"  # control value, no pattern needed


def test_input_errors():
    gdo = _guide_adata(as_sparse=False)
    with pytest.raises(ValueError, match="min_counts=0"):
        assign_guides(gdo, min_counts=0)
    with pytest.raises(ValueError, match=r"min_fraction=1\.5"):
        assign_guides(gdo, min_fraction=1.5)
    with pytest.raises(ValueError, match="max_perturbations=0"):
        assign_guides(gdo, max_perturbations=0)
    neg = gdo.copy()
    neg.X[0, 0] = -1
    with pytest.raises(ValueError, match="non-negative"):
        assign_guides(neg)
    with pytest.raises(TypeError, match=r"mdata\['gdo'\]"):
        assign_guides(md.MuData({"gdo": gdo}))
    with pytest.raises(KeyError, match="layer='counts'"):
        assign_guides(gdo, layer="counts")


def test_mudata_roundtrip(tmp_path, caplog):
    gdo = _guide_adata(as_sparse=True)
    cells = [*CASES, "no_guide_data"]
    rng = np.random.default_rng(0)
    rna = ad.AnnData(rng.random((len(cells), 4)).astype(np.float32), obs=pd.DataFrame(index=cells))
    path = tmp_path / "screen.h5mu"
    md.MuData({"rna": rna, "gdo": gdo}).write_h5mu(path)
    mdata = md.read_h5mu(path)

    with caplog.at_level(logging.INFO, logger="pdae_sc"):
        report = add_guide_assignment(mdata, min_counts=5)
    obs = mdata["rna"].obs
    assert mdata["rna"].n_obs == len(cells)  # no cell removed
    assert report.index.equals(mdata["rna"].obs_names)
    assert obs.loc["combo", "perturbation"] == "A+B"
    assert obs.loc["no_guide_data", "perturbation"] == "unassigned"
    assert not report.loc["no_guide_data", "has_guide_data"]
    assert obs["perturbation_assigned"].sum() == 7
    assert not obs.loc[["multiplet", "empty"], "perturbation_assigned"].any()
    assert "11 cells in mdata['rna'], 10 with guide data; 7 assigned, 3 unassigned" in caplog.text
    assert "perturbation" not in mdata["gdo"].obs

    # the assigned cells go straight into setup_anndata (2+ cells per condition needed)
    train = mdata["rna"][obs["perturbation_assigned"]].copy()
    train = train[train.obs["perturbation"].isin(["A", "ctrl", "A+B"])].copy()
    pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")


def test_mudata_errors():
    gdo = _guide_adata(as_sparse=False)
    with pytest.raises(TypeError, match="assign_guides"):
        add_guide_assignment(gdo)
    rna = ad.AnnData(np.zeros((2, 1)), obs=pd.DataFrame(index=["x", "y"]))
    mdata = md.MuData({"rna": rna, "gdo": gdo})
    with pytest.raises(KeyError, match="guides='crispr'"):
        add_guide_assignment(mdata, guides="crispr")
    with pytest.raises(ValueError, match="No cell of mdata"):
        add_guide_assignment(md.MuData({"rna": rna, "gdo": gdo}))
