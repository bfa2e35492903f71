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
import torch

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
    assert pred.shape == (5, 10)
    assert np.isfinite(pred.X).all()


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
    assert sp.issparse(enc.label_rows)
    assert enc.label_rows.nnz == 4
    np.testing.assert_array_equal(enc.labels, enc.label_rows.toarray())
    with pytest.raises(KeyError, match="Unknown perturbation 'C'"):
        pdae.data.encode_conditions(["ctrl", "C"], control_group="ctrl", vocabulary=["A", "B"])


@pytest.mark.parametrize("log_fold", [False, True])
def test_sparse_least_squares_start_agrees_with_the_dense_fit(log_fold):
    """The genome-wide path of ``linear_effects`` (sparse normal equations) and lstsq agree."""
    from pdae_sc.data._labels import encode_conditions
    from pdae_sc.data._least_squares import linear_effects

    adata = singles_adata(30, doubles=6, cells=4, contexts=2)
    adata.X = np.abs(adata.X)  # counts-like for the log-fold fit
    enc = encode_conditions(adata.obs["perturbation"], control_group="ctrl", name="perturbation")
    ctx = adata.obs["line"].cat.codes.to_numpy()
    kw = {"log_fold": log_fold}
    dense = linear_effects(adata.X, enc.codes, ctx, enc.labels, dense_limit=10_000, **kw)
    sparse_ = linear_effects(adata.X, enc.codes, ctx, enc.label_rows, dense_limit=0, **kw)
    assert dense.shape == sparse_.shape == (30, 10)
    np.testing.assert_allclose(sparse_, dense, rtol=1e-6, atol=1e-8)


def test_sparse_least_squares_tends_to_the_minimum_norm_fit():
    """A perturbation only ever measured with another: its split is not identified."""
    from pdae_sc.data._least_squares import linear_effects

    labels = sp.csr_matrix(np.array([[0, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=float))
    codes = np.repeat([0, 1, 2], 5)
    x = np.random.default_rng(0).normal(size=(15, 4))
    ctx = np.zeros(15, dtype=int)
    dense = linear_effects(x, codes, ctx, labels.toarray(), dense_limit=100)
    sparse_ = linear_effects(x, codes, ctx, labels, dense_limit=0)
    np.testing.assert_allclose(sparse_, dense, atol=1e-6)
    np.testing.assert_allclose(dense[0], dense[1])  # minimum norm: the pair's effect split


def test_a_large_label_table_stays_sparse_and_gives_the_same_batches(monkeypatch):
    from pdae_sc.data import _sampler
    from pdae_sc.data._labels import encode_conditions

    adata = singles_adata(40, doubles=4, cells=4)
    enc = encode_conditions(adata.obs["perturbation"], control_group="ctrl", name="perturbation")
    ctx = np.zeros(adata.n_obs, dtype=int)

    def batch(limit):
        monkeypatch.setattr(_sampler, "_DENSE_LABELS", limit)
        splitter = _sampler.PerturbationDataSplitter(
            adata.X, enc.codes, ctx, enc.label_rows, n_sources=16, seed=0
        )
        splitter.place("cpu")
        loader = splitter.train_dataloader()
        return splitter, next(iter(loader))

    dense_splitter, dense = batch(1 << 22)
    sparse_splitter, sparse_ = batch(10)
    assert dense_splitter.label_table is not None
    assert sparse_splitter.label_table is None
    assert set(dense) == set(sparse_)
    for key in dense:
        assert torch.equal(dense[key], sparse_[key]), key
    assert sparse_["label_source"].shape == (16, 40)


@pytest.mark.parametrize("decoder", ["generative", "residual"])
def test_sparse_label_batches_predict_the_same_cells(monkeypatch, decoder):
    """Above ``_SPARSE_LABELS`` perturbations prediction batches carry sparse label rows."""
    from pdae_sc.model import _predict

    adata = singles_adata(12, doubles=3, cells=6)
    adata.X = np.abs(adata.X)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, decoder=decoder, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(**TRAIN, check_fit=False)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = model.predict(["G1+G2"], n_cells=50, source="all", seed=3)
            latent = model.get_latent_representation(basal=True)
        return pred.X, latent

    dense = run()
    monkeypatch.setattr(_predict, "_SPARSE_LABELS", 0)
    assert _predict.label_batch(sp.csr_matrix(np.eye(3)), np.array([0, 2]), "cpu").is_sparse
    sparse_ = run()
    np.testing.assert_allclose(sparse_[0], dense[0], atol=1e-5)
    np.testing.assert_allclose(sparse_[1], dense[1], atol=1e-5)


def test_grouped_loss_gene_steps_equal_the_shift_of_the_label_change():
    from pdae_sc.module import PDAEModule

    module = PDAEModule(6, 5, n_latent=3, n_hidden=(8,), n_noise=2, residual=True, gene_shift=True)
    torch.nn.init.normal_(module.gene_shift.weight)
    targets, sources = torch.rand(4, 5), torch.rand(7, 5)
    steps = module._gene_steps(targets, sources)
    direct = module.gene_shift(targets.unsqueeze(1) - sources.unsqueeze(0))
    torch.testing.assert_close(steps, direct, atol=1e-6, rtol=1e-5)
