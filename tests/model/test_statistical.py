"""Slow statistical checks: the PDAE beats the baselines on held-out doubles of seen singles."""

from __future__ import annotations

import pandas as pd
import pytest
import scvi

import pdae_sc as pdae

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [0, 1])
def test_pdae_beats_baselines_on_held_out_doubles(seed):
    adata = pdae.data.simulate(
        n_perturbations=10, n_genes=100, n_cells_per_condition=100, basal="laplace", seed=seed
    )
    split = pdae.data.split_perturbations(adata, holdout="doubles", n_holdout=10, seed=seed)
    train, test = adata[split == "train"].copy(), adata[split == "test"].copy()
    targets = sorted(test.obs["perturbation"].unique())

    scvi.settings.seed = seed
    pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(train)
    model.train(enable_progress_bar=False)
    assert model.check_extrapolation(targets)["in_span"].all()

    preds = [model.predict(targets, n_cells=500, seed=seed)]
    preds += [
        pdae.tl.predict_baseline(train, targets, method=m, n_cells=500, seed=seed)
        for m in ("control", "pooled", "additive")
    ]
    table = pd.concat(
        [
            pdae.tl.evaluate(p, test, adata_control=train, metrics=["energy_distance", "mean_l2"])
            for p in preds
        ]
    )
    means = table.groupby("method")[["energy_distance", "mean_l2"]].mean()
    ed = means["energy_distance"]
    assert ed["pdae"] < ed["additive"], means
    assert ed["pdae"] < ed["control"], means
    assert ed["pdae"] < ed["pooled"], means
    # and in most held-out conditions, not only on average
    wide = table.pivot(index="condition", columns="method", values="energy_distance")
    assert (wide["pdae"] < wide["additive"]).mean() >= 0.6, wide
