from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import pdae_sc as pdae
from pdae_sc.tl import evaluate, predict_baseline


@pytest.fixture
def train():
    """Control mean 0; single A shifts gene0 by +1, single B shifts gene1 by +2."""
    rng = np.random.default_rng(0)
    n_ctrl, n_pert, g = 40, 20, 5
    x_ctrl = rng.normal(size=(n_ctrl, g))
    x_ctrl -= x_ctrl.mean(0)
    x_a, x_b = rng.normal(size=(n_pert, g)), rng.normal(size=(n_pert, g))
    x_a -= x_a.mean(0)
    x_b -= x_b.mean(0)
    x_a[:, 0] += 1.0
    x_b[:, 1] += 2.0
    labels = ["ctrl"] * n_ctrl + ["A"] * n_pert + ["B"] * n_pert
    obs = pd.DataFrame({"perturbation": labels}, index=[f"cell{i}" for i in range(len(labels))])
    var = pd.DataFrame(index=[f"g{j}" for j in range(g)])
    return ad.AnnData(np.vstack([x_ctrl, x_a, x_b]), obs=obs, var=var)


@pytest.fixture
def held_out():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(31, 5))
    x[:, [0, 1]] += [1.0, 2.0]
    obs = pd.DataFrame({"perturbation": ["B+A"] * 31}, index=[f"true{i}" for i in range(31)])
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(5)]))


def _check_format(pred, train, method, n):
    assert pred.X.dtype == np.float32
    assert isinstance(pred.X, np.ndarray)
    assert pred.n_obs == n
    assert pred.var_names.equals(train.var_names)
    assert isinstance(pred.obs["perturbation"].dtype, pd.CategoricalDtype)
    assert pred.obs_names.is_unique
    assert pred.obs_names[0] == f"{method}_0"
    assert {"pdae_source", "pdae_source_cell"} <= set(pred.obs.columns)
    assert pred.uns["pdae"]["method"] == method


@pytest.mark.parametrize("method", ["additive", "linear"])
def test_additive_and_linear_recover_the_sum(train, method):
    pred = predict_baseline(train, ["A+B", "A"], method=method, n_cells=40)
    _check_format(pred, train, method, 80)
    ab = pred.X[(pred.obs["perturbation"] == "A+B").to_numpy()]
    np.testing.assert_allclose(ab.mean(0), [1, 2, 0, 0, 0], atol=1e-5)
    a = pred.X[(pred.obs["perturbation"] == "A").to_numpy()]
    np.testing.assert_allclose(a.mean(0), [1, 0, 0, 0, 0], atol=1e-5)
    assert set(pred.obs["pdae_source"]) == {"ctrl"}
    src = pred.obs["pdae_source_cell"].to_numpy()
    np.testing.assert_allclose(
        ab - train[src[:40]].X, np.tile([1, 2, 0, 0, 0], (40, 1)), atol=1e-5
    )


def test_additive_uses_doses(train):
    dosed = train.copy()
    dosed.obs["dose"] = ["1"] * 40 + ["2"] * 20 + ["1"] * 20
    pred = predict_baseline(
        dosed, ["A+B", "A"], method="additive", dosage_key="dose", dosages=["1+1", 2], n_cells=40
    )
    np.testing.assert_allclose(pred.X[:40].mean(0), [0.5, 2, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(pred.X[40:].mean(0), [1, 0, 0, 0, 0], atol=1e-5)
    assert pred.obs["dose"].tolist() == ["1+1"] * 40 + ["2"] * 40


def test_control_and_pooled(train):
    ctrl = predict_baseline(train, ["A+B"], method="control")
    _check_format(ctrl, train, "control", 40)  # default: number of control cells
    np.testing.assert_allclose(ctrl.X.mean(0), 0, atol=1e-5)  # all 40 without replacement
    assert ctrl.obs["pdae_source_cell"].is_unique
    more = predict_baseline(train, ["A+B"], method="control", n_cells=100, seed=3)
    assert more.n_obs == 100
    assert set(more.obs["pdae_source"]) == {"ctrl"}
    pooled = predict_baseline(train, "A+B", method="pooled", n_cells=80)
    np.testing.assert_allclose(pooled.X.mean(0), train.X.mean(0), atol=1e-5)
    assert set(pooled.obs["pdae_source"]) == {"ctrl", "A", "B"}


def test_sparse_and_layer(train):
    dense = predict_baseline(train, ["A+B"], method="linear", seed=5)
    sp = train.copy()
    sp.layers["lognorm"] = sparse.csr_matrix(train.X)
    sp.X = np.zeros_like(train.X)
    from_layer = predict_baseline(sp, ["A+B"], method="linear", layer="lognorm", seed=5)
    np.testing.assert_allclose(from_layer.X, dense.X, atol=1e-6)


def test_oracle_half(train, held_out):
    pred = predict_baseline(train, ["A+B"], method="oracle_half", adata_true=held_out)
    _check_format(pred, train, "oracle_half", 15)
    ref = pred.uns["pdae"]["oracle_reference_cells"]
    assert len(ref) == 16
    assert not set(ref) & set(pred.obs["pdae_source_cell"])
    assert set(ref) | set(pred.obs["pdae_source_cell"]) == set(held_out.obs_names)
    df = evaluate(pred, held_out[ref], adata_control=train)
    assert df["condition"].tolist() == ["B+A"]
    assert df["n_true"].tolist() == [16]
    with pytest.raises(ValueError, match="adata_true"):
        predict_baseline(train, ["A+B"], method="oracle_half")
    with pytest.raises(KeyError, match="not a condition"):
        predict_baseline(train, ["A+C"], method="oracle_half", adata_true=held_out)


def test_errors(train):
    with pytest.raises(ValueError, match="valid methods"):
        predict_baseline(train, ["A+B"], method="mean")
    with pytest.raises(KeyError, match="Closest known names"):
        predict_baseline(train, ["A+BB"], method="additive")
    doubles_only = train.copy()
    doubles_only.obs["perturbation"] = ["ctrl"] * 40 + ["A"] * 20 + ["A+B"] * 20
    with pytest.raises(ValueError, match="'B'"):
        predict_baseline(doubles_only, ["B"], method="additive")
    doubles_only.obs["perturbation"] = ["ctrl"] * 40 + ["A+B"] * 40
    with pytest.warns(UserWarning, match="outside the span"):
        predict_baseline(doubles_only, ["A"], method="linear")
    with pytest.raises(ValueError, match="dosages"):
        predict_baseline(train, ["A+B"], method="additive", dosages=[1, 2])


def test_does_not_mutate(train, held_out):
    before = train.copy()
    for method in ("control", "pooled", "additive", "linear"):
        predict_baseline(train, ["A+B"], method=method)
    predict_baseline(train, ["A+B"], method="oracle_half", adata_true=held_out)
    np.testing.assert_array_equal(train.X, before.X)
    pd.testing.assert_frame_equal(train.obs, before.obs)
    assert dict(train.uns) == {}


def test_evaluate_ranks_baselines(train, held_out):
    frames = [
        evaluate(
            predict_baseline(train, ["A+B"], method=m, n_cells=40), held_out, adata_control=train
        )
        for m in ("control", "additive")
    ]
    ctrl, add = (f.iloc[0] for f in frames)
    assert add["mean_l2"] < ctrl["mean_l2"]
    assert add["energy_distance"] < ctrl["energy_distance"]


def test_baselines_spell_targets_as_predict_does():
    adata = pdae.data.simulate(n_perturbations=3, n_genes=10, n_cells_per_condition=10, seed=0)
    pred = pdae.tl.predict_baseline(
        adata, ["P1+P0", "P0+ctrl", "ctrl"], method="additive", n_cells=5, seed=0
    )
    assert list(pred.obs["perturbation"].cat.categories) == ["P0+P1", "P0", "ctrl"]
    train = adata[adata.obs["perturbation"] != "P0+P2"].copy()
    held = pdae.tl.predict_baseline(train, ["P2+P0"], method="linear", n_cells=5, seed=0)
    assert set(held.obs["perturbation"]) == {"P0+P2"}  # unseen: vocabulary order
