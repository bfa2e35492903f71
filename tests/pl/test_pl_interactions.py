"""pl.interactions on a hand-made interaction table (no training)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import pdae_sc as pdae


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        origin = "measured" if i < 4 else "predicted"
        rows.append(
            {
                "pair": f"P{i}+Q{i}",
                "origin": origin,
                "magnitude": 1.0 + 0.1 * i,
                "model_fit": rng.uniform(0.5, 1.0),
                "energy_distance": 0.01 * i,
                "energy_distance_floor": 0.002,
            }
        )
    return pd.DataFrame(rows)


def test_scatter_colours_by_origin_and_labels_top_pairs(scores):
    before = scores.copy()
    ax = pdae.pl.interactions(scores, n_labels=3)
    assert isinstance(ax, Axes)
    assert [c.get_offsets().shape[0] for c in ax.collections] == [4, 8]
    texts = [t.get_text() for t in ax.texts]
    # the 3 largest energy distances of each origin
    assert set(texts) - {"additive (c_A = c_B = 1)"} == {
        "P11+Q11",
        "P10+Q10",
        "P9+Q9",
        "P3+Q3",
        "P2+Q2",
        "P1+Q1",
    }
    assert any(np.isclose(line.get_ydata()[0], np.sqrt(2)) for line in ax.lines)
    pd.testing.assert_frame_equal(scores, before)


def test_ranking_orders_predicted_pairs_with_floor(scores):
    _, ax = plt.subplots()
    out = pdae.pl.interactions(scores, kind="ranking", n_top=5, ax=ax)
    assert out is ax
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # largest on top: the top tick (highest position) is the largest departure
    positions = ax.get_yticks()
    assert labels[int(np.argmax(positions))] == "P11+Q11"
    assert sorted(labels) == sorted(f"P{i}+Q{i}" for i in range(7, 12))
    widths = sorted(p.get_width() for p in ax.patches)
    np.testing.assert_allclose(widths, [0.07, 0.08, 0.09, 0.10, 0.11])
    floor = ax.collections[0].get_offsets()
    np.testing.assert_allclose(floor[:, 0], 0.002)


def test_ranking_measured_only_and_errors(scores):
    ax = pdae.pl.interactions(scores, kind="ranking", origin="measured")
    assert len(ax.patches) == 4
    with pytest.raises(ValueError, match="kind"):
        pdae.pl.interactions(scores, kind="bars")
    with pytest.raises(KeyError, match="no column"):
        pdae.pl.interactions(scores.drop(columns="magnitude"))
    with pytest.raises(ValueError, match="origin="):
        pdae.pl.interactions(scores, kind="ranking", origin="simulated")
    with pytest.raises(TypeError, match="DataFrame"):
        pdae.pl.interactions(scores.to_dict())


def test_plot_from_real_scores_saved(tmp_path):
    adata = pdae.data.simulate(n_perturbations=5, n_genes=20, n_cells_per_condition=40, seed=0)
    scores = pdae.tl.interaction_scores(adata)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    pdae.pl.interactions(scores, ax=axes[0])
    pdae.pl.interactions(scores, kind="ranking", origin=None, ax=axes[1])
    fig.savefig(tmp_path / "interactions.png", dpi=80)
    assert (tmp_path / "interactions.png").stat().st_size > 0
