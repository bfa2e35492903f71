"""Genome-wide numbers of perturbations: sparse stored labels, the factorised span check.

Time is measured by ``benchmarks/speed.py`` (section "Scale in the number of perturbations");
these tests check what makes it scale: the registry stores the label matrix sparse (so a
saved model grows linearly in K), models saved with the dense matrix of earlier versions
still load and answer the same, and the model's checks agree with the dense definitions.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import pdae_sc as pdae
from pdae_sc.data._fields import PERTURBATION_REGISTRY_KEY
from pdae_sc.model import PDAE

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pdae_v0_1"
TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}
TRAIN = {"enable_progress_bar": False, "n_sources": 16, "accelerator": "cpu", "max_epochs": 1}


def singles_adata(k: int, *, doubles: int = 0, cells: int = 3, genes: int = 10, contexts=1):
    """``k`` singles (and ``doubles`` measured doubles) of ``cells`` cells each, controls."""
    labels = ["ctrl"] * 20 + [f"G{i}" for i in range(k) for _ in range(cells)]
    labels += [f"G{2 * i}+G{2 * i + 1}" for i in range(doubles) for _ in range(cells)]
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels),
            "line": pd.Categorical([f"L{i % contexts}" for i in range(len(labels))]),
        },
        index=[f"c{i}" for i in range(len(labels))],
    )
    return ad.AnnData(rng.normal(size=(len(labels), genes)).astype(np.float32), obs=obs)


def _state(model: PDAE) -> dict:
    registry = model.adata_manager.registry["field_registries"]
    return registry[PERTURBATION_REGISTRY_KEY]["state_registry"]


def test_registry_stores_the_label_matrix_sparse():
    adata = singles_adata(50, doubles=5)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    labels = _state(PDAE(adata, **TINY))["label_matrix"]
    assert sp.issparse(labels)
    assert labels.shape == (1 + 50 + 5, 50)
    assert labels.nnz == 50 + 2 * 5  # one entry per token, nothing stored for the zeros


def test_saved_model_grows_linearly_in_the_perturbations(tmp_path):
    sizes = {}
    for k in (200, 400):
        adata = singles_adata(k, cells=2)
        PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        model = PDAE(adata, **TINY)
        model.save(tmp_path / str(k))
        sizes[k] = os.path.getsize(tmp_path / str(k) / "model.pt")
    # twice the perturbations: twice the weights and labels (a dense matrix: four times)
    assert sizes[400] / sizes[200] < 2.5, sizes


def test_check_extrapolation_matches_the_dense_definition():
    from tests.data.test_label_span import dense_match, dense_reference

    adata = singles_adata(30, doubles=4, contexts=2)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", context_keys=["line"])
    model = PDAE(adata, **TINY)
    targets = ["G0+G1", "G2+G5", "G7", "ctrl", "G0+G1+G2"]
    dosages = [None, "1+2", 3.0, None, "1+1+0.5"]
    vectors = model.target_labels(targets, dosages)
    train = _state(model)["label_matrix"].toarray()
    span, distance, in_range, rank = dense_reference(train, vectors)
    table = model.check_extrapolation(targets, dosages=dosages, context="L0")
    assert table["in_span"].tolist() == span.tolist()
    np.testing.assert_allclose(table["span_distance"], distance, atol=1e-9)
    assert table["in_range"].tolist() == (in_range & span).tolist()
    assert (table["rank_train"] == rank).all()
    assert table["seen"].tolist() == dense_match(vectors, train).any(axis=1).tolist()
    counts = _state(model)["context_condition_counts"][0]
    expected = (dense_match(vectors, train) * counts[None, :]).sum(axis=1)
    assert table["n_cells_in_context"].tolist() == expected.tolist()


def test_seen_uses_one_relative_label_tolerance():
    # a dose of 1000 and one of 1000.0005 are the same label (relative tolerance 1e-6); the
    # check used to compare with an absolute 1e-6, unlike the source lookup (np.isclose)
    adata = singles_adata(3, cells=5)
    adata.obs["dose"] = np.where(adata.obs["perturbation"] == "ctrl", 0.0, 1000.0)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", dosage_key="dose")
    model = PDAE(adata, **TINY)
    table = model.check_extrapolation(["G0", "G0", "G0"], dosages=[1000.0005, 1000.01, 999.0])
    assert table["seen"].tolist() == [True, False, False]
    assert table["status"].tolist()[0] == "seen in training"


def _with_dense_registry(model: PDAE) -> None:
    """Store the label matrix as earlier versions did (dense)."""
    state = _state(model)
    state["label_matrix"] = np.asarray(state["label_matrix"].toarray())
    model.__dict__.pop("_state_cache", None)


def test_model_saved_with_dense_labels_loads_and_answers_the_same(tmp_path):
    adata = singles_adata(6, doubles=2, cells=8)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(**TRAIN)
    targets, dosages = ["G0+G2", "G1", "G4+G5", "G3"], [None, None, None, 2.0]
    expected = model.check_extrapolation(targets, dosages=dosages)
    _with_dense_registry(model)
    model.save(tmp_path / "dense", save_anndata=True)
    loaded = PDAE.load(tmp_path / "dense", accelerator="cpu")
    assert isinstance(_state(loaded)["label_matrix"], np.ndarray)  # the old format, kept
    pd.testing.assert_frame_equal(loaded.check_extrapolation(targets, dosages=dosages), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = loaded.predict(["G0+G2"], n_cells=5, seed=0, source="G1")
    assert pred.shape == (5, 10) and np.isfinite(pred.X).all()


def test_v0_1_fixture_checks_as_the_dense_definition():
    from tests.data.test_label_span import dense_reference

    model = PDAE.load(FIXTURE, accelerator="cpu")
    train = np.asarray(_state(model)["label_matrix"])
    targets = ["P0+P2", "P1+P2", "P2", "P0+P1+P2"]
    span, distance, _, rank = dense_reference(train, model.target_labels(targets))
    table = model.check_extrapolation(targets)
    assert table["in_span"].tolist() == span.tolist()
    np.testing.assert_allclose(table["span_distance"], distance, atol=1e-9)
    assert (table["rank_train"] == rank).all()
    pred = model.predict(["P0+P2"], n_cells=4, seed=0, source="P1")
    assert pred.obs["pdae_source"].astype(str).unique().tolist() == ["P1"]


def test_encoded_conditions_keep_labels_sparse_and_dense_on_demand():
    enc = pdae.data.encode_conditions(["ctrl", "A", "A+B", "B"], control_group="ctrl")
    assert sp.issparse(enc.label_rows) and enc.label_rows.nnz == 4
    np.testing.assert_array_equal(enc.labels, enc.label_rows.toarray())
    with pytest.raises(KeyError, match="Unknown perturbation 'C'"):
        pdae.data.encode_conditions(["ctrl", "C"], control_group="ctrl", vocabulary=["A", "B"])
