"""Numbers and labels a hostile tester tries: tiny doses, NaN thresholds, hidden characters,
and a query that must not write into the user's AnnData (issue 23, items 7, 10, 11, 12)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pdae_sc as pdae
from pdae_sc.data._labels import match_labels
from pdae_sc.model import PDAE

TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 2}


@pytest.mark.parametrize("dose", [1e-6, 5e-7, 1e-9, 1e-12])
def test_a_tiny_dose_is_not_the_control_nor_a_dose_200x_larger(dose):
    control, trained = np.zeros(2), np.array([200 * dose, 0.0])
    target = np.array([dose, 0.0])
    assert match_labels(target, np.vstack([control, trained])).nnz == 0
    assert match_labels(target, target).nnz == 1  # a dose still equals itself
    # round-off of doses computed in floating point is still absorbed
    assert match_labels(np.array([(0.1 + 0.2) * dose, 0]), np.array([0.3 * dose, 0])).nnz == 1


@pytest.fixture(scope="module")
def molar():
    """Doses in molar units (1e-6 M and 2e-6 M)."""
    adata = pdae.data.simulate(n_perturbations=2, n_genes=6, n_cells_per_condition=8, seed=0)
    adata.obs["dose"] = np.where(adata.obs["perturbation"] == "P0", 2e-6, 1e-6)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", dosage_key="dose")
    model = PDAE(adata, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=1, enable_progress_bar=False, n_sources=8, check_fit=False)
    return model


def test_molar_doses_far_below_training_are_not_seen(molar):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = molar.check_extrapolation(["P0"], dosages=[1e-8])
        pred = molar.predict(["P0"], dosages=[1e-8], n_cells=4, seed=0)
    assert not table["seen"].item()
    labels = set(pred.obs["perturbation"].astype(str))
    assert "ctrl" not in labels
    assert labels == {"P0"}
    assert molar.check_extrapolation(["P0"], dosages=[2e-6])["seen"].item()


@pytest.mark.parametrize("value", [np.nan, float("inf"), -np.inf])
def test_assign_guides_refuses_a_non_finite_min_counts(value):
    import anndata as ad

    gdo = ad.AnnData(np.array([[9.0, 0.0], [0.0, 9.0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"min_counts=.* must be a positive, finite number"):
        pdae.pp.assign_guides(gdo, min_counts=value)


def test_counterfactual_without_layer_added_writes_nothing(molar):
    adata = molar.adata
    layers = set(adata.layers)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        x = molar.get_counterfactual(perturbation="ctrl", seed=0)
    assert x.shape == adata.shape
    assert set(adata.layers) == layers


@pytest.mark.parametrize("char", ["\u200b", "\u200d", "\ufeff", "\u00a0", "\x07"])
def test_a_label_with_an_invisible_character_is_refused(char):
    adata = pdae.data.simulate(n_perturbations=2, n_genes=6, n_cells_per_condition=8, seed=0)
    labels = adata.obs["perturbation"].astype(str).to_numpy().astype(object)
    labels[labels == "P1"] = "P0" + char
    adata.obs["perturbation"] = labels
    with pytest.raises(ValueError, match=r"contains the invisible character U\+"):
        PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    assert "_scvi_uuid" not in adata.uns


def test_standardize_refuses_an_annotation_shared_by_every_label():
    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame({"perturbation": ["KLF1_KO", "GATA1_KO", "control", "KLF1_KO"]})
    adata = ad.AnnData(np.zeros((4, 2), dtype=np.float32), obs=obs)
    with pytest.raises(ValueError, match=r"contains \['KO'\].*looks like an annotation"):
        pdae.pp.standardize_perturbations(adata, "perturbation", key_added="std")
    assert list(adata.obs.columns) == ["perturbation"]
    # real combinations are kept: no token shared by every label
    obs = pd.DataFrame({"perturbation": ["KLF1_GATA1", "KLF1", "GATA1", "control"]})
    adata = ad.AnnData(np.zeros((4, 2), dtype=np.float32), obs=obs)
    pdae.pp.standardize_perturbations(adata, "perturbation", key_added="std")
    assert set(adata.obs["std"]) == {"KLF1+GATA1", "KLF1", "GATA1", "ctrl"}


def test_predict_with_doses_parses_each_target_once(molar, monkeypatch):
    """One parse per target gives its label vector, its name and its extrapolation row."""
    from pdae_sc.model import _registration

    calls = []
    original = _registration.parse_condition

    def counting(condition, **kwargs):
        calls.append(condition)
        return original(condition, **kwargs)

    monkeypatch.setattr(_registration, "parse_condition", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = molar.predict(["P0", "P1+P0"], dosages=[1e-6, "1e-6+2e-6"], n_cells=4, seed=0)
    assert calls == ["P0", "P1+P0"]
    assert pred.obs["perturbation"].astype(str).unique().tolist() == ["P0", "P0+P1"]
