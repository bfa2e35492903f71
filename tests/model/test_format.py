"""The saved registry format: a version number, format-1 models (pdae-sc 0.1.0) brought up to
date at load, newer formats refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import pdae_sc as pdae
from pdae_sc.data._fields import FORMAT_VERSION, PERTURBATION_REGISTRY_KEY
from pdae_sc.model import PDAE

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pdae_v0_1"
TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}


def _state(path: Path) -> dict:
    saved = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
    return saved["attr_dict"]["registry_"]["field_registries"][PERTURBATION_REGISTRY_KEY][
        "state_registry"
    ]


def test_saved_models_record_the_format_version(tmp_path):
    adata = pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=5, seed=0)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    PDAE(adata, **TINY).save(tmp_path / "m")
    assert _state(tmp_path / "m")["format_version"] == FORMAT_VERSION == 2


def test_format_1_fixture_is_brought_up_to_date():
    assert "format_version" not in _state(FIXTURE)  # written by pdae-sc 0.1.0
    model = PDAE.load(FIXTURE, accelerator="cpu")
    state = model.adata_manager.get_state_registry(PERTURBATION_REGISTRY_KEY)
    assert state["format_version"] == FORMAT_VERSION
    assert state["counts_layer"] is None
    assert state["labels_fingerprint"]
    # the per-context counts are those of the data the model was loaded with
    np.testing.assert_array_equal(
        state["context_condition_counts"], np.asarray(state["condition_counts"])[None, :]
    )
    table = model.check_extrapolation(["P0+P2"], context="all")
    assert table["n_source_cells"].item() == model.adata.n_obs


def test_a_newer_format_is_refused(tmp_path):
    adata = pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=5, seed=0)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    PDAE(adata, **TINY).save(tmp_path / "m")
    path = tmp_path / "m" / "model.pt"
    saved = torch.load(path, map_location="cpu", weights_only=False)
    fields = saved["attr_dict"]["registry_"]["field_registries"]
    fields[PERTURBATION_REGISTRY_KEY]["state_registry"]["format_version"] = FORMAT_VERSION + 1
    torch.save(saved, path)
    with pytest.raises(ValueError, match=r"saved by a newer pdae-sc .*upgrade pdae-sc"):
        PDAE.load(tmp_path / "m", adata)
