"""Perturbations never measured, predicted through a perturbation embedding."""

import warnings

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import pdae_sc as pdae
from pdae_sc.data._span import STATUS_EMBEDDING

N_PERT = 12
HELD = ["P10", "P11"]


@pytest.fixture(scope="module")
def screen():
    """Singles of 12 perturbations; the simulator's latent shifts are a faithful embedding."""
    conditions = ["ctrl", *[f"P{i}" for i in range(N_PERT)]]
    adata = pdae.data.simulate(
        n_perturbations=N_PERT, n_cells_per_condition=60, conditions=conditions, seed=0
    )
    shifts = pd.DataFrame(
        adata.uns["simulation"]["W"].T, index=adata.uns["simulation"]["perturbations"]
    )
    held = adata.obs["perturbation"].isin(HELD).to_numpy()
    return adata[~held].copy(), adata[held].copy(), shifts


@pytest.fixture(scope="module")
def model(screen):
    train, _, shifts = screen
    train = train.copy()
    pdae.model.PDAE.setup_anndata(
        train, "perturbation", control_group="ctrl", perturbation_embedding=shifts
    )
    model = pdae.model.PDAE(train, n_latent=8, n_hidden=(64,), n_noise=4)
    model.train(max_epochs=60, enable_progress_bar=False, held_out_conditions=0)
    return model


def test_new_perturbations_are_flagged_outside_the_guarantee(model):
    table = model.check_extrapolation(["P10", "P0+P11", "P0"])
    assert table["status"].tolist()[:2] == [STATUS_EMBEDDING] * 2
    assert table["in_span"].tolist() == [False, False, True]
    assert table["from_embedding"].tolist() == ["P10", "P11", ""]
    with pytest.warns(pdae.model.ExtrapolationWarning, match="never measured"):
        pred = model.predict(["P11+P0", "P10"], n_cells=30, seed=0, method="pdae")
    assert pred.obs["perturbation"].cat.categories.tolist() == ["P0+P11", "P10"]
    status = pred.uns["pdae"]["extrapolation"]["status"].tolist()
    assert status == [STATUS_EMBEDDING] * 2


def test_an_unknown_name_without_an_embedding_row_still_raises(model):
    with pytest.raises(KeyError, match="no row in the perturbation embedding"):
        model.check_extrapolation(["NOPE"])


def test_model_places_new_perturbations_closer_than_the_mean_response(model, screen):
    train, test, _ = screen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = model.predict(HELD, n_cells=60, seed=0, method="pdae")
        mean = pdae.tl.predict_baseline(train, HELD, method="mean_response", n_cells=60)
    ours = pdae.tl.evaluate(pred, test, adata_control=train)["energy_distance"]
    reference = pdae.tl.evaluate(mean, test, adata_control=train)["energy_distance"]
    assert ours.mean() < 0.7 * reference.mean()


def test_linear_baseline_with_embedding_beats_the_mean_response(screen):
    train, test, shifts = screen
    with pytest.warns(UserWarning, match="never measured"):
        linear = pdae.tl.predict_baseline(
            train, HELD, method="linear", n_cells=60, perturbation_embedding=shifts
        )
    mean = pdae.tl.predict_baseline(train, HELD, method="mean_response", n_cells=60)
    ours = pdae.tl.evaluate(linear, test, adata_control=train)["energy_distance"]
    reference = pdae.tl.evaluate(mean, test, adata_control=train)["energy_distance"]
    assert ours.mean() < 0.7 * reference.mean()
    with pytest.raises(KeyError):  # without the embedding the new gene is unknown
        pdae.tl.predict_baseline(train, HELD, method="linear", n_cells=60)


def test_default_prediction_uses_the_linear_model_with_embeddings_when_chosen(model):
    model.prediction_method_, before = "linear", model.prediction_method_
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = model.predict(["P10"], n_cells=20, seed=0)
    finally:
        model.prediction_method_ = before
    assert pred.uns["pdae"]["method"] == "linear"
    assert pred.uns["pdae"]["extrapolation"]["status"].tolist() == [STATUS_EMBEDDING]


def test_expression_embedding_places_a_knockout_named_like_a_gene(tmp_path):
    adata = pdae.data.simulate(
        n_perturbations=5,
        n_cells_per_condition=20,
        conditions=["ctrl", "P0", "P1", "P2", "P3", "P4"],
        seed=1,
    )
    names = {f"P{i}": f"gene_{i}" for i in range(5)}
    adata.obs["perturbation"] = adata.obs["perturbation"].astype(str).replace(names)
    train = adata[adata.obs["perturbation"] != "gene_4"].copy()
    pdae.model.PDAE.setup_anndata(
        train, "perturbation", control_group="ctrl", perturbation_embedding="expression"
    )
    model = pdae.model.PDAE(train, n_latent=4, n_hidden=(16,), n_noise=2)
    model.train(max_epochs=2, enable_progress_bar=False, held_out_conditions=0)
    embedding = model.registration.perturbation_embedding
    assert embedding.source == "expression"
    assert len(embedding.names) == train.n_vars
    assert model.check_extrapolation(["gene_4"])["status"].tolist() == [STATUS_EMBEDDING]
    with pytest.raises(KeyError, match="no row"):
        model.check_extrapolation(["not_a_gene"])
    model.save(tmp_path / "m", save_anndata=True)
    loaded = pdae.model.PDAE.load(tmp_path / "m")
    np.testing.assert_array_equal(
        loaded.registration.perturbation_embedding.vectors, embedding.vectors
    )
    assert loaded.check_extrapolation(["gene_4"])["status"].tolist() == [STATUS_EMBEDDING]


def test_without_an_embedding_nothing_changes():
    adata = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=10, seed=0)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=2)
    assert model.registration.perturbation_embedding is None
    assert "from_embedding" not in model.check_extrapolation(["P0+P1"]).columns
    with pytest.raises(KeyError):
        model.check_extrapolation(["P7"])


def test_bad_embedding_arguments_are_refused_before_registration():
    adata = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=10, seed=0)
    with pytest.raises(ValueError, match="'expression'"):
        pdae.model.PDAE.setup_anndata(
            adata, "perturbation", control_group="ctrl", perturbation_embedding="pca"
        )
    with pytest.raises(ValueError, match="NaN"):
        pdae.model.PDAE.setup_anndata(
            adata,
            "perturbation",
            control_group="ctrl",
            perturbation_embedding=pd.DataFrame({"d": [np.nan]}, index=["P9"]),
        )
    assert "_scvi_uuid" not in adata.uns


def test_default_predicts_never_measured_targets_with_the_linear_model_with_embeddings(model):
    assert model.prediction_method_ == "pdae"
    targets = ["P0", "P10", "P0+P11"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = model.predict(targets, n_cells=20, seed=0)
        network = model.predict(["P0"], n_cells=20, seed=0, method="pdae")
        linear = model.predict(["P10", "P0+P11"], n_cells=20, seed=0, method="linear")
    table = pred.uns["pdae"]["extrapolation"]
    assert table["predicted_by"].tolist() == ["pdae", "linear", "linear"]
    assert table["status"].tolist()[1:] == [STATUS_EMBEDDING] * 2
    assert pred.uns["pdae"]["method"] == "pdae"
    assert (
        pred.obs["perturbation"].astype(str).tolist()
        == ["P0"] * 20 + ["P10"] * 20 + ["P0+P11"] * 20
    )
    np.testing.assert_array_equal(pred.X[:20], network.X)
    np.testing.assert_array_equal(pred.X[20:], linear.X)
    assert pred.obs_names.is_unique
    # every target measured: the network alone, and no column
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        measured = model.predict(["P0", "P1"], n_cells=20, seed=0)
    assert "predicted_by" not in measured.uns["pdae"]["extrapolation"].columns
    np.testing.assert_array_equal(measured.X[:20], network.X)


def test_new_cells_get_the_linear_model_with_embeddings_for_never_measured_targets(model, screen):
    train, _, shifts = screen
    new = train[train.obs["perturbation"] == "ctrl"].copy()
    del new.obs["perturbation"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = model.predict(["P10", "P0"], adata=new, seed=0)
        explicit = model.predict(["P10"], adata=new, seed=0, method="linear")
        reference = pdae.tl.predict_baseline(
            train, ["P10"], method="linear", perturbation_embedding=shifts, seed=0
        )
    column = pred.uns["pdae"]["extrapolation"]["new_cells_shift"].tolist()
    assert column == ["linear", "measured in training"]
    source = new[pred.obs["pdae_source_cell"]].X
    shift = pred.X[: new.n_obs] - source[: new.n_obs]
    # the same shift for every cell: the linear model with embeddings' mean shift
    ref_source = train[reference.obs["pdae_source_cell"]].X
    expected = np.asarray(reference.X - ref_source).mean(axis=0)
    np.testing.assert_allclose(shift, np.broadcast_to(expected, shift.shape), atol=1e-4)
    np.testing.assert_allclose(explicit.X, pred.X[: new.n_obs], atol=1e-6)


@pytest.fixture(scope="module")
def two_contexts():
    """Six measured singles in contexts A and B, every response twice as strong in B."""
    rng = np.random.default_rng(0)
    effects = rng.normal(0.0, 1.0, size=(6, 5))
    blocks, labels, contexts = [], [], []
    for context, strength in (("A", 1.0), ("B", 2.0)):
        for name, effect in [
            ("ctrl", np.zeros(5)),
            *[(f"P{k}", e) for k, e in enumerate(effects)],
        ]:
            blocks.append(rng.normal(0.0, 0.1, size=(40, 5)) + strength * effect)
            labels += [name] * 40
            contexts += [context] * 40
    obs = pd.DataFrame({"perturbation": labels, "line": contexts})
    obs.index = [f"c{i}" for i in range(len(obs))]
    adata = AnnData(np.vstack(blocks).astype(np.float32), obs=obs)
    # one vector for every perturbation: the embedding says nothing, the map takes the mean
    table = pd.DataFrame(np.ones((7, 2)), index=[f"P{k}" for k in range(7)])
    return adata, table, 2.0 * effects.mean(axis=0)


@pytest.mark.parametrize("placed_effects", ["linear", "context"])
def test_placed_effects_in_a_context(two_contexts, placed_effects):
    adata, table, truth = two_contexts
    ctx = {"context_key": "line", "context": "B", "n_cells": 40}
    with pytest.warns(UserWarning, match="never measured"):
        pred = pdae.tl.predict_baseline(
            adata,
            ["P6", "P0"],
            method="linear",
            perturbation_embedding=table,
            placed_effects=placed_effects,
            **ctx,
        )
    mean_response = pdae.tl.predict_baseline(adata, ["P6"], method="mean_response", **ctx)
    linear = pdae.tl.predict_baseline(adata, ["P0"], method="linear", **ctx)

    def shifts(pred):
        return pred.X - adata[pred.obs["pdae_source_cell"]].X

    shift = shifts(pred)[::40]
    # a measured perturbation keeps its linear effect either way
    np.testing.assert_allclose(shift[1], shifts(linear)[0], atol=1e-5)
    expected_shift = shifts(mean_response)[0]
    if placed_effects == "context":  # the responses measured in B, so their mean there
        np.testing.assert_allclose(shift[0], expected_shift, atol=1e-5)
        assert np.abs(shift[0] - truth).max() < 0.1
    else:  # the linear effects, fitted over A and B: 1.5x, not 2x
        assert np.abs(shift[0] - 0.75 * truth).max() < 0.1


def test_placed_effects_without_a_context_or_misspelt(two_contexts):
    adata, table, _ = two_contexts
    runs = []
    for placed_effects in ("linear", "context"):
        with pytest.warns(UserWarning, match="never measured"):
            runs.append(
                pdae.tl.predict_baseline(
                    adata,
                    ["P6"],
                    method="linear",
                    perturbation_embedding=table,
                    placed_effects=placed_effects,
                )
            )
    np.testing.assert_array_equal(runs[0].X, runs[1].X)
    with pytest.raises(ValueError, match="placed_effects='contexts'"):
        pdae.tl.predict_baseline(adata, ["P0"], method="linear", placed_effects="contexts")


def test_model_places_new_perturbations_with_the_effects_measured_in_the_context(two_contexts):
    adata, table, _ = two_contexts
    adata = adata.copy()
    pdae.model.PDAE.setup_anndata(
        adata,
        "perturbation",
        control_group="ctrl",
        context_keys=["line"],
        perturbation_embedding=table,
    )
    model = pdae.model.PDAE(adata, n_latent=2, n_hidden=(8,), n_noise=2)
    model.train(max_epochs=1, enable_progress_bar=False, held_out_conditions=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = model.predict(["P6"], context="B", method="linear", n_cells=40, seed=0)
        reference = pdae.tl.predict_baseline(
            adata,
            ["P6"],
            method="linear",
            perturbation_embedding=table,
            placed_effects="context",
            context_key="line",
            context="B",
            n_cells=40,
            seed=0,
        )
    np.testing.assert_allclose(pred.X, reference.X, atol=1e-5)
