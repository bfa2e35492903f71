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


def test_latent_representation_of_new_cells_without_labels(trained, small_adata):
    model, _ = trained
    new = small_adata[small_adata.obs["perturbation"] == "P0+P1"].copy()  # never registered
    z_new = model.get_latent_representation(new)
    assert z_new.shape == (new.n_obs, 4)
    del new.obs["perturbation"]  # the encoder needs no labels
    np.testing.assert_allclose(
        model.get_latent_representation(new, batch_size=7), z_new, atol=1e-5
    )
    with pytest.raises(KeyError, match="perturbation_key='perturbation' is not a column"):
        model.get_latent_representation(new, basal=True)  # the shift needs the labels
    new.obs["perturbation"] = "Q9"  # unknown labels are not read either
    np.testing.assert_allclose(model.get_latent_representation(new), z_new, atol=1e-5)


def test_latent_representation_indices(trained):
    model, adata = trained
    z = model.get_latent_representation()
    idx = [5, 0, 17]
    np.testing.assert_allclose(model.get_latent_representation(indices=idx), z[idx], atol=1e-6)
    zb = model.get_latent_representation(basal=True)
    np.testing.assert_allclose(
        model.get_latent_representation(None, idx, basal=True), zb[idx], atol=1e-6
    )
    mask = np.zeros(adata.n_obs, dtype=bool)
    mask[[1, 2]] = True
    np.testing.assert_allclose(model.get_latent_representation(indices=mask), z[[1, 2]], atol=1e-6)
    with pytest.raises(IndexError, match=r"indices \[10000\] are outside"):
        model.get_latent_representation(indices=[10000])


def test_latent_representation_reads_the_registered_layer(small_adata):
    small_adata.layers["expr"] = small_adata.X.copy()
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl", layer="expr")
    model = PDAE(small_adata, n_latent=4, n_hidden=(16,), n_noise=2)
    model.train(max_epochs=1, enable_progress_bar=False, n_sources=16, check_fit=False)
    new = small_adata.copy()
    new.X = np.zeros_like(new.X)  # only the layer holds the expression
    del new.obs["perturbation"]
    np.testing.assert_allclose(
        model.get_latent_representation(new), model.get_latent_representation(), atol=1e-6
    )


def test_counterfactual_returns_the_array_and_writes_only_a_named_layer(trained):
    model, adata = trained
    layers = set(adata.layers)
    x = model.get_counterfactual(perturbation="P0+P1", layer_added=None, seed=0)
    assert x.shape == adata.shape
    assert set(adata.layers) == layers
    y = model.get_counterfactual(perturbation="P0+P1", layer_added="cf", seed=0)
    np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(adata.layers["cf"], y)
    layers = set(adata.layers)
    z = model.get_counterfactual(perturbation="P0+P1", seed=0)  # the default writes nothing
    np.testing.assert_array_equal(x, z)
    assert set(adata.layers) == layers
    assert "pdae_counterfactual" not in adata.layers
    with pytest.raises(TypeError, match="layer_added=3"):
        model.get_counterfactual(perturbation="P0", layer_added=3)


def test_counterfactual_after_setup_mudata_on_a_subset_writes_no_hidden_copy(small_adata):
    import mudata as md

    labels = small_adata.obs["perturbation"].astype(str).to_numpy().astype(object)
    labels[:5] = "unassigned"
    small_adata.obs["perturbation"] = labels
    mdata = md.MuData({"rna": small_adata})
    copy = PDAE.setup_mudata(mdata, perturbation_key="perturbation")
    assert copy is not mdata["rna"]
    model = PDAE(mdata, n_latent=4, n_hidden=(16,), n_noise=2)
    model.train(max_epochs=1, enable_progress_bar=False, n_sources=16, check_fit=False)
    with pytest.raises(ValueError, match="holds a copy of them"):
        model.get_counterfactual(perturbation="P0", layer_added="cf")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        x = model.get_counterfactual(perturbation="P0")  # the default writes nothing here
    assert x.shape == (copy.n_obs, copy.n_vars)
    assert not copy.layers
    model.get_counterfactual(copy, perturbation="P0", layer_added="cf")  # asked for
    assert "cf" in copy.layers


def test_view_anndata_setup_shows_vocabulary_and_control(trained, capsys):
    model, _ = trained
    model.view_anndata_setup()
    out = capsys.readouterr().out
    assert "perturbation State Registry" in out
    assert "Control group" in out
    assert "'ctrl'" in out
    assert "Perturbations (4)" in out
    assert "P0, P1, P2, P3" in out
    assert "adata.obs['perturbation']" in out


# ---------------------------------------------------------------- predict output (item 16)
def test_predict_keeps_var(trained):
    model, adata = trained
    adata.var["gene_symbols"] = [f"SYM{i}" for i in range(adata.n_vars)]
    adata.var["highly_variable"] = np.arange(adata.n_vars) % 2 == 0
    pred = model.predict(["P0+P1"], n_cells=5, seed=0)
    assert pred.var.equals(adata.var)
    assert pred.var is not adata.var


def test_predict_labels_targets_as_the_training_data_spell_them(trained):
    model, _ = trained
    pred = model.predict(["P1+P0", "P0+ctrl", "P2+P1", "ctrl+ctrl"], n_cells=3, seed=0)
    # P0+P1 is held out: written in the order of model.perturbations; the others as trained
    assert pred.obs["perturbation"].cat.categories.tolist() == ["P0+P1", "P0", "P1+P2", "ctrl"]
    assert pred.obs["perturbation"].tolist() == [
        t for t in ["P0+P1", "P0", "P1+P2", "ctrl"] for _ in range(3)
    ]


def test_predict_obs_names_are_unique_across_calls(trained):
    import anndata as ad

    model, _ = trained
    first = model.predict(["P0+P1", "P0+P1"], n_cells=4, seed=0)
    second = model.predict(["P0+P1"], n_cells=4, seed=1)
    assert first.obs_names.is_unique
    assert first.obs_names[0] == "P0+P1_0_0"
    assert ad.concat([first, second]).obs_names.is_unique


def test_predict_sparse_output(small_adata):
    import scipy.sparse as sp

    small_adata.X = sp.csr_matrix(np.clip(small_adata.X, 0, None))
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = PDAE(small_adata, n_latent=4, n_hidden=(16,), n_noise=2)
    model.train(max_epochs=1, enable_progress_bar=False, n_sources=16, check_fit=False)
    dense = model.predict(["P0"], n_cells=6, seed=0)
    assert isinstance(dense.X, np.ndarray)  # the default stays dense
    like_input = model.predict(["P0"], n_cells=6, seed=0, sparse=None)
    assert sp.issparse(like_input.X)
    assert like_input.X.format == "csr"
    np.testing.assert_array_equal(like_input.X.toarray(), dense.X)
    assert not sp.issparse(model.predict(["P0"], n_cells=2, seed=0, sparse=False).X)
    with pytest.raises(TypeError, match="sparse='csr'"):
        model.predict(["P0"], n_cells=2, sparse="csr")


def test_pdae_source_has_one_dtype_in_predict_and_baselines(trained):
    import pdae_sc as pdae

    model, adata = trained
    pred = model.predict(["P0+P1"], n_cells=4, seed=0)
    base = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", seed=0)
    for col in ("pdae_source", "pdae_source_cell"):
        assert pred.obs[col].dtype.name == base.obs[col].dtype.name, col


def test_check_fit_moves_equally_many_distinct_cells(trained):
    """Both source sets and the unmoved control: the same number of cells, none twice.

    The control has 30 cells here; with the default ``n_cells=200`` a draw with
    replacement would repeat each control cell and score that source set worse.
    """
    from pdae_sc.model import _predict

    model, _ = trained
    drawn = []
    original = _predict.move_sources

    def recording(*args, out, **kwargs):
        picks = original(*args, out=out, **kwargs)
        drawn.append((len(out), len(np.unique(picks))))
        return picks

    _predict.move_sources = recording
    try:
        table = model.check_fit(n_conditions=3)
    finally:
        _predict.move_sources = original
    assert len(drawn) == 2 * len(table)
    assert all(n == distinct == 30 for n, distinct in drawn)
