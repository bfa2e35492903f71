"""cross_validate: fold assignment, scoring table, verdict; context-aware baselines."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

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
        cv = pdae.tl.cross_validate(model, n_folds=2, n_holdout=2, train_kwargs=FAST)
    scores = cv.scores
    assert set(scores["method"]) == {
        "pdae",
        "control",
        "pooled",
        "additive",
        "linear",
        "mean_response",
        "oracle_half",
    }
    # one protocol: every method predicts as many cells as there are control cells (30)
    predicted = scores[scores["method"] != "oracle_half"]
    assert (predicted["n_pred"] == 30).all()
    held = scores.groupby("fold")["condition"].unique()
    assert len(held) == 2
    assert set(held[0]).isdisjoint(held[1])
    assert (scores["kind"] == "combination").all()
    assert all("+" in c for c in scores["condition"])
    # every method scored on the same conditions
    per_method = scores.groupby("method")["condition"].apply(frozenset)
    assert per_method.nunique() == 1
    assert cv.verdict.startswith("PDAE ")
    assert "of 4 held-out conditions" in cv.verdict
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


def test_verdict_says_on_a_par_when_wins_and_mean_disagree():
    from pdae_sc.tl._cross_validate import _verdict

    rows = []
    # PDAE closer on two weak conditions, linear far closer on one strong condition
    for cond, (ours, lin) in {"A+B": (0.01, 0.02), "C+D": (0.01, 0.02), "E+F": (0.9, 0.1)}.items():
        for method, value in (("pdae", ours), ("linear", lin)):
            rows.append({"fold": 0, "condition": cond, "method": method, "mmd": value})
    verdict = _verdict(pd.DataFrame(rows), "mmd")
    assert "on 2 of 3" in verdict
    assert verdict.endswith(
        "PDAE and linear are on a par here: PDAE is closer on most conditions, linear on the mean."
    )
    for row in rows:  # the other way round
        if row["condition"] == "E+F":
            row["mmd"] = {"pdae": 0.1, "linear": 0.9}[row["method"]]
        else:
            row["mmd"] = {"pdae": 0.02, "linear": 0.01}[row["method"]]
    assert _verdict(pd.DataFrame(rows), "mmd").endswith(
        "linear is closer on most conditions, PDAE on the mean."
    )


def _graded_contexts(n_pert=12, n_cells=20):
    """Singles P0..P11 in two lines, effect on gene 0 growing with the index."""
    rng = np.random.default_rng(1)
    rows, labels, lines = [], [], []
    for line in ("A", "B"):
        for i, cond in enumerate(["ctrl"] + [f"P{j}" for j in range(n_pert)]):
            x = rng.normal(size=(n_cells, 3)) * 0.1
            x[:, 0] += 0.3 * i
            rows.append(x)
            labels += [cond] * n_cells
            lines += [line] * n_cells
    obs = pd.DataFrame({"perturbation": labels, "line": lines})
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(np.vstack(rows).astype(np.float32), obs=obs)


def test_effects_are_squared_mean_shifts_from_the_context_controls_less_noise():
    from pdae_sc.data._fields import context_codes
    from pdae_sc.data._labels import encode_conditions
    from pdae_sc.tl._cross_validate import _units

    adata = _graded_contexts()
    enc = encode_conditions(adata.obs["perturbation"], control_group="ctrl", name="perturbation")
    ctx, names = context_codes(adata.obs, ["line"])
    for matrix in (adata.X, sparse.csr_matrix(adata.X)):
        units = _units(enc, ctx, 10, matrix)
        assert len(units) == 24
        assert set(units["kind"]) == {"context"}
        for _, u in units.sample(5, random_state=0).iterrows():
            line = names[u["ctx"]]
            cond = enc.conditions[u["code"]]
            obs = adata.obs
            mine = adata.X[((obs["perturbation"] == cond) & (obs["line"] == line)).to_numpy()]
            ctrl = adata.X[((obs["perturbation"] == "ctrl") & (obs["line"] == line)).to_numpy()]
            # the squared distance of the means less its expected part from sampling noise
            noise = mine.var(0, ddof=1).sum() / len(mine) + ctrl.var(0, ddof=1).sum() / len(ctrl)
            want = np.sum((mine.mean(0) - ctrl.mean(0)) ** 2) - noise
            assert u["effect"] == pytest.approx(want, rel=1e-5, abs=1e-9)
    assert _units(enc, ctx, 10)["effect"].isna().all()  # no matrix, no effects


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folds_spread_over_strong_and_weak_effects(seed):
    from pdae_sc.data._fields import context_codes
    from pdae_sc.data._labels import encode_conditions
    from pdae_sc.tl._cross_validate import _assign_folds, _units

    adata = _graded_contexts()
    enc = encode_conditions(adata.obs["perturbation"], control_group="ctrl", name="perturbation")
    ctx, _ = context_codes(adata.obs, ["line"])
    units = _units(enc, ctx, 10, adata.X)
    rank = units["effect"].rank(ascending=False).to_numpy()  # 1 = strongest of 24
    folds = _assign_folds(units, enc, ctx, 2, 4, np.random.default_rng(seed))
    assert [len(f) for f in folds] == [4, 4]
    held = [u for f in folds for u in f]
    assert len(set(held)) == 8
    # 8 of 24 evenly spaced along the ranking: one in each stretch of three ranks
    assert sorted((rank[held] - 1) // 3) == list(range(8))
    for fold in folds:  # and each fold gets strong and weak ones
        assert rank[fold].min() <= 6
        assert rank[fold].max() >= 19


def test_verdict_counts_a_perturbation_held_out_in_two_contexts_twice():
    from pdae_sc.tl._cross_validate import _verdict

    rows = [
        {"fold": 0, "context": ctx, "condition": "P0", "method": m, "mmd": v}
        for ctx, (ours, lin) in {"A": (0.1, 0.2), "B": (0.3, 0.4)}.items()
        for m, v in (("pdae", ours), ("linear", lin))
    ]
    assert "on 2 of 2 held-out conditions" in _verdict(pd.DataFrame(rows), "mmd")
