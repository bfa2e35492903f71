"""Bad inputs of the tools (``docs/reliability.md``): type, message, inputs unchanged."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import pdae_sc as pdae


def _data():
    return pdae.data.simulate(
        n_perturbations=3, n_latent=4, n_genes=10, n_cells_per_condition=10, seed=0
    )


def _same(a: ad.AnnData, b: ad.AnnData) -> None:
    np.testing.assert_array_equal(np.asarray(a.X), np.asarray(b.X))
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)


# ---------------------------------------------------------------- 10. evaluate, baselines
def test_evaluate_warns_about_nan_predictions():
    adata = _data()
    pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=10, seed=0)
    pred.X[2] = np.nan
    before = pred.copy()
    with pytest.warns(
        UserWarning, match=r"adata_pred has NaN or Inf values in condition 'P0\+P1'"
    ):
        scores = pdae.tl.evaluate(pred, adata, metrics=["mean_l2"])
    assert np.isnan(scores["mean_l2"]).all()
    _same(before, pred)


@pytest.mark.parametrize("top_genes", [-3, 0, 2.5])
def test_evaluate_top_genes_must_be_positive(top_genes):
    adata = _data()
    pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=10, seed=0)
    with pytest.raises(ValueError, match=rf"top_genes={top_genes}; use a positive number"):
        pdae.tl.evaluate(pred, adata, top_genes=top_genes)


@pytest.mark.parametrize("n_cells", [0, -2])
def test_predict_baseline_n_cells_must_be_positive(n_cells):
    adata = _data()
    before = adata.copy()
    with pytest.raises(ValueError, match=rf"n_cells={n_cells}; use an integer >= 1"):
        pdae.tl.predict_baseline(adata, ["P0"], method="control", n_cells=n_cells)
    _same(before, adata)


def test_predict_baseline_dosages_must_be_a_list():
    with pytest.raises(TypeError, match=r"dosages='2' must be a list"):
        pdae.tl.predict_baseline(_data(), ["P0"], method="additive", dosages="2")


# ---------------------------------------------------------------- 12. combine_predictions
def test_combine_keeps_missing_values_missing():
    adata = _data()
    adata.obs["donor"] = "d1"
    pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=5, seed=0)
    before = adata.copy()
    combined = pdae.tl.combine_predictions(pred, adata)
    predicted = combined.obs["origin"] == "additive"
    assert combined.obs.loc[predicted, "donor"].isna().all()
    assert "nan" not in combined.obs["donor"].cat.categories
    assert (combined.obs.loc[~predicted, "donor"] == "d1").all()
    assert combined.obs.loc[~predicted, "pdae_source"].isna().all()
    _same(before, adata)


def test_combine_takes_the_prediction_first_and_refuses_the_old_order():
    adata = _data()
    pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=5, seed=0)
    combined = pdae.tl.combine_predictions(pred, adata)
    assert (combined.obs["origin"].iloc[: adata.n_obs] == "observed").all()
    assert (combined.obs["origin"].iloc[adata.n_obs :] == "additive").all()
    # the pre-0.2 order (observed, prediction) would label the observed cells "additive"
    with pytest.raises(ValueError, match=r"swapped.*combine_predictions\(adata_pred, adata_true"):
        pdae.tl.combine_predictions(adata, pred)


# ---------------------------------------------------------------- 17. backed AnnData
@pytest.mark.parametrize("method", ["control", "pooled", "additive"])
def test_predict_baseline_on_backed_anndata(tmp_path, method):
    adata = _data()
    adata.write_h5ad(tmp_path / "data.h5ad")
    backed = ad.read_h5ad(tmp_path / "data.h5ad", backed="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = pdae.tl.predict_baseline(backed, ["P0+P1"], method=method, n_cells=25, seed=0)
    expected = pdae.tl.predict_baseline(adata, ["P0+P1"], method=method, n_cells=25, seed=0)
    np.testing.assert_allclose(pred.X, expected.X, rtol=1e-6)
    backed.file.close()
