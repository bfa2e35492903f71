"""standardize_perturbations on small .h5ad files written in each tool's label convention."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import pdae_sc as pdae
from pdae_sc.pp._conventions import standardize_perturbations

N_REP = 3  # cells per raw label (setup_anndata needs >= 2 per condition)


def _write_read(tmp_path, column, labels, **extra):
    """An AnnData whose obs[column] holds each label N_REP times, written and read back."""
    obs = pd.DataFrame({column: np.repeat(np.asarray(labels, dtype=object), N_REP)})
    for key, values in extra.items():
        obs[key] = np.repeat(np.asarray(values, dtype=object), N_REP)
    obs.index = [f"cell{i}" for i in range(len(obs))]
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.random((len(obs), 5)).astype(np.float32), obs=obs)
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    return ad.read_h5ad(path)


def _mapping(report):
    return dict(zip(report["raw"], report["standardized"], strict=True))


def _setup_ok(adata, **kwargs):
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", **kwargs)


def test_gears(tmp_path, caplog):
    adata = _write_read(tmp_path, "condition", ["ctrl", "A+ctrl", "ctrl+B", "A+B"])
    raw_before = adata.obs["condition"].copy()
    with caplog.at_level(logging.INFO, logger="pdae_sc"):
        report = standardize_perturbations(adata, "condition", convention="gears")
    assert _mapping(report) == {"ctrl": "ctrl", "A+ctrl": "A", "ctrl+B": "B", "A+B": "A+B"}
    assert report["n_cells"].tolist() == [N_REP] * 4
    assert report.set_index("raw").loc["A+ctrl", "rule"] == "control token dropped"
    assert report.attrs["delimiter"] == "+"
    pd.testing.assert_series_equal(adata.obs["condition"], raw_before)
    assert "12 cells, 4 raw labels -> 4 conditions" in caplog.text
    _setup_ok(adata)


def test_cpa_doses(tmp_path):
    adata = _write_read(
        tmp_path,
        "condition",
        ["ctrl", "A+B", "A", "B+ctrl"],
        dose_val=["1.0", "1.0+0.5", "2.0", "0.5+1.0"],
    )
    report = standardize_perturbations(adata, "condition", convention="cpa", dosage_key="dose_val")
    assert list(report.columns) == ["raw", "raw_dose", "standardized", "dose", "n_cells", "rule"]
    obs = adata.obs.drop_duplicates("condition").set_index("condition")
    assert obs["perturbation"].astype(str).to_dict() == {
        "ctrl": "ctrl",
        "A+B": "A+B",
        "A": "A",
        "B+ctrl": "B",
    }
    assert obs["perturbation_dose"].iloc[1:].tolist() == ["1+0.5", "2", "0.5"]
    assert pd.isna(obs.loc["ctrl", "perturbation_dose"])
    assert adata.obs["dose_val"].iloc[0] == "1.0"  # raw doses untouched
    _setup_ok(adata, dosage_key="perturbation_dose")


def test_scperturb_underscore_is_detected(tmp_path):
    adata = _write_read(tmp_path, "perturbation", ["control", "AHR", "AHR_KLF1", "KLF1"])
    report = standardize_perturbations(adata, "perturbation", key_added="condition")
    assert report.attrs["delimiter"] == "_"
    assert _mapping(report)["AHR_KLF1"] == "AHR+KLF1"
    assert _mapping(report)["control"] == "ctrl"
    assert adata.obs["perturbation"].iloc[0] == "control"  # raw column untouched
    pdae.model.PDAE.setup_anndata(adata, "condition", control_group="ctrl")


def test_pertpy_plus(tmp_path):
    adata = _write_read(tmp_path, "perturbation_name", ["control", "AHR+KLF1", "AHR", "KLF1"])
    report = standardize_perturbations(adata, "perturbation_name", convention="pertpy")
    assert _mapping(report) == {
        "control": "ctrl",
        "AHR+KLF1": "AHR+KLF1",
        "AHR": "AHR",
        "KLF1": "KLF1",
    }
    _setup_ok(adata)


def test_guide_names(tmp_path):
    labels = ["A_guide1", "A_guide2", "B_sg1", "non-targeting", "NT_2", "C-sgRNA3"]
    adata = _write_read(tmp_path, "guide_id", labels)
    report = standardize_perturbations(adata, "guide_id")
    assert _mapping(report) == {
        "A_guide1": "A",
        "A_guide2": "A",
        "B_sg1": "B",
        "non-targeting": "ctrl",
        "NT_2": "ctrl",
        "C-sgRNA3": "C",
    }
    assert report.attrs["delimiter"] == "+"  # guide names do not vote for "_"
    assert report.set_index("raw").loc["B_sg1", "rule"] == "guide suffix stripped"
    assert (adata.obs["perturbation"] == "A").sum() == 2 * N_REP
    _setup_ok(adata)


def test_guides_with_underscore_delimiter_and_duplicates():
    obs = pd.DataFrame({"p": ["A_guide1", "A_B", "non_targeting", "A_guide1+A_guide2"]})
    adata = ad.AnnData(np.zeros((4, 1)), obs=obs.set_axis(list("abcd")))
    report, cols = standardize_perturbations(
        adata, "p", delimiter="_", unparsable="keep", inplace=False
    )
    # with "_" between genes, a "+" left inside a token cannot be read
    assert cols["perturbation"].tolist() == ["A", "A+B", "ctrl", "unparsable"]
    report, cols = standardize_perturbations(adata, "p", delimiter="+", inplace=False)
    assert cols["perturbation"].tolist() == ["A", "A_B", "ctrl", "A"]
    assert "duplicate dropped" in report.set_index("raw").loc["A_guide1+A_guide2", "rule"]


def test_case_whitespace_and_hyphen_genes():
    obs = pd.DataFrame({"p": ["Control", " kLF1 ", "kLF1 + NKX2-1", "NKX2-1"]})
    adata = ad.AnnData(np.zeros((4, 1)), obs=obs.set_axis(list("abcd")))
    report, cols = standardize_perturbations(adata, "p", inplace=False)
    assert cols["perturbation"].tolist() == ["ctrl", "kLF1", "kLF1+NKX2-1", "NKX2-1"]
    assert "whitespace stripped" in report.set_index("raw").loc[" kLF1 ", "rule"]
    _, cols = standardize_perturbations(
        adata, "p", guide_pattern=r"^(?P<gene>.+?)-\d+$", inplace=False
    )
    assert cols["perturbation"].tolist()[2:] == ["kLF1+NKX2", "NKX2"]


def test_inplace_false_does_not_write():
    adata = ad.AnnData(np.zeros((2, 1)), obs=pd.DataFrame({"p": ["ctrl", "A"]}, index=["a", "b"]))
    before = adata.obs.copy()
    report, cols = standardize_perturbations(adata, "p", inplace=False)
    pd.testing.assert_frame_equal(adata.obs, before)
    assert list(cols.columns) == ["perturbation"]
    assert cols.index.equals(adata.obs_names)
    assert report["n_cells"].sum() == 2


@pytest.mark.parametrize("bad", [np.nan, "", "  ", "A++B", "+A", "nan"])
def test_unparsable_raises(tmp_path, bad):
    adata = _write_read(tmp_path, "condition", ["ctrl", "A", bad])
    with pytest.raises(ValueError, match=r"cannot be standardised.*unparsable='keep'"):
        standardize_perturbations(adata, "condition")
    assert "perturbation" not in adata.obs


def test_unparsable_keep_reports(caplog):
    obs = pd.DataFrame({"p": ["ctrl", "A", None, "A++B"]}, index=list("abcd"))
    adata = ad.AnnData(np.zeros((4, 1)), obs=obs)
    with caplog.at_level(logging.WARNING, logger="pdae_sc"):
        report = standardize_perturbations(adata, "p", unparsable="keep")
    assert adata.obs["perturbation"].tolist() == ["ctrl", "A", "unparsable", "unparsable"]
    assert report["rule"].str.startswith("unparsable").sum() == 2
    assert report["n_cells"].sum() == adata.n_obs  # every cell accounted for
    assert "2 cells with 2 unreadable labels" in caplog.text


def test_bad_doses_are_unparsable():
    obs = pd.DataFrame({"p": ["A+B", "A", "B"], "d": ["1+2+3", "x", "inf"]}, index=list("abc"))
    adata = ad.AnnData(np.zeros((3, 1)), obs=obs)
    with pytest.raises(ValueError, match=r"3 doses for 2 tokens.*'x' is not a finite.*'inf'"):
        standardize_perturbations(adata, "p", dosage_key="d")


def test_argument_errors():
    adata = ad.AnnData(
        np.zeros((2, 1)), obs=pd.DataFrame({"cond": ["ctrl", "A"]}, index=["a", "b"])
    )
    with pytest.raises(ValueError, match="key_added='cond'"):
        standardize_perturbations(adata, "cond", key_added="cond")
    with pytest.raises(KeyError, match="closest columns: \\['cond'\\]"):
        standardize_perturbations(adata, "condd")
    with pytest.raises(ValueError, match="convention='seurat'"):
        standardize_perturbations(adata, "cond", convention="seurat")
    with pytest.raises(ValueError, match="named group 'gene'"):
        standardize_perturbations(adata, "cond", guide_pattern=r"_g\d+$")
    with pytest.raises(ValueError, match="unparsable='drop'"):
        standardize_perturbations(adata, "cond", unparsable="drop")
    with pytest.raises(TypeError, match="mdata\\['rna'\\]"):
        standardize_perturbations(adata.obs, "cond")
