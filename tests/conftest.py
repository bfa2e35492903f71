"""Shared fixtures: tiny simulated data sets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pdae_sc as pdae

warnings.filterwarnings("ignore", message=".*IterableDataset.*has `__len__` defined.*")
warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


@pytest.fixture
def small_adata():
    """ctrl, 4 singles and 6 doubles, 30 cells each, 20 genes."""
    return pdae.data.simulate(
        n_perturbations=4, n_latent=4, n_genes=20, n_cells_per_condition=30, seed=1
    )


@pytest.fixture
def trained(small_adata):
    """A PDAE trained for 2 epochs on the small data minus the double P0+P1."""
    adata = small_adata[small_adata.obs["perturbation"] != "P0+P1"].copy()
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(32,), n_noise=4)
    model.train(max_epochs=2, enable_progress_bar=False, n_sources=32)
    return model, adata


def assert_adata_equal(a, b):
    """Same X, obs, var and layers (the user's data were not modified)."""
    xa = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    xb = b.X.toarray() if hasattr(b.X, "toarray") else np.asarray(b.X)
    np.testing.assert_array_equal(xa, xb)
    assert a.obs.equals(b.obs)
    assert a.var.equals(b.var)
    assert set(a.layers) == set(b.layers)
