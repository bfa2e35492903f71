from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial.distance import cdist
from scipy.stats import pearsonr

import pdae_sc as pdae
from pdae_sc.tl import _metrics
from pdae_sc.tl._metrics import (
    energy_distance,
    evaluate,
    mean_l2,
    mmd_rbf,
    pearson_delta,
    r2_mean,
    top_de_genes,
)


def _brute_energy(x, y):
    n, m = len(x), len(y)
    cross = sum(np.sqrt(((x[i] - y[j]) ** 2).sum()) for i in range(n) for j in range(m))
    wx = sum(np.sqrt(((x[i] - x[j]) ** 2).sum()) for i in range(n) for j in range(n) if i != j)
    wy = sum(np.sqrt(((y[i] - y[j]) ** 2).sum()) for i in range(m) for j in range(m) if i != j)
    return 2 * cross / (n * m) - wx / (n * (n - 1)) - wy / (m * (m - 1))


def _brute_mmd(x, y, scales):
    z = np.vstack([x, y])
    big = len(z)
    sq = [((z[i] - z[j]) ** 2).sum() for i in range(big) for j in range(big) if i != j]
    h = np.mean(sq)

    def k(a, b):
        return sum(np.exp(-((a - b) ** 2).sum() / (s * h)) for s in scales)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


@pytest.fixture
def xy():
    rng = np.random.default_rng(1)
    return rng.normal(size=(7, 4)), rng.normal(size=(9, 4)) + 0.5


def test_energy_distance_matches_brute_force(xy):
    x, y = xy
    assert energy_distance(x, y) == pytest.approx(_brute_energy(x, y), rel=1e-10)
    n, m = len(x), len(y)
    via_cdist = (
        2 * cdist(x, y).mean()
        - cdist(x, x).sum() / (n * (n - 1))
        - cdist(y, y).sum() / (m * (m - 1))
    )
    assert energy_distance(x, y) == pytest.approx(via_cdist, rel=1e-10)


def test_energy_distance_chunked_equals_unchunked(xy, monkeypatch):
    x, y = xy
    full = energy_distance(x, y)
    monkeypatch.setattr(_metrics, "_BLOCK", 5)
    assert energy_distance(x, y) == pytest.approx(full, rel=1e-12)
    assert mmd_rbf(x, y) == pytest.approx(_brute_mmd(x, y, (0.5, 1, 2, 4, 8)), rel=1e-9)


def test_energy_distance_same_law_near_zero_shift_positive():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1500, 5)), rng.normal(size=(1500, 5))
    assert abs(energy_distance(x, y)) < 0.02
    assert energy_distance(x, y + 1.0) > 0.5


def test_energy_distance_sparse_input_and_errors(xy):
    x, y = xy
    assert energy_distance(sparse.csr_matrix(x), y) == pytest.approx(energy_distance(x, y))
    with pytest.raises(ValueError, match="at least 2"):
        energy_distance(x[:1], y)
    with pytest.raises(ValueError, match="genes"):
        energy_distance(x, y[:, :2])


def test_energy_distance_v_statistic_and_the_documented_conversion(xy):
    x, y = xy
    n, m = len(x), len(y)
    # V-statistic: every mean over all pairs, the zero self-pairs included
    brute_v = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
    assert energy_distance(x, y, statistic="v") == pytest.approx(brute_v, rel=1e-10)
    # the conversion given in evaluate's docstring and the user guide
    u_x, u_y = cdist(x, x).sum() / (n * (n - 1)), cdist(y, y).sum() / (m * (m - 1))
    converted = energy_distance(x, y) + u_x / n + u_y / m
    assert energy_distance(x, y, statistic="v") == pytest.approx(converted, rel=1e-10)
    with pytest.raises(ValueError, match="statistic='V'"):
        energy_distance(x, y, statistic="V")


def test_energy_distance_matches_pertpy():
    pt = pytest.importorskip(
        "pertpy", reason="pertpy is not installed; the V-statistic is checked by brute force"
    )
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 20)), rng.normal(size=(80, 20)) + 0.3
    theirs = float(pt.tl.Distance(metric="edistance")(x, y))
    assert energy_distance(x, y, statistic="v") == pytest.approx(theirs, rel=1e-9)
    # at 100 cells the two conventions differ by about 0.1, as the docs say
    assert 0.05 < theirs - energy_distance(x, y) < 0.3


def test_mmd_matches_brute_force(xy):
    x, y = xy
    assert mmd_rbf(x, y) == pytest.approx(_brute_mmd(x, y, (0.5, 1, 2, 4, 8)), rel=1e-9)
    assert mmd_rbf(x, y, scales=(1.0,)) == pytest.approx(_brute_mmd(x, y, (1.0,)), rel=1e-9)
    assert mmd_rbf(np.ones((3, 2)), np.ones((4, 2))) == 0.0


def test_mmd_same_law_near_zero_shift_positive():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(800, 3)), rng.normal(size=(800, 3))
    assert abs(mmd_rbf(x, y)) < 0.01
    assert mmd_rbf(x, y + 2.0) > 0.3


def test_mean_metrics_match_references(xy):
    from sklearn.metrics import r2_score

    x, y = xy
    assert mean_l2(x, y) == pytest.approx(np.linalg.norm(x.mean(0) - y.mean(0)))
    assert r2_mean(x, y) == pytest.approx(r2_score(y.mean(0), x.mean(0)))
    assert np.isnan(r2_mean(x, np.ones((3, 4))))
    ctrl = np.random.default_rng(3).normal(size=4)
    ref = pearsonr(x.mean(0) - ctrl, y.mean(0) - ctrl)[0]
    assert pearson_delta(x, y, ctrl) == pytest.approx(ref)
    ref_sub = pearsonr((x.mean(0) - ctrl)[[0, 2, 3]], (y.mean(0) - ctrl)[[0, 2, 3]])[0]
    assert pearson_delta(x, y, ctrl, genes=[0, 2, 3]) == pytest.approx(ref_sub)
    mask = np.array([True, False, True, True])
    assert pearson_delta(x, y, ctrl, genes=mask) == pytest.approx(ref_sub)


def test_top_de_genes():
    x_true = np.array([[0.0, 5.0, -3.0, 1.0], [0.0, 5.0, -3.0, 1.0]])
    np.testing.assert_array_equal(top_de_genes(x_true, np.zeros(4), n_genes=2), [1, 2])
    assert len(top_de_genes(x_true, np.zeros(4), n_genes=10)) == 4


def _adata(labels, x, prefix):
    obs = pd.DataFrame({"perturbation": labels}, index=[f"{prefix}{i}" for i in range(len(x))])
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])]))


@pytest.fixture
def pair():
    rng = np.random.default_rng(4)
    g = 6
    true_labels = ["ctrl"] * 30 + ["A+B"] * 20 + ["C"] * 15 + ["D"] * 10
    x_true = rng.normal(size=(len(true_labels), g))
    x_true[30:50, 0] += 2.0
    pred_labels = ["B+A"] * 25 + ["C"] * 12 + ["E"] * 5
    x_pred = rng.normal(size=(len(pred_labels), g))
    pred = _adata(pred_labels, x_pred, "p")
    pred.uns["pdae"] = {"method": "additive"}
    return pred, _adata(true_labels, x_true, "t")


def test_evaluate_rows_and_columns(pair):
    pred, true = pair
    df = evaluate(pred, true, top_genes=3)
    assert list(df.columns) == [
        "condition",
        "method",
        "n_pred",
        "n_true",
        "energy_distance",
        "mmd",
        "mean_l2",
        "r2_mean",
        "pearson_delta",
        "pearson_delta_top3",
    ]
    assert df["condition"].tolist() == ["A+B", "C"]
    assert df["n_pred"].tolist() == [25, 12]
    assert df["n_true"].tolist() == [20, 15]
    assert (df["method"] == "additive").all()
    xp, xt = pred.X[:25], true.X[30:50]
    ctrl = true.X[:30].mean(0)
    row = df.iloc[0]
    assert row["energy_distance"] == pytest.approx(energy_distance(xp, xt))
    assert row["mmd"] == pytest.approx(mmd_rbf(xp, xt))
    assert row["mean_l2"] == pytest.approx(mean_l2(xp, xt))
    assert row["r2_mean"] == pytest.approx(r2_mean(xp, xt))
    assert row["pearson_delta"] == pytest.approx(pearson_delta(xp, xt, ctrl))
    top = top_de_genes(xt, ctrl, n_genes=3)
    assert row["pearson_delta_top3"] == pytest.approx(pearson_delta(xp, xt, ctrl, genes=top))


def test_evaluate_subset_sparse_and_control(pair):
    pred, true = pair
    df = evaluate(pred, true, metrics=["mean_l2", "pearson_delta_top20"])
    cols = ["condition", "method", "n_pred", "n_true", "mean_l2", "pearson_delta_top20"]
    assert list(df.columns) == cols
    dense = evaluate(pred, true)
    sp_pred, sp_true = pred.copy(), true.copy()
    sp_pred.X, sp_true.X = sparse.csr_matrix(pred.X), sparse.csr_matrix(true.X)
    pd.testing.assert_frame_equal(evaluate(sp_pred, sp_true), dense)
    # Control cells given separately (with other conditions in it: only controls are used).
    no_ctrl = true[30:].copy()
    with pytest.raises(ValueError, match="adata_control"):
        evaluate(pred, no_ctrl)
    df_c = evaluate(pred, no_ctrl, adata_control=true)
    np.testing.assert_allclose(df_c["pearson_delta"], dense["pearson_delta"])
    assert evaluate(pred.copy(), true, max_cells=5)["n_pred"].tolist() == [25, 12]
    del pred.uns["pdae"]
    assert (evaluate(pred, true)["method"] == "unknown").all()


def test_evaluate_errors(pair):
    pred, true = pair
    with pytest.raises(ValueError, match="valid names"):
        evaluate(pred, true, metrics=["nope"])
    with pytest.raises(ValueError, match="var_names"):
        evaluate(pred[:, ::-1].copy(), true)
    with pytest.raises(ValueError, match="var_names"):
        evaluate(pred[:, :3].copy(), true)
    with pytest.raises(KeyError, match="condition"):
        evaluate(pred, true, perturbation_key="condition")
    with pytest.raises(ValueError, match="No non-control"):
        evaluate(pred[pred.obs["perturbation"] == "E"].copy(), true)


def test_evaluate_does_not_mutate(pair):
    pred, true = pair
    pred_before, true_before = pred.copy(), true.copy()
    evaluate(pred, true, max_cells=4)
    for a, b in ((pred, pred_before), (true, true_before)):
        np.testing.assert_array_equal(a.X, b.X)
        pd.testing.assert_frame_equal(a.obs, b.obs)
        assert a.var_names.equals(b.var_names)
        assert a.uns.keys() == b.uns.keys()


def test_public_exports():
    for name in ("energy_distance", "mmd_rbf", "evaluate", "predict_baseline", "r2_mean"):
        assert hasattr(pdae.tl, name)
