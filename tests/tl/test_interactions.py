"""Interaction scores against hand computations on tiny examples."""

from __future__ import annotations

import itertools

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import pdae_sc as pdae
from pdae_sc.tl._interactions import COLUMNS, _distance_correlation

SCORE_COLUMNS = COLUMNS[5:]


def _adata(blocks: dict[str, list[list[float]]]) -> ad.AnnData:
    labels, rows = [], []
    for label, cells in blocks.items():
        labels += [label] * len(cells)
        rows += cells
    obs = pd.DataFrame({"perturbation": labels}, index=[f"c{i}" for i in range(len(labels))])
    return ad.AnnData(np.asarray(rows, dtype=np.float64), obs=obs)


@pytest.fixture
def tiny():
    """Control mean (0, 1, 0); δ_A = (1, 0, 0), δ_B = (0, 1, 0), δ_AB = (2, 0.5, 1)."""
    return _adata(
        {
            "ctrl": [[0, 0, 0], [0, 2, 0]],
            "A": [[1, 1, 0], [1, 1, 0]],
            "B": [[0, 2, 0], [0, 2, 0]],
            "B+A": [[2, 1.5, 0], [2, 1.5, 2], [1, 1.5, 1], [3, 1.5, 1]],
        }
    )


def _energy_brute(x, y):
    def mean_dist(p, q, same):
        d = np.sqrt(((p[:, None, :] - q[None, :, :]) ** 2).sum(-1))
        if same:
            return d.sum() / (len(p) * (len(p) - 1))
        return d.mean()

    return 2 * mean_dist(x, y, False) - mean_dist(x, x, True) - mean_dist(y, y, True)


def _dcor_brute(x, y):
    def centred(v):
        a = np.abs(v[:, None] - v[None, :])
        return a - a.mean(0) - a.mean(1)[:, None] + a.mean()

    a, b = centred(np.asarray(x, float)), centred(np.asarray(y, float))
    return np.sqrt((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))


def test_scores_match_hand_computation(tiny):
    row = pdae.tl.interaction_scores(tiny, max_cells=None).iloc[0]
    assert row["pair"] == "B+A"
    assert row["origin"] == "measured"
    assert row["n_cells"] == 4
    a_first = row["perturbation_a"] == "A"
    c_a, c_b = (row["coef_a"], row["coef_b"]) if a_first else (row["coef_b"], row["coef_a"])
    # δ_AB = 2 δ_A + 0.5 δ_B + (0, 0, 1): the residual is orthogonal to both singles
    np.testing.assert_allclose([c_a, c_b], [2.0, 0.5])
    np.testing.assert_allclose(row["magnitude"], np.sqrt(4.25))
    np.testing.assert_allclose(row["dominance"], np.log10(4.0) * (1 if a_first else -1))
    # fit R²: residual sum of squares 1 over total (centred) sum of squares 7/6
    np.testing.assert_allclose(row["fit_r2"], 1 - 1 / (7 / 6))
    d_ab, additive = np.array([2, 0.5, 1]), np.array([1, 1, 0])
    np.testing.assert_allclose(row["corr_additive"], np.corrcoef(d_ab, additive)[0, 1])
    np.testing.assert_allclose(row["additive_l2"], 1.5)
    # squared standard errors per gene: ctrl (0, 2, 0) / 2, singles 0, double
    # (2/3, 0, 2/3) / 4 (sample variances of (2, 2, 1, 3) and (0, 2, 1, 1))
    np.testing.assert_allclose(row["additive_l2_noise"], np.sqrt(1.0 + 4 / 12))
    np.testing.assert_allclose(row["model_fit"], _dcor_brute([2, 0.5, 0], d_ab))
    x_ab = tiny[tiny.obs["perturbation"] == "B+A"].X
    expected = tiny[tiny.obs["perturbation"] == "ctrl"].X + additive
    np.testing.assert_allclose(row["energy_distance"], _energy_brute(x_ab, expected))
    # the floor is the energy distance of one split of the 4 double cells into 2 + 2
    splits = [
        _energy_brute(x_ab[list(h)], x_ab[[i for i in range(4) if i not in h]])
        for h in itertools.combinations(range(4), 2)
    ]
    assert np.isclose(splits, row["energy_distance_floor"]).any()


def test_null_is_the_floor_shifted_by_the_noise_of_the_means():
    from pdae_sc.tl._interactions import _score_pair, _summary

    rng = np.random.default_rng(5)
    cells = {k: rng.normal(size=(n, 4)) for k, n in (("c", 30), ("a", 10), ("b", 20), ("ab", 8))}
    args = [_summary(cells[k]) for k in ("c", "a", "b", "ab")]
    row = _score_pair(*args, cells["ab"], cells["c"], np.random.default_rng(0))
    replay = np.random.default_rng(0)
    h1, h2 = np.array_split(replay.permutation(8), 2)
    sem2 = {k: cells[k].var(axis=0, ddof=1) / len(cells[k]) for k in cells}
    shift = replay.normal(0.0, np.sqrt(sem2["a"] + sem2["b"]))  # the singles' mean errors
    x = cells["ab"]
    np.testing.assert_allclose(row["energy_distance_floor"], _energy_brute(x[h1], x[h2]))
    np.testing.assert_allclose(row["energy_distance_null"], _energy_brute(x[h1] + shift, x[h2]))
    np.testing.assert_allclose(row["additive_l2_noise"], np.sqrt(sum(sem2.values()).sum()))


def test_additive_double_scores_as_additive():
    rng = np.random.default_rng(0)
    ctrl = rng.normal(size=(400, 6))
    d_a, d_b = rng.normal(size=6), rng.normal(size=6)
    adata = _adata(
        {
            "ctrl": ctrl.tolist(),
            "A": (ctrl + d_a).tolist(),
            "B": (ctrl + d_b).tolist(),
            "A+B": (ctrl + d_a + d_b).tolist(),
        }
    )
    row = pdae.tl.interaction_scores(adata).iloc[0]
    np.testing.assert_allclose([row["coef_a"], row["coef_b"]], [1.0, 1.0])
    np.testing.assert_allclose(row["magnitude"], np.sqrt(2))
    np.testing.assert_allclose([row["dominance"], row["additive_l2"]], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose([row["model_fit"], row["fit_r2"], row["corr_additive"]], 1.0)
    # the double's cells are the additive expectation's: the unbiased estimate of two
    # identical samples is -2 E||X - X'|| / n, i.e. 0 up to the U-statistic's correction
    x = ctrl + d_a + d_b
    np.testing.assert_allclose(row["energy_distance"], _energy_brute(x, x))
    assert abs(row["energy_distance"]) < 0.05


def test_dominance_nan_for_negative_coefficient_and_collinear_singles():
    suppress = _adata(
        {
            "ctrl": [[0, 0, 0]] * 2,
            "A": [[1, 0, 0]] * 2,
            "B": [[0, 1, 0]] * 2,
            "A+B": [[1, -1, 0]] * 4,
        }
    )
    row = pdae.tl.interaction_scores(suppress).iloc[0]
    np.testing.assert_allclose([row["coef_a"], row["coef_b"]], [1.0, -1.0])
    assert np.isnan(row["dominance"])
    assert np.isclose(row["magnitude"], np.sqrt(2))
    collinear = _adata(
        {
            "ctrl": [[0, 0]] * 2,
            "A": [[1, 1]] * 2,
            "B": [[2, 2]] * 2,
            "A+B": [[3, 3]] * 4,
        }
    )
    row = pdae.tl.interaction_scores(collinear).iloc[0]
    assert row[["coef_a", "coef_b", "magnitude", "dominance", "model_fit"]].isna().all()
    assert np.isclose(row["corr_additive"], 1.0) or np.isnan(row["corr_additive"])


def test_distance_correlation_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=57)
    y = x**2 + 0.3 * rng.normal(size=57)
    np.testing.assert_allclose(_distance_correlation(x, y), _dcor_brute(x, y))
    np.testing.assert_allclose(_distance_correlation(x, 3 * x + 1), 1.0)
    assert np.isnan(_distance_correlation(x, np.zeros(57)))


def test_pairs_selection_and_errors(tiny):
    by_tuple = pdae.tl.interaction_scores(tiny, pairs=[("A", "B")], max_cells=None)
    by_label = pdae.tl.interaction_scores(tiny, pairs=["A+B"], max_cells=None)
    pd.testing.assert_frame_equal(by_tuple, by_label)
    with pytest.raises(ValueError, match="needs cells of"):
        pdae.tl.interaction_scores(tiny, pairs=["A+C"])
    with pytest.raises(ValueError, match="not a pair"):
        pdae.tl.interaction_scores(tiny, pairs=["A"])
    with pytest.raises(KeyError, match="perturbation_key"):
        pdae.tl.interaction_scores(tiny, perturbation_key="condition")
    with pytest.raises(ValueError, match="max_cells"):
        pdae.tl.interaction_scores(tiny, max_cells=1)
    no_ctrl = tiny[tiny.obs["perturbation"] != "ctrl"].copy()
    with pytest.raises(ValueError, match="no 'ctrl' cells"):
        pdae.tl.interaction_scores(no_ctrl)


def test_default_skips_doubles_without_singles(tiny):
    extra = ad.concat([tiny, _adata({"A+C": [[1, 1, 1]] * 3})], index_unique="-")
    before = extra.copy()
    with pytest.warns(UserWarning, match="Skipped 1 doubles"):
        scores = pdae.tl.interaction_scores(extra)
    assert scores["pair"].tolist() == ["B+A"]
    np.testing.assert_array_equal(extra.X, before.X)  # the data were not modified
    assert extra.obs.equals(before.obs)


class _ReplayModel:
    """Stands in for a trained PDAE: 'predicts' a condition by returning its measured cells."""

    def __init__(self, adata):
        self.adata = adata
        self.registration = type("R", (), {"control_group": "ctrl", "delimiter": "+"})()
        self.perturbations = ["A", "B", "C"]

    def _rows(self, label):
        key = frozenset(label.split("+")) - {"ctrl"}
        labels = self.adata.obs["perturbation"].astype(str)
        return [i for i, lab in enumerate(labels) if frozenset(lab.split("+")) - {"ctrl"} == key]

    def check_extrapolation(self, perturbations, context=None):
        return pd.DataFrame(
            {"in_span": True, "seen": True, "status": "seen in training"},
            index=list(perturbations),
        )

    def target_labels(self, perturbations):
        raise KeyError(f"Unknown perturbation {perturbations[0]!r}")

    def predict(self, targets, *, n_cells, seed, source=None, context=None):
        blocks = [self.adata.X[self._rows(t)[:n_cells]] for t in targets]
        obs = pd.DataFrame({"perturbation": np.repeat(targets, n_cells)})
        obs.index = obs.index.astype(str)
        return ad.AnnData(np.vstack(blocks), obs=obs)


def test_predicted_scores_are_scored_exactly_as_measured():
    rng = np.random.default_rng(3)
    n = 12
    blocks = {}
    for label in ("ctrl", "A", "B", "C", "A+B", "B+C"):
        blocks[label] = (rng.normal(size=(n, 5)) + rng.normal(size=5) * 2).tolist()
    adata = _adata(blocks)
    measured = pdae.tl.interaction_scores(adata, pairs=["A+B", "B+C"], max_cells=None, seed=4)
    model = _ReplayModel(adata)
    predicted = pdae.tl.predicted_interaction_scores(
        model, ["A+B", ("B", "C")], n_cells=n, n_cells_reference=n, chunk_size=1, seed=4
    )
    assert (predicted["origin"] == "predicted").all()
    assert predicted["status"].tolist() == ["seen in training"] * 2
    assert predicted.attrs["pairs_per_second"] > 0
    pd.testing.assert_frame_equal(
        predicted[["pair", *SCORE_COLUMNS]], measured[["pair", *SCORE_COLUMNS]]
    )
    with pytest.raises(KeyError, match="Unknown perturbation 'D'"):
        pdae.tl.predicted_interaction_scores(model, ["A+D"])
    with pytest.raises(TypeError, match="must be a trained"):
        pdae.tl.predicted_interaction_scores(adata)
    with pytest.raises(ValueError, match="n_cells"):
        pdae.tl.predicted_interaction_scores(model, ["A+B"], n_cells=2)


def test_predicted_default_pairs_with_a_trained_model(trained):
    model, adata = trained  # trained without the double P0+P1
    scores = pdae.tl.predicted_interaction_scores(model, n_cells=50, n_cells_reference=100)
    assert scores["pair"].tolist() == ["P0+P1"]
    assert scores["status"].tolist() == ["in span, in range"]
    assert list(scores.columns) == [*COLUMNS, "status"]
    # every score is defined, except dominance where a coefficient is not positive
    assert scores[[c for c in SCORE_COLUMNS if c != "dominance"]].notna().all(axis=None)
    both_positive = (scores["coef_a"] > 0) & (scores["coef_b"] > 0)
    assert (scores["dominance"].notna() == both_positive).all()
    assert scores["n_cells"].tolist() == [50]
    measured = pdae.tl.interaction_scores(adata)
    both = pd.concat([measured, scores], ignore_index=True)
    assert set(both["origin"]) == {"measured", "predicted"}
