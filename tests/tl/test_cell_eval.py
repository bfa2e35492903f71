"""tl.to_cell_eval writes what `cell-eval run` reads; the integration test runs cell-eval."""

from __future__ import annotations

import shlex
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import pdae_sc as pdae


@pytest.fixture(scope="module")
def screen():
    """A simulated screen on the scale users have: counts, normalised and log1p."""
    adata = pdae.data.simulate(
        n_perturbations=3,
        n_genes=30,
        n_cells_per_condition=40,
        counts=True,
        library_size=200,  # shallow, like a real screen: many zeros
        seed=0,
    )
    adata.X = adata.layers.pop("counts")
    pdae.pp.normalize_counts(adata)
    held = ["P0+P1", "P1+P2"]
    train = adata[~adata.obs["perturbation"].isin(held)].copy()
    test = adata[adata.obs["perturbation"].isin(held)].copy()
    return train, test, held


def _run_cell_eval(files, tmp_path) -> pd.DataFrame:
    """Run the written ``cell-eval run`` command (minimal profile) and read its results."""
    cmd = shlex.split(files["command"])
    cmd = [sys.executable, "-m", "cell_eval", *cmd[1:], "--profile", "minimal"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_csv(tmp_path / "results" / "results.csv")


def test_files_have_the_same_perturbations_genes_and_control_cells(screen, tmp_path):
    train, test, _ = screen
    pred = pdae.tl.predict_baseline(train, ["P1+P0", "P2+P1"], method="additive", n_cells=25)
    assert (np.asarray(pred.X) < 0).any()  # the additive baseline leaves the log1p range
    before = pred.copy()
    files = pdae.tl.to_cell_eval(pred, test, tmp_path / "ce", adata_control=train)
    p, r = ad.read_h5ad(files["pred"]), ad.read_h5ad(files["real"])
    assert (
        set(p.obs["target_gene"])
        == set(r.obs["target_gene"])
        == {
            "non-targeting",
            "P0+P1",  # asked as "P1+P0": written as the observed cells spell it
            "P1+P2",
        }
    )
    assert list(p.var_names) == list(r.var_names) == list(test.var_names)
    n_ctrl = int((train.obs["perturbation"] == "ctrl").sum())
    for f in (p, r):
        assert int((f.obs["target_gene"] == "non-targeting").sum()) == n_ctrl
        assert f.obs_names.is_unique
    ctrl_p = p[p.obs["target_gene"] == "non-targeting"].X
    ctrl_r = r[r.obs["target_gene"] == "non-targeting"].X
    np.testing.assert_array_equal(_dense(ctrl_p), _dense(ctrl_r))  # the same control cells
    assert _dense(p.X).min() >= 0  # clipped
    assert (p.obs["target_gene"] == "P0+P1").sum() == 25
    assert (r.obs["target_gene"] == "P0+P1").sum() == (test.obs["perturbation"] == "P0+P1").sum()
    assert shlex.split(files["command"])[:2] == ["cell-eval", "run"]
    assert "--pert-col" not in files["command"]
    np.testing.assert_array_equal(np.asarray(pred.X), np.asarray(before.X))  # input unchanged

    with pytest.raises(ValueError, match=r"negative values.*clip=True"):
        pdae.tl.to_cell_eval(pred, test, tmp_path / "x", adata_control=train, clip=False)
    own = pdae.tl.to_cell_eval(
        pred,
        test,
        tmp_path / "own",
        adata_control=train,
        pert_col="perturbation",
        control_pert="ctrl",
    )
    assert "--pert-col perturbation --control-pert ctrl" in own["command"]


def test_refuses_what_cell_eval_would_refuse(screen, tmp_path):
    train, test, _ = screen
    pred = pdae.tl.predict_baseline(train, ["P0+P1", "P0+P2"], method="additive", n_cells=5)
    with pytest.raises(ValueError, match=r"\['P0\+P2'\] are predicted but have no observed"):
        pdae.tl.to_cell_eval(pred, test, tmp_path, adata_control=train)
    pred = pred[pred.obs["perturbation"] == "P0+P1"].copy()
    with pytest.raises(ValueError, match="adata_true has no 'ctrl' cells"):
        pdae.tl.to_cell_eval(pred, test, tmp_path)
    raw = pdae.data.simulate(n_perturbations=3, n_genes=30, n_cells_per_condition=10, seed=0)
    with pytest.raises(ValueError, match=r"log-normalised.*normalize_counts"):
        pdae.tl.to_cell_eval(
            pdae.tl.predict_baseline(raw, ["P0+P1"], method="additive"), raw, tmp_path
        )


def _dense(x):
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def test_cell_eval_run_reads_the_files(screen, tmp_path):
    pytest.importorskip(
        "cell_eval", reason="cell-eval is not installed (pip install cell-eval) to run it"
    )
    train, test, held = screen
    pred = pdae.tl.predict_baseline(train, held, method="additive", n_cells=40)
    files = pdae.tl.to_cell_eval(pred, test, tmp_path, adata_control=train)
    results = _run_cell_eval(files, tmp_path)
    assert set(results["perturbation"]) == set(held)
    assert results.drop(columns="perturbation").notna().any().any()


# ---------------------------------------------------------------------------- raw counts
@pytest.fixture(scope="module")
def counts_prediction(screen):
    """``model.predict(..., scale="counts")`` of the held-out doubles by a tiny model."""
    train, _, held = screen
    train = train.copy()
    pdae.model.PDAE.setup_anndata(
        train, "perturbation", control_group="ctrl", counts_layer="counts"
    )
    model = pdae.model.PDAE(train, n_latent=4, n_hidden=(16,), n_noise=2)
    model.train(
        max_epochs=1,
        enable_progress_bar=False,
        held_out_conditions=0,
        check_fit=False,
        accelerator="cpu",
    )
    return model.predict(held, n_cells=30, seed=0, scale="counts")


def test_counts_round_trip(screen, counts_prediction, tmp_path):
    """Raw counts, the target-gene column and the control cells, as a VCC scorer reads them."""
    train, test, held = screen
    pred = counts_prediction
    before = pred.copy()
    files = pdae.tl.to_cell_eval(pred, test, tmp_path, adata_control=train, scale="counts")
    p, r = ad.read_h5ad(files["pred"]), ad.read_h5ad(files["real"])
    for f in (p, r):
        x = _dense(f.X)
        assert (x >= 0).all()
        np.testing.assert_array_equal(x, np.rint(x))  # integers: cell-eval normalises them
        assert "log1p" not in f.uns
        assert list(f.obs.columns) == ["target_gene"]
        assert list(f.obs["target_gene"].cat.categories) == ["non-targeting", *held]
    ctrl = (train.obs["perturbation"] == "ctrl").to_numpy()
    ctrl_counts = _dense(train.layers["counts"][ctrl])
    for f in (p, r):  # the measured control counts, the same cells in both files
        rows = (f.obs["target_gene"] == "non-targeting").to_numpy()
        np.testing.assert_array_equal(_dense(f.X[rows]), ctrl_counts)
    # the measured counts of the held-out cells come back unchanged, in their order
    rows = (r.obs["target_gene"] != "non-targeting").to_numpy()
    np.testing.assert_array_equal(_dense(r.X[rows]), _dense(test.layers["counts"]))
    np.testing.assert_array_equal(
        r.obs["target_gene"][rows].astype(str), test.obs["perturbation"].astype(str)
    )
    # the predicted counts: each predicted cell on its source cell's count scale
    rows = (p.obs["target_gene"] != "non-targeting").to_numpy()
    np.testing.assert_array_equal(_dense(p.X[rows]), _dense(pred.layers["counts"]))
    assert "--pert-col" not in files["command"]
    np.testing.assert_array_equal(_dense(pred.layers["counts"]), _dense(before.layers["counts"]))

    # layer= names another counts layer of every input
    umi = [a.copy() for a in (pred, test, train)]
    for a in umi:
        a.layers["umi"] = a.layers.pop("counts")
    again = pdae.tl.to_cell_eval(
        umi[0], umi[1], tmp_path / "umi", adata_control=umi[2], scale="counts", layer="umi"
    )
    np.testing.assert_array_equal(_dense(ad.read_h5ad(again["pred"]).X), _dense(p.X))


def test_counts_refuses_what_is_not_counts(screen, counts_prediction, tmp_path):
    train, test, held = screen
    pred = counts_prediction
    baseline = pdae.tl.predict_baseline(train, held, method="additive", n_cells=5)
    with pytest.raises(KeyError, match=r"adata_pred has no layers\['counts'\].*scale='counts'"):
        pdae.tl.to_cell_eval(baseline, test, tmp_path, adata_control=train, scale="counts")
    no_counts = test.copy()
    del no_counts.layers["counts"]
    with pytest.raises(KeyError, match=r"adata_true has no .*normalize_counts"):
        pdae.tl.to_cell_eval(pred, no_counts, tmp_path, adata_control=train, scale="counts")
    logs = pred.copy()
    logs.layers["counts"] = logs.X.copy()  # log-normalised, not counts
    with pytest.raises(ValueError, match="adata_pred is not raw counts"):
        pdae.tl.to_cell_eval(logs, test, tmp_path, adata_control=train, scale="counts")
    with pytest.raises(ValueError, match=r"scale='raw'.*'log1p'.*'counts'"):
        pdae.tl.to_cell_eval(pred, test, tmp_path, adata_control=train, scale="raw")
    assert not (tmp_path / "pred.h5ad").exists()  # nothing written by a refused call
    # the log1p files of the same prediction are still the default
    files = pdae.tl.to_cell_eval(pred, test, tmp_path, adata_control=train)
    assert "log1p" in ad.read_h5ad(files["real"]).uns


def test_cell_eval_run_reads_the_count_files(screen, counts_prediction, tmp_path):
    pytest.importorskip(
        "cell_eval", reason="cell-eval is not installed (pip install cell-eval) to run it"
    )
    train, test, held = screen
    files = pdae.tl.to_cell_eval(
        counts_prediction, test, tmp_path, adata_control=train, scale="counts"
    )
    results = _run_cell_eval(files, tmp_path)
    assert set(results["perturbation"]) == set(held)
