"""Prediction batches: the CPU default keeps a batch within 16 MB; encode-once moves."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import pdae_sc as pdae
from pdae_sc.model import PDAE
from pdae_sc.model._noise import noise_block_size

TINY = {"n_latent": 4, "n_hidden": (8,), "n_noise": 2}


@pytest.mark.parametrize(("n_genes", "expected"), [(10, 4096), (1000, 4096), (2000, 2048)])
def test_default_batch_on_the_cpu_stays_within_16_mb(n_genes, expected):
    adata = pdae.data.simulate(n_perturbations=2, n_genes=n_genes, n_cells_per_condition=5, seed=0)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    assert model._batch_size(None) == expected
    assert expected * n_genes <= 1 << 22 or expected == 256
    assert model._batch_size(100) == 100
    with pytest.raises(ValueError, match="batch_size"):
        model._batch_size(0)


def test_small_batches_move_the_same_sources_with_the_encodings_of_one_pass():
    """Sources are drawn and encoded once per call; batches only split the decoding."""
    adata = pdae.data.simulate(n_perturbations=3, n_genes=12, n_cells_per_condition=20, seed=0)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=1, n_sources=16, enable_progress_bar=False, check_fit=False)
        one = model.predict(["P0+P1"], n_cells=300, seed=1, batch_size=4096)
        many = model.predict(["P0+P1"], n_cells=300, seed=1, batch_size=7)
        again = model.predict(["P0+P1"], n_cells=300, seed=1, batch_size=7)
    src = "pdae_source_cell"
    assert (one.obs[src].to_numpy() == many.obs[src].to_numpy()).all()
    np.testing.assert_array_equal(many.X, again.X)  # same seed and batches: same cells
    # the noise is drawn batch by batch, so the cells differ, but not their distribution
    np.testing.assert_allclose(one.X.mean(0), many.X.mean(0), atol=0.08)


def test_decoder_leaves_its_input_alone_in_inference():
    decoder = pdae.module.StochasticDecoder(
        3, 5, (4,), n_noise=2, noise_scale=1.0, output_noise=True, output_activation="relu"
    )
    z = torch.randn(6, 3)
    before = z.clone()
    with torch.inference_mode():
        out = decoder(z)
    assert torch.equal(z, before)
    assert (out >= 0).all()
    x = torch.tensor([-1.0, 2.0])
    with torch.inference_mode():
        decoder.activate(x)
    assert x.tolist() == [-1.0, 2.0]  # the public activation is not in place


@pytest.mark.parametrize(
    ("decoder", "n_genes", "n_cells"),
    [("generative", 12, 5000), ("residual", 12, 5000), ("generative", 3000, 1500)],
)
def test_the_same_seed_gives_the_same_cells_whatever_the_batch_size(decoder, n_genes, n_cells):
    """Noise is drawn in fixed blocks of cells, not per batch (issue 23, item 9).

    Across a block boundary too (4,096 cells for 12 genes, 1,024 for 3,000), and for
    get_counterfactual; only the float rounding of the networks may differ between batch sizes.
    """
    assert noise_block_size(n_genes) < n_cells
    adata = pdae.data.simulate(
        n_perturbations=3, n_genes=n_genes, n_cells_per_condition=20, seed=0
    )
    adata.X = np.abs(adata.X)  # non-negative, so that the residual decoder is allowed
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, decoder=decoder, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=1, n_sources=16, enable_progress_bar=False, check_fit=False)
        ref = model.predict(["P0+P1", "P2"], n_cells=n_cells, seed=3).X
        for batch_size in (1000, 3000, 8192):
            x = model.predict(["P0+P1", "P2"], n_cells=n_cells, seed=3, batch_size=batch_size).X
            np.testing.assert_allclose(x, ref, atol=1e-5)
        cf = model.get_counterfactual(perturbation="P0", seed=1)
        np.testing.assert_allclose(
            model.get_counterfactual(perturbation="P0", seed=1, batch_size=7), cf, atol=1e-5
        )
