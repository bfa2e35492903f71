"""The PDAE model class: setup, training, prediction, queries, persistence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import assert_adata_equal

import pdae_sc as pdae
from pdae_sc.model import PDAE, ExtrapolationWarning


def test_setup_does_not_change_data(small_adata):
    before = small_adata.copy()
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    assert_adata_equal(before, small_adata)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda a: None, KeyError, "perturbation_key='missing'"),
        (
            lambda a: a.obs.__setitem__(
                "perturbation", a.obs["perturbation"].astype(str).replace("ctrl", "CTRL")
            ),
            ValueError,
            "control_group",
        ),
        (
            lambda a: a.obs.__setitem__(
                "perturbation",
                a.obs["perturbation"].astype(object).where(np.arange(a.n_obs) != 3, None),
            ),
            ValueError,
            "missing",
        ),
        (lambda a: setattr(a, "var_names", ["g"] * a.n_vars), ValueError, "var_names_make_unique"),
        (lambda a: a.X.__setitem__((0, 0), np.nan), ValueError, "non-finite"),
    ],
)
def test_setup_errors(small_adata, change, error, match):
    key = "missing" if "missing'" in match else "perturbation"
    change(small_adata)
    before = small_adata.copy()
    with pytest.raises(error, match=match):
        PDAE.setup_anndata(small_adata, key, control_group="ctrl")
    assert_adata_equal(before, small_adata)


def test_setup_too_few_cells(small_adata):
    adata = small_adata[np.r_[0 : small_adata.n_obs - 29]].copy()  # last condition keeps 1 cell
    with pytest.raises(ValueError, match="min_cells_per_condition"):
        PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")


def test_setup_warns_on_counts():
    adata = pdae.data.simulate(
        n_perturbations=2, n_genes=20, n_cells_per_condition=20, counts=True, seed=0
    )
    adata.X = adata.layers["counts"].copy()
    with pytest.warns(UserWarning, match="raw counts"):
        PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")


def test_train_predict_unseen_double(trained):
    model, adata = trained
    assert model.is_trained
    assert {"train_loss", "energy_train"} <= set(model.history)
    assert len(model.history["train_loss"]) == 2
    pred = model.predict(["P0+P1", "P2"], n_cells=40, seed=0, method="pdae")
    assert pred.shape == (80, adata.n_vars)
    assert list(pred.var_names) == list(adata.var_names)
    assert pred.obs["perturbation"].value_counts().to_dict() == {"P0+P1": 40, "P2": 40}
    assert set(pred.obs["pdae_source_cell"]) <= set(adata.obs_names)
    assert pred.uns["pdae"]["method"] == "pdae"
    assert np.isfinite(pred.X).all()
    # predictions concatenate with the observed data
    both = pdae.tl.combine_predictions(pred, adata)
    assert both.n_obs == adata.n_obs + pred.n_obs
    assert set(both.obs["origin"]) == {"observed", "pdae"}


def test_predict_more_cells_than_sources_and_sources(trained):
    model, adata = trained
    n_ctrl = int((adata.obs["perturbation"] == "ctrl").sum())
    pred = model.predict(["P0+P1"], source="ctrl", n_cells=3 * n_ctrl + 1, seed=0)
    assert pred.n_obs == 3 * n_ctrl + 1
    assert set(pred.obs["pdae_source"]) == {"ctrl"}
    pred = model.predict(["P0+P1"], source="ctrl", seed=0)
    assert pred.n_obs == n_ctrl


def test_predict_is_reproducible_with_seed(trained):
    model, _ = trained
    a = model.predict(["P0+P1"], n_cells=20, seed=3).X
    b = model.predict(["P0+P1"], n_cells=20, seed=3).X
    c = model.predict(["P0+P1"], n_cells=20, seed=4).X
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_unknown_perturbation_lists_close_names(trained):
    model, _ = trained
    with pytest.raises(KeyError, match="P1"):
        model.predict(["P1+Q9"])
    with pytest.raises(KeyError, match=r"Closest known names: \['P0'"):
        model.check_extrapolation(["P0x"])


def test_bad_prediction_arguments(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="n_cells"):
        model.predict(["P0"], n_cells=0)
    with pytest.raises(ValueError, match="empty"):
        model.predict([])
    with pytest.raises(ValueError, match="source="):
        model.predict(["P0"], source="P0+P1")
    with pytest.raises(ValueError, match="context="):
        model.predict(["P0"], context="liver")


def test_predict_before_train(small_adata):
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = PDAE(small_adata)
    with pytest.raises(RuntimeError, match="train"):
        model.predict(["P0"])


def test_outside_span_warns_and_is_recorded():
    adata = pdae.data.simulate(
        n_perturbations=3,
        n_genes=10,
        n_cells_per_condition=10,
        conditions=["ctrl", "P0+P1", "P2"],
        seed=0,
    )
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, n_latent=4, n_hidden=(16,))
    model.train(max_epochs=1, enable_progress_bar=False, n_sources=8)
    table = model.check_extrapolation(["P0", "P0+P1+P2"])
    assert table["in_span"].tolist() == [False, True]
    assert table.loc["P0", "span_distance"] == pytest.approx(np.sqrt(0.5))
    with pytest.warns(ExtrapolationWarning, match="P0"):
        pred = model.predict(["P0", "P0+P1+P2"], n_cells=5, seed=0)
    rec = pred.uns["pdae"]["extrapolation"].set_index("target")
    assert not rec.loc["P0", "in_span"]


def test_no_warning_inside_span(trained):
    model, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        model.predict(["P0+P1"], n_cells=5, seed=0)


def test_doses_and_range():
    adata = pdae.data.simulate(
        n_perturbations=2,
        n_genes=10,
        n_cells_per_condition=10,
        conditions=["ctrl", "P0", "P0", "P1"],
        dosages=[None, 0.5, 1, 1],
        seed=0,
    )
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", dosage_key="dose")
    model = PDAE(adata, n_latent=4, n_hidden=(16,))
    model.train(max_epochs=1, enable_progress_bar=False, n_sources=8)
    table = model.check_extrapolation(["P0", "P0", "P0+P1"], dosages=["0.75", "2", "0.5+1"])
    assert table["in_range"].tolist() == [True, False, True]
    pred = model.predict(["P0"], dosages=["2"], n_cells=4, seed=0)
    assert pred.obs["dose"].tolist() == ["2"] * 4


def test_latent_embedding_counterfactual(trained):
    model, adata = trained
    z = model.get_latent_representation()
    zb = model.get_latent_representation(basal=True)
    assert z.shape == zb.shape == (adata.n_obs, 4)
    emb = model.get_perturbation_embedding()
    assert list(emb.index) == ["P0", "P1", "P2", "P3"]
    assert emb.shape == (4, 4)
    # basal = latent minus the cell's own shift
    p0 = (adata.obs["perturbation"] == "P0").to_numpy()
    np.testing.assert_allclose(
        z[p0] - zb[p0], np.tile(emb.loc["P0"].to_numpy(), (p0.sum(), 1)), atol=1e-5
    )
    ctrl = (adata.obs["perturbation"] == "ctrl").to_numpy()
    np.testing.assert_allclose(z[ctrl], zb[ctrl], atol=1e-6)


def test_save_load_roundtrip(trained, tmp_path):
    model, adata = trained
    path = tmp_path / "model"
    model.save(path, save_anndata=True)
    with pytest.raises(FileExistsError):
        model.save(path)
    for loaded in (PDAE.load(path), PDAE.load(path, adata=adata)):
        np.testing.assert_array_equal(
            loaded.predict(["P0+P1"], n_cells=10, seed=1).X,
            model.predict(["P0+P1"], n_cells=10, seed=1).X,
        )
        assert loaded.perturbations == model.perturbations


def test_load_drops_only_the_misleading_download_message(trained, tmp_path, capsys):
    """scvi-tools logs "File ... already downloaded" for every local load; load drops that
    line (nothing is downloaded), keeps the logger's other messages and its filters."""
    import logging

    model, _ = trained
    model.save(tmp_path / "model")
    log = logging.getLogger("scvi.data._download")
    filters_before = list(log.filters)
    capsys.readouterr()
    PDAE.load(tmp_path / "model", model.adata)
    assert "already downloaded" not in capsys.readouterr().out
    assert log.filters == filters_before
    from pdae_sc.model._persistence import quiet_local_load

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        with quiet_local_load():
            log.info("File x already downloaded")
            log.info("No backup URL provided for missing file x")
        log.info("File y already downloaded")
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    assert records == ["No backup URL provided for missing file x", "File y already downloaded"]


def test_sparse_and_layer_input(small_adata):
    adata = small_adata.copy()
    adata.layers["expr"] = sp.csr_matrix(np.clip(adata.X, 0, None))
    adata.X = np.zeros_like(adata.X)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", layer="expr")
    model = PDAE(adata, n_latent=4, n_hidden=(16,))
    assert model.module.decoder.output_activation == "relu"
    model.train(max_epochs=1, enable_progress_bar=False, n_sources=16)
    pred = model.predict(["P0+P1"], n_cells=10, seed=0)
    assert (pred.X >= 0).all()


def test_contexts(small_adata):
    adata = small_adata.copy()
    adata.obs["cell_line"] = np.where(np.arange(adata.n_obs) % 2 == 0, "K562", "RPE1")
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", context_keys="cell_line")
    model = PDAE(adata, n_latent=4, n_hidden=(16,))
    model.train(max_epochs=1, enable_progress_bar=False, n_sources=16)
    pred = model.predict(["P0+P1"], context="RPE1", n_cells=10, seed=0)
    assert set(pred.obs["cell_line"]) == {"RPE1"}
    src = adata.obs.loc[pred.obs["pdae_source_cell"].astype(str), "cell_line"]
    assert set(src) == {"RPE1"}


def test_all_pairs_estimator(small_adata):
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = PDAE(small_adata, n_latent=4, n_hidden=(16,), estimator="all_pairs")
    model.train(max_epochs=1, enable_progress_bar=False, batch_size=16)
    with pytest.raises(ValueError, match=r"used only by PDAE\(estimator=.all_pairs.\)"):
        PDAE(small_adata, n_latent=4).train(max_epochs=1, batch_size=16)
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()


def test_early_stopping_and_validation(small_adata):
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = PDAE(small_adata, n_latent=4, n_hidden=(16,))
    model.train(max_epochs=3, early_stopping=True, enable_progress_bar=False, n_sources=16)
    assert "validation_loss" in model.history
    assert len(model.validation_indices) > 0
    assert not set(model.validation_indices) & set(model.train_indices)


def test_max_epochs_zero(small_adata):
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = PDAE(small_adata)
    with pytest.raises(ValueError, match="max_epochs"):
        model.train(max_epochs=0)


def test_history_logs_each_loss_term_and_their_weighted_sum(trained):
    """train_loss of every epoch is the module's weighted sum of the logged terms."""
    model, _ = trained
    m = model.module
    weights = {
        "energy": m.energy_weight,
        "reconstruction": m.reconstruction_weight,
        "prior": m.prior_weight,
        "sparsity": m.sparsity_weight,
    }
    total = model.history["train_loss"].iloc[:, 0].to_numpy(dtype=float)
    assert len(total) == 2  # one row per epoch
    parts = sum(
        w * model.history[f"{k}_train"].iloc[:, 0].to_numpy(dtype=float)
        for k, w in weights.items()
    )
    np.testing.assert_allclose(total, parts, rtol=1e-5)
    assert (model.history["energy_train"].iloc[:, 0] != 0).all()
