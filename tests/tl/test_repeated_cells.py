"""Scores that repeated cells cannot move: source-aware U-statistics, the protocol, gap closed."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import pdae_sc as pdae
from pdae_sc.tl import duplicate_groups, energy_distance, evaluate, gap_closed, mmd_rbf


def _dist(a, b):
    return float(np.sqrt(((a - b) ** 2).sum()))


def _brute_grouped_energy(x, y, gx, gy):
    """The formula written out: within terms over pairs from different sources only."""
    n, m = len(x), len(y)
    cross = sum(_dist(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    px = [(i, j) for i in range(n) for j in range(n) if gx[i] != gx[j]]
    py = [(i, j) for i in range(m) for j in range(m) if gy[i] != gy[j]]
    wx = sum(_dist(x[i], x[j]) for i, j in px) / len(px)
    wy = sum(_dist(y[i], y[j]) for i, j in py) / len(py)
    return 2 * cross - wx - wy


def _brute_grouped_mmd(x, y, gx, gy, scales):
    z = np.vstack([x, y])
    big = len(z)
    h = np.mean([((z[i] - z[j]) ** 2).sum() for i in range(big) for j in range(big) if i != j])

    def k(a, b):
        return sum(np.exp(-((a - b) ** 2).sum() / (s * h)) for s in scales)

    n, m = len(x), len(y)
    px = [(i, j) for i in range(n) for j in range(n) if gx[i] != gx[j]]
    py = [(i, j) for i in range(m) for j in range(m) if gy[i] != gy[j]]
    kxx = sum(k(x[i], x[j]) for i, j in px) / len(px)
    kyy = sum(k(y[i], y[j]) for i, j in py) / len(py)
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


@pytest.fixture
def grouped():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(11, 4)), rng.normal(size=(8, 4)) + 0.3
    gx = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6])
    gy = np.array(["a", "b", "a", "c", "d", "d", "e", "f"])
    return x, y, gx, gy


def test_grouped_energy_distance_matches_brute_force(grouped):
    x, y, gx, gy = grouped
    got = energy_distance(x, y, groups_x=gx, groups_y=gy)
    assert got == pytest.approx(_brute_grouped_energy(x, y, gx, gy), rel=1e-10)
    # every cell its own group is the plain U-statistic
    plain = energy_distance(x, y)
    own = energy_distance(x, y, groups_x=np.arange(11), groups_y=np.arange(8))
    assert own == pytest.approx(plain, rel=1e-12)


def test_grouped_mmd_matches_brute_force(grouped):
    x, y, gx, gy = grouped
    scales = (0.5, 1.0, 4.0)
    got = mmd_rbf(x, y, scales=scales, groups_x=gx, groups_y=gy)
    assert got == pytest.approx(_brute_grouped_mmd(x, y, gx, gy, scales), rel=1e-9)


def test_resampling_a_pool_adds_no_bias_when_grouped():
    """Over many resamples, the grouped score averages to the pool's; the plain one does not."""
    rng = np.random.default_rng(0)
    pool, truth = rng.normal(size=(30, 6)), rng.normal(size=(60, 6))
    once = energy_distance(pool, truth)
    fixed, plain = [], []
    for _ in range(40):
        idx = rng.choice(30, 150)  # 5x the pool, with replacement
        fixed.append(energy_distance(pool[idx], truth, groups_x=idx))
        plain.append(energy_distance(pool[idx], truth))
    mean_dist = np.mean([_dist(a, b) for a in pool for b in pool if a is not b])
    assert abs(np.mean(fixed) - once) < 0.02
    assert np.mean(plain) - once > 0.5 * mean_dist / 30  # about mean distance / pool size


def test_group_errors():
    x = np.zeros((4, 2))
    x[:, 0] = np.arange(4)
    with pytest.raises(ValueError, match="one entry per cell"):
        energy_distance(x, x, groups_x=[0, 1])
    with pytest.raises(ValueError, match="share one source"):
        energy_distance(x, x, groups_x=[7, 7, 7, 7])
    with pytest.raises(ValueError, match="missing"):
        energy_distance(x, x, groups_x=[0, 1, None, 2])
    with pytest.raises(ValueError, match="statistic='u'"):
        energy_distance(x, x, statistic="v", groups_x=[0, 1, 2, 3])


def test_duplicate_groups_dense_and_sparse():
    from scipy import sparse

    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    np.testing.assert_array_equal(duplicate_groups(x), [0, 1, 0, 1, 2])
    np.testing.assert_array_equal(duplicate_groups(sparse.csr_matrix(x)), [0, 1, 0, 1, 2])


@pytest.fixture(scope="module")
def counts_screen():
    """A count simulation, normalised + log1p, with 10 held-out doubles."""
    adata = pdae.data.simulate(
        n_perturbations=6, n_genes=60, n_cells_per_condition=60, counts=True, seed=2
    )
    raw = ad.AnnData(adata.layers["counts"].copy(), obs=adata.obs[["perturbation"]].copy())
    raw.var_names = adata.var_names
    pdae.pp.normalize_counts(raw)
    held = ["P0+P1", "P2+P3", "P1+P4", "P3+P5"]
    test_mask = raw.obs["perturbation"].isin(held).to_numpy()
    return raw[~test_mask].copy(), raw[test_mask].copy(), held


def test_resampled_baseline_scores_as_each_cell_once(counts_screen):
    """Acceptance: linear with 5x the control pool agrees within 0.01 with each cell once."""
    train, test, held = counts_screen
    n_ctrl = int((train.obs["perturbation"] == "ctrl").sum())
    once = pdae.tl.predict_baseline(train, held, method="linear", seed=0)
    assert (once.obs.groupby("perturbation", observed=True).size() == n_ctrl).all()
    five = pdae.tl.predict_baseline(train, held, method="linear", n_cells=5 * n_ctrl, seed=0)
    e_once = evaluate(once, test, adata_control=train)["energy_distance"]
    e_five = evaluate(five, test, adata_control=train)["energy_distance"]
    assert abs(e_five.mean() - e_once.mean()) < 0.01
    # without the source column the copies are found as identical rows: the same scores
    bare = five.copy()
    del bare.obs["pdae_source_cell"]
    e_bare = evaluate(bare, test, adata_control=train)["energy_distance"]
    np.testing.assert_allclose(e_bare.to_numpy(), e_five.to_numpy(), rtol=1e-9)
    # and a scorer that ignores the sources shows the bias this removes
    e_naive = evaluate(bare, test, adata_control=train, source_key=None)["energy_distance"]
    np.testing.assert_allclose(e_naive.to_numpy(), e_five.to_numpy(), rtol=1e-9)
    conditions = evaluate(five, test, adata_control=train)["condition"]
    plain = [
        energy_distance(
            np.asarray(five[(five.obs["perturbation"] == c).to_numpy()].X),
            np.asarray(test[(test.obs["perturbation"] == c).to_numpy()].X),
        )
        for c in conditions
    ]
    assert np.mean(plain) > e_five.mean() + 0.05


def test_duplicated_truth_scores_as_the_cells_once(counts_screen):
    """Half the true cells, each twice, against the other half: exactly as each cell once.

    Each pair of distinct cells appears four times among the copies, so the grouped
    within-sample mean is the one of the cells once; the naive one adds the zero pairs.
    """
    train, test, held = counts_screen
    rng = np.random.default_rng(0)
    twice, once, refs = [], [], []
    for c in held:
        cells = rng.permutation(np.flatnonzero((test.obs["perturbation"] == c).to_numpy()))
        half = len(cells) // 2
        x = test.X.toarray() if hasattr(test.X, "toarray") else np.asarray(test.X)
        for out, rows in ((twice, np.repeat(cells[:half], 2)), (once, cells[:half])):
            out.append(ad.AnnData(x[rows], obs=pd.DataFrame({"perturbation": [c] * len(rows)})))
        refs.append(test[cells[half:]])
    ref = ad.concat(refs)
    scored = {}
    for name, parts in (("twice", twice), ("once", once)):
        pred = ad.concat(parts, index_unique="-")
        pred.var_names = ref.var_names
        scored[name] = evaluate(pred, ref, adata_control=train)["energy_distance"]
    np.testing.assert_allclose(scored["twice"], scored["once"], rtol=1e-9, atol=1e-12)
    assert abs(scored["twice"].mean()) < 0.1  # the truth against itself: within noise of 0
    x = np.asarray(twice[0].X)
    y = np.asarray(refs[0].X.toarray() if hasattr(refs[0].X, "toarray") else refs[0].X)
    assert energy_distance(x, y) > scored["twice"].iloc[0] + 0.1  # copies paired: biased


def test_pdae_repeated_sources_are_not_paired(trained):
    """More predicted cells than sources: evaluate groups the copies by pdae_source_cell."""
    model, adata = trained
    n_ctrl = int((adata.obs["perturbation"] == "ctrl").sum())
    pred = model.predict(["P0+P1"], n_cells=3 * n_ctrl, source="ctrl", seed=0, method="pdae")
    sources = pred.obs["pdae_source_cell"].to_numpy()
    assert len(set(sources)) == n_ctrl  # each control cell moved three times
    truth = adata[(adata.obs["perturbation"] == "P0").to_numpy()].copy()
    truth.obs["perturbation"] = "P0+P1"
    got = evaluate(pred, truth, adata_control=adata, max_cells=None)["energy_distance"].iloc[0]
    x, y = np.asarray(pred.X, dtype=np.float64), np.asarray(truth.X, dtype=np.float64)
    assert got == pytest.approx(energy_distance(x, y, groups_x=sources), rel=1e-9)
    assert got != pytest.approx(energy_distance(x, y), rel=1e-6)


def test_mean_response_baseline(counts_screen):
    train, _, held = counts_screen
    x = np.asarray(train.X.toarray() if hasattr(train.X, "toarray") else train.X)
    labels = train.obs["perturbation"].astype(str).to_numpy()
    ctrl_mean = x[labels == "ctrl"].mean(0)
    deltas = [x[labels == c].mean(0) - ctrl_mean for c in sorted(set(labels) - {"ctrl"})]
    expected = ctrl_mean + np.mean(deltas, axis=0)
    pred = pdae.tl.predict_baseline(train, held, method="mean_response", seed=0)
    for c in held:
        got = np.asarray(pred[(pred.obs["perturbation"] == c).to_numpy()].X).mean(0)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert pred.uns["pdae"]["method"] == "mean_response"


def test_mean_response_in_a_context():
    """The response measured in the target context; else the other contexts' mean."""
    obs = pd.DataFrame(
        {
            "perturbation": ["ctrl"] * 4 + ["A"] * 2 + ["B"] * 2 + ["ctrl"] * 4 + ["A"] * 2,
            "line": ["x"] * 8 + ["y"] * 6,
        }
    )
    obs.index = [f"c{i}" for i in range(len(obs))]
    x = np.zeros((14, 2))
    x[4:6, 0], x[6:8, 1] = 2.0, 4.0  # in x: A +2 on g0, B +4 on g1
    x[8:12] += 10.0  # y: control at 10
    x[12:14] = [16.0, 10.0]  # in y: A +6 on g0
    adata = ad.AnnData(x, obs=obs)
    in_x = pdae.tl.predict_baseline(
        adata, ["B"], method="mean_response", context_key="line", context="x"
    )
    np.testing.assert_allclose(in_x.X.mean(0), [1.0, 2.0])
    in_y = pdae.tl.predict_baseline(
        adata, ["B"], method="mean_response", context_key="line", context="y"
    )
    np.testing.assert_allclose(in_y.X.mean(0), [16.0, 10.0])


def test_gap_closed_per_condition_and_overall():
    scores = pd.DataFrame(
        {
            "condition": ["A", "B", "C"] * 3,
            "method": ["oracle_half"] * 3 + ["linear"] * 3 + ["pdae"] * 3,
            "energy_distance": [0.0, 0.1, 0.2, 1.0, 0.5, 0.2, 0.5, 0.7, 0.2],
        }
    )
    overall = gap_closed(scores, reference="linear").set_index("method")
    # ratio of means: (0.5667 - 0.4667) / (0.5667 - 0.1)
    assert overall.loc["pdae", "gap_closed"] == pytest.approx(0.1 / (1.7 / 3 - 0.1))
    assert overall.loc["linear", "gap_closed"] == 0.0
    assert overall.loc["oracle_half", "gap_closed"] == 1.0
    per = gap_closed(scores, reference="linear", per_condition=True)
    pdae_rows = per[per["method"] == "pdae"].set_index("condition")["gap_closed"]
    assert pdae_rows["A"] == pytest.approx(0.5)
    assert pdae_rows["B"] == pytest.approx(-0.5)
    assert np.isnan(pdae_rows["C"])  # reference at the floor
    # higher-is-better metrics: the same formula
    pear = scores.assign(pearson_delta=1.0 - scores["energy_distance"])
    g = gap_closed(pear, reference="linear", metric="pearson_delta").set_index("method")
    assert g.loc["pdae", "gap_closed"] == pytest.approx(overall.loc["pdae", "gap_closed"])
    with pytest.raises(ValueError, match="reference='mean_response' is not a method"):
        gap_closed(scores, reference="mean_response")
    with pytest.raises(KeyError, match="no column 'mmd'"):
        gap_closed(scores, reference="linear", metric="mmd")
