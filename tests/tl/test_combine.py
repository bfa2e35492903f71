"""combine_predictions keeps what scanpy reads: uns, category order, column types, one scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import pdae_sc as pdae


@pytest.fixture
def screen():
    """Counts -> normalize + log1p, as a user has them, with scanpy's colours and types."""
    adata = pdae.data.simulate(
        n_perturbations=3, n_latent=4, n_genes=10, n_cells_per_condition=10, counts=True, seed=0
    )
    adata.X = adata.layers.pop("counts")
    pdae.pp.normalize_counts(adata)
    held = adata.obs["perturbation"].isin(["P0+P1"])
    observed = adata[~held].copy()
    observed.obs["perturbation"] = observed.obs["perturbation"].astype("category")
    cats = list(observed.obs["perturbation"].cat.categories)
    observed.uns["perturbation_colors"] = np.array([f"#0000{i:02x}" for i in range(len(cats))])
    observed.obs["n_genes"] = np.arange(observed.n_obs, dtype=np.int64)  # observed only
    observed.obs["replicate"] = np.int64(1)  # both sides, integer on both
    observed.obs["is_doublet"] = False  # observed only, boolean
    pred = pdae.tl.predict_baseline(observed, ["P0+P1"], method="additive", n_cells=6, seed=0)
    pred.obs["replicate"] = np.int64(2)
    return observed, pred, dict(zip(cats, observed.uns["perturbation_colors"], strict=True))


def test_keeps_uns_category_order_and_integer_columns(screen, tmp_path):
    observed, pred, colours = screen
    both = pdae.tl.combine_predictions(pred, observed)
    assert both.uns["log1p"] == observed.uns["log1p"]
    assert both.uns["pdae"]["method"] == "additive"
    cats = list(both.obs["perturbation"].cat.categories)
    assert cats[0] == "ctrl"  # "ctrl" sorts after "P0"... as text
    assert set(cats) == set(colours) | {"P0+P1"}
    # every observed condition keeps its colour, matched by name; the new one gets its own
    got = dict(zip(cats, both.uns["perturbation_colors"], strict=True))
    assert {c: got[c] for c in colours} == colours
    assert got["P0+P1"] not in colours.values()
    assert both.obs["replicate"].dtype == np.int64
    assert both.obs["replicate"].tolist() == [1] * observed.n_obs + [2] * pred.n_obs
    assert both.obs["n_genes"].dtype == "Int64"
    assert both.obs["n_genes"].iloc[: observed.n_obs].tolist() == list(range(observed.n_obs))
    assert both.obs["n_genes"].iloc[observed.n_obs :].isna().all()
    assert both.obs["is_doublet"].dtype == "boolean"
    assert list(both.obs["origin"].cat.categories) == ["observed", "additive"]
    both.write_h5ad(tmp_path / "both.h5ad")  # scanpy users save it


def test_layer_is_taken_from_both_sides_or_refused(screen):
    observed, pred, _ = screen
    with pytest.raises(KeyError, match=r"layer='counts' is not in adata_pred\.layers.*scale="):
        pdae.tl.combine_predictions(pred, observed, layer="counts")
    pred.layers["counts"] = sp.csr_matrix(np.rint(np.expm1(np.asarray(pred.X)) * 3))
    both = pdae.tl.combine_predictions(pred, observed, layer="counts")
    x = both.X.toarray()
    np.testing.assert_array_equal(
        x[: observed.n_obs],
        observed.layers["counts"].toarray()
        if sp.issparse(observed.layers["counts"])
        else observed.layers["counts"],
    )
    np.testing.assert_array_equal(x[observed.n_obs :], pred.layers["counts"].toarray())
    assert "log1p" not in both.uns  # X holds counts here
    with pytest.raises(KeyError, match=r"adata_true\.layers"):
        pdae.tl.combine_predictions(pred, observed, layer="raw")


def test_drops_uns_of_slots_it_does_not_carry(screen):
    observed, pred, _ = screen
    import scanpy as sc

    sc.pp.pca(observed, n_comps=3)
    both = pdae.tl.combine_predictions(pred, observed)
    assert "pca" not in both.uns
    assert "X_pca" not in both.obsm
    with pytest.raises(ValueError, match="key_added='perturbation' is already a column"):
        pdae.tl.combine_predictions(pred, observed, key_added="perturbation")
    pd.testing.assert_index_equal(both.var_names, observed.var_names)
