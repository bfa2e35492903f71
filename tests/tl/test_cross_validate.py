"""cross_validate: fold assignment, scoring table, verdict; context-aware baselines."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import pdae_sc as pdae
from pdae_sc.model import PDAE

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
FAST = {"max_epochs": 1, "n_sources": 16}
TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}


def _model(adata, **setup):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", **setup)
    return PDAE(adata, **TINY)


def test_cross_validate_holds_out_combinations_in_span_and_scores_every_method():
    adata = pdae.data.simulate(n_perturbations=4, n_genes=20, n_cells_per_condition=30, seed=0)
    before = adata.copy()
    model = _model(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = pdae.tl.cross_validate(model, n_folds=2, n_holdout=2, n_cells=50, train_kwargs=FAST)
    scores = cv.scores
    assert set(scores["method"]) == {
        "pdae",
        "control",
        "pooled",
        "additive",
        "linear",
        "oracle_half",
    }
    held = scores.groupby("fold")["condition"].unique()
    assert len(held) == 2
    assert set(held[0]).isdisjoint(held[1])
    assert (scores["kind"] == "combination").all()
    assert all("+" in c for c in scores["condition"])
    # every method scored on the same conditions
    per_method = scores.groupby("method")["condition"].apply(frozenset)
    assert per_method.nunique() == 1
    assert cv.verdict.startswith("PDAE ") and "of 4 held-out conditions" in cv.verdict
    summary = cv.summary()
    assert set(summary.index) == set(scores["method"])
    assert summary["energy_distance_mean"].is_monotonic_increasing  # best first
    assert not model.is_trained_  # the model passed in is not trained or changed
    np.testing.assert_array_equal(adata.X, before.X)
    assert adata.obs.equals(before.obs)


def test_cross_validate_refuses_singles_only_without_contexts():
    adata = pdae.data.simulate(
        n_perturbations=3, n_genes=10, n_cells_per_condition=20, conditions="singles", seed=0
    )
    with pytest.raises(ValueError, match="No measured condition can be held out"):
        pdae.tl.cross_validate(_model(adata), train_kwargs=FAST)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_folds": 0}, "n_folds=0"),
        ({"n_holdout": -1}, "n_holdout=-1"),
        ({"baselines": ["median"]}, "unknown \\['median'\\]"),
    ],
)
def test_cross_validate_argument_errors(kwargs, match):
    adata = pdae.data.simulate(n_perturbations=3, n_genes=10, n_cells_per_condition=20, seed=0)
    with pytest.raises(ValueError, match=match):
        pdae.tl.cross_validate(_model(adata), **kwargs)


def test_cross_validate_needs_a_model():
    with pytest.raises(TypeError, match="model must be a PDAE"):
        pdae.tl.cross_validate(pdae.data.simulate(n_perturbations=2, seed=0))


def _two_contexts():
    """Singles in two cell lines; P1 has a line-specific effect on gene 1."""
    rng = np.random.default_rng(0)
    rows, labels, lines = [], [], []
    for line, offset in (("A", 0.0), ("B", 2.0)):
        for cond, effect in (("ctrl", 0.0), ("P0", 1.0), ("P1", 3.0)):
            x = rng.normal(size=(40, 3)) * 0.1 + offset
            x[:, 0] += effect
            if cond == "P1" and line == "B":
                x[:, 1] += 1.0
            rows.append(x)
            labels += [cond] * 40
            lines += [line] * 40
    obs = pd.DataFrame({"perturbation": labels, "line": lines})
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(np.vstack(rows).astype(np.float32), obs=obs)


def test_context_baselines_predict_in_the_target_context():
    adata = _two_contexts()
    train = adata[~((adata.obs["perturbation"] == "P0") & (adata.obs["line"] == "B"))].copy()
    kw = {"context_key": "line", "context": "B", "n_cells": 40, "seed": 0}
    ctrl_b = train.X[
        ((train.obs["perturbation"] == "ctrl") & (train.obs["line"] == "B")).to_numpy()
    ]
    control = pdae.tl.predict_baseline(train, ["P0"], method="control", **kw)
    np.testing.assert_allclose(control.X.mean(0), ctrl_b.mean(0), atol=1e-6)
    additive = pdae.tl.predict_baseline(train, ["P0"], method="additive", **kw)
    obs_a = train.obs["line"] == "A"
    delta_a = train.X[(obs_a & (train.obs["perturbation"] == "P0")).to_numpy()].mean(0) - train.X[
        (obs_a & (train.obs["perturbation"] == "ctrl")).to_numpy()
    ].mean(0)
    np.testing.assert_allclose(additive.X.mean(0), ctrl_b.mean(0) + delta_a, atol=1e-5)
    # P1 was measured in B itself: the additive baseline uses B's own effect
    own = pdae.tl.predict_baseline(train, ["P1"], method="additive", **kw)
    p1_b = train.X[((train.obs["perturbation"] == "P1") & (train.obs["line"] == "B")).to_numpy()]
    np.testing.assert_allclose(own.X.mean(0), p1_b.mean(0), atol=1e-5)
    linear = pdae.tl.predict_baseline(train, ["P0"], method="linear", **kw)
    np.testing.assert_allclose(linear.X.mean(0)[0], ctrl_b.mean(0)[0] + 1.0, atol=0.05)


def test_context_baseline_errors():
    adata = _two_contexts()
    with pytest.raises(ValueError, match="Give both context_key"):
        pdae.tl.predict_baseline(adata, ["P0"], method="control", context_key="line")
    with pytest.raises(ValueError, match="context='C' is not in"):
        pdae.tl.predict_baseline(adata, ["P0"], method="control", context_key="line", context="C")


def test_cross_validate_holds_out_perturbations_in_another_context():
    adata = _two_contexts()
    model = _model(adata, context_keys=["line"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = pdae.tl.cross_validate(model, n_folds=1, n_holdout=2, n_cells=30, train_kwargs=FAST)
    assert set(cv.scores["kind"]) == {"context"}
    assert set(cv.scores["context"]) <= {"A", "B"}


def test_cross_validate_on_the_bundled_real_screen():
    """One call on the real Datlinger 2017 screen (tiny training: this checks the plumbing)."""
    adata = pdae.datasets.datlinger2017()
    pdae.pp.normalize_counts(adata)
    keep = np.argsort(-np.asarray(adata.X.power(2).mean(0)).ravel())[:50]
    adata = adata[:, np.sort(keep)].copy()
    model = _model(adata, counts_layer="counts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = pdae.tl.cross_validate(model, n_folds=1, n_holdout=2, n_cells=50, train_kwargs=FAST)
    assert cv.scores["condition"].str.endswith("+stim").all()
    assert "held-out conditions" in cv.verdict


@pytest.mark.skipif(
    not (SHARED / "papalexi2021_eccite_subset.h5ad").exists(),
    reason="../shared/data/papalexi2021_eccite_subset.h5ad is not beside this clone",
)
def test_cross_validate_on_papalexi_replicates():
    raw = ad.read_h5ad(SHARED / "papalexi2021_eccite_subset.h5ad")
    obs = pd.DataFrame(
        {
            "perturbation": raw.obs["target"].astype(str).replace({"non-targeting": "ctrl"}),
            "rep": raw.obs["bio_rep"].astype(str),
        },
        index=raw.obs_names,
    )
    adata = ad.AnnData(raw.X.astype(np.float32), obs=obs)
    adata = adata[adata.obs["perturbation"].isin(["ctrl", "IFNGR2", "IRF1", "JAK2"]).to_numpy()]
    adata = adata[:, :50].copy()
    pdae.pp.normalize_counts(adata)
    model = _model(adata, context_keys=["rep"], counts_layer="counts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = pdae.tl.cross_validate(model, n_folds=1, n_holdout=2, n_cells=50, train_kwargs=FAST)
    assert set(cv.scores["kind"]) == {"context"}


def test_verdict_counts_wins_against_the_best_baseline():
    from pdae_sc.tl._cross_validate import _verdict

    rows = []
    for cond, (ours, lin, ctrl) in {"A+B": (0.1, 0.2, 0.5), "C+D": (0.3, 0.2, 0.6)}.items():
        for method, value in (("pdae", ours), ("linear", lin), ("control", ctrl)):
            rows.append({"fold": 0, "condition": cond, "method": method, "mmd": value})
    verdict = _verdict(pd.DataFrame(rows), "mmd")
    assert verdict.startswith("PDAE beats linear (the best simple baseline) on 1 of 2")
    assert verdict.endswith("On data like these, prefer linear.")
    rows[0]["mmd"] = rows[3]["mmd"] = 0.0  # pdae wins both
    assert "prefer" not in _verdict(pd.DataFrame(rows), "mmd")
