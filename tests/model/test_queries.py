"""Queries of a trained PDAE: seeds, trained checks, latents and counterfactuals on new data."""

from __future__ import annotations

import numpy as np
import pytest
import scvi

from pdae_sc.model import PDAE


def test_predict_without_seed_follows_scvi_settings_seed(trained):
    model, adata = trained
    draws = []
    for _ in range(2):
        scvi.settings.seed = 3
        pred = model.predict(["P0+P1"], n_cells=20)
        model.get_counterfactual(perturbation="P0", layer_added="cf")
        draws.append((pred.X.copy(), adata.layers["cf"].copy()))
    scvi.settings.seed = 0
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    np.testing.assert_array_equal(draws[0][1], draws[1][1])
    # within one run, calls without a seed still differ
    assert not np.array_equal(
        model.predict(["P0+P1"], n_cells=20).X, model.predict(["P0+P1"], n_cells=20).X
    )


def test_perturbation_embedding_needs_a_trained_model(small_adata):
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = PDAE(small_adata, n_latent=4)
    with pytest.raises(RuntimeError, match="not trained yet"):
        model.get_perturbation_embedding()
