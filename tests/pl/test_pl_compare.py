"""Tests of pl.mean_change, pl.distributions and pl.metrics on tiny simulated data."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import pdae_sc as pdae
from pdae_sc import pl


@pytest.fixture(scope="module")
def data():
    adata = pdae.data.simulate(n_perturbations=3, n_genes=20, n_cells_per_condition=20, seed=0)
    pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=30)
    return adata, pred


def snapshot(adata):
    return adata.X.copy(), adata.obs.copy(), adata.var.copy(), set(adata.uns)


def assert_unchanged(adata, snap):
    x, obs, var, uns = snap
    np.testing.assert_array_equal(adata.X, x)
    pd.testing.assert_frame_equal(adata.obs, obs)
    pd.testing.assert_frame_equal(adata.var, var)
    assert set(adata.uns) == uns


def test_mean_change(data):
    adata, pred = data
    snaps = snapshot(adata), snapshot(pred)
    ax = pl.mean_change(pred, adata, condition="P0+P1", top_genes=5)
    assert isinstance(ax, Axes)
    assert len(ax.collections) == 1
    assert len(ax.collections[0].get_offsets()) == adata.n_vars
    assert len(ax.lines) >= 1
    assert len(ax.texts) == 5
    ctrl = np.asarray(adata[adata.obs["perturbation"] == "ctrl"].X).mean(0)
    x_true = np.asarray(adata[adata.obs["perturbation"] == "P0+P1"].X)
    r = pdae.tl.pearson_delta(np.asarray(pred.X), x_true, ctrl)
    assert f"{r:.2f}" in ax.get_title()
    assert ax.get_xlabel()
    assert ax.get_ylabel()
    assert_unchanged(adata, snaps[0])
    assert_unchanged(pred, snaps[1])


def test_mean_change_uses_ax_and_matches_reordered_condition(data):
    adata, pred = data
    fig, ax = plt.subplots()
    out = pl.mean_change(pred, adata, condition="P1+P0", adata_control=adata, ax=ax)
    assert out is ax
    assert len(ax.texts) == 0
    assert plt.get_fignums() == [fig.number]


def test_mean_change_errors(data):
    adata, pred = data
    with pytest.raises(KeyError, match="P2\\+P9"):
        pl.mean_change(pred, adata, condition="P2+P9")
    with pytest.raises(ValueError, match="var_names"):
        pl.mean_change(pred, adata[:, :10], condition="P0+P1")
    with pytest.raises(ValueError, match="control"):
        pl.mean_change(pred, adata[adata.obs["perturbation"] == "P0+P1"], condition="P0+P1")


@pytest.mark.parametrize("kind", ["violin", "box"])
def test_distributions(data, kind):
    adata, pred = data
    snaps = snapshot(adata), snapshot(pred)
    genes = ["gene_0", "gene_3", "gene_5"]
    ax = pl.distributions(
        pred, adata, condition="P0+P1", genes=genes, adata_control=adata, kind=kind
    )
    assert isinstance(ax, Axes)
    if kind == "violin":
        assert len(ax.collections) >= 3 * len(genes)
    else:
        assert len(ax.patches) == 3 * len(genes)
    assert [t.get_text() for t in ax.get_xticklabels()] == genes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "control",
        "observed",
        "predicted",
    ]
    assert_unchanged(adata, snaps[0])
    assert_unchanged(pred, snaps[1])


def test_distributions_single_gene_on_given_ax(data):
    adata, pred = data
    _, ax = plt.subplots()
    assert pl.distributions(pred, adata, condition="P0+P1", genes="gene_1", ax=ax) is ax
    assert len(ax.get_legend().get_texts()) == 2
    with pytest.raises(KeyError, match="nope"):
        pl.distributions(pred, adata, condition="P0+P1", genes=["nope"])
    with pytest.raises(ValueError, match="kind"):
        pl.distributions(pred, adata, condition="P0+P1", genes="gene_1", kind="hist")


@pytest.fixture(scope="module")
def table():
    adata = pdae.data.simulate(n_perturbations=4, n_genes=20, n_cells_per_condition=20, seed=0)
    held = ["P0+P1", "P2+P3"]
    train = adata[~adata.obs["perturbation"].isin(held)].copy()
    frames = [
        pdae.tl.evaluate(
            pdae.tl.predict_baseline(train, held, method=m, n_cells=30), adata, metrics=None
        )
        for m in ("control", "additive", "linear")
    ]
    return pd.concat(frames, ignore_index=True)


def test_metrics(table):
    before = table.copy()
    ax = pl.metrics(table, metric="energy_distance")
    assert isinstance(ax, Axes)
    assert len(ax.collections) >= 6  # dots and mean of each method
    means = table.groupby("method")["energy_distance"].mean().sort_values()
    # Best (smallest) method at the top: the tick labels run from the bottom up.
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ticks = ax.get_yticks()
    top_down = [lab for _, lab in sorted(zip(ticks, labels, strict=True), reverse=True)]
    assert top_down == list(means.index)
    assert "lower is better" in ax.get_xlabel()
    pd.testing.assert_frame_equal(table, before)


def test_metrics_higher_is_better_and_ax(table):
    _, ax = plt.subplots()
    assert pl.metrics(table, metric="pearson_delta", ax=ax) is ax
    assert "higher is better" in ax.get_xlabel()
    means = table.groupby("method")["pearson_delta"].mean().sort_values(ascending=False)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    ticks = ax.get_yticks()
    assert [lab for _, lab in sorted(zip(ticks, labels, strict=True), reverse=True)] == list(
        means.index
    )
    with pytest.raises(KeyError, match="choose from"):
        pl.metrics(table, metric="condition")
    with pytest.raises(TypeError):
        pl.metrics(table.to_numpy())


# ------------------------------------------ one return convention for every plot (issue 12)
def _all_plots(data, table):
    adata, pred = data
    shifts = pd.DataFrame(np.eye(3, 4), index=["P0", "P1", "P2"])
    hist = {"train_loss": pd.Series([3.0, 2.0, 1.0])}
    joint = pdae.tl.joint_embedding(pred, adata, basis="pca", n_pcs=3)
    return {
        "mean_change": lambda **kw: pl.mean_change(pred, adata, condition="P0+P1", **kw),
        "distributions": lambda **kw: pl.distributions(
            pred, adata, condition="P0+P1", genes="gene_0", **kw
        ),
        "metrics": lambda **kw: pl.metrics(table, **kw),
        "cross_validation": lambda **kw: pl.cross_validation(table.assign(fold=0), **kw),
        "perturbation_embedding": lambda **kw: pl.perturbation_embedding(shifts, **kw),
        "history": lambda **kw: pl.history(hist, **kw),
        "embedding": lambda **kw: pl.embedding(joint, color="origin", basis="pca", **kw),
        "interactions": lambda **kw: pl.interactions(
            pdae.tl.interaction_scores(adata), origin="measured", **kw
        ),
    }


def test_every_plot_returns_the_axes_or_the_figure(data, table):
    plots = _all_plots(data, table)
    assert set(plots) == set(pl.__all__)
    for name, plot in plots.items():
        ax = plot()
        assert isinstance(ax, Axes), name
        _, given = plt.subplots()
        assert plot(ax=given) is given, name
        fig = plot(return_fig=True)
        assert isinstance(fig, Figure), name
        assert fig is not ax.figure, name
        assert plot(ax=given, return_fig=True) is given.figure, name
        with pytest.raises(TypeError, match="return_fig"):
            plot(return_fig="yes")
        plt.close("all")
