"""The default training: 64 source cells a grouped step (4 one-condition blocks), ~3,000 steps."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest

import pdae_sc as pdae
from pdae_sc.model import PDAE
from pdae_sc.module._batch_keys import BATCH_KEYS

TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}


class _SourceCount(pl.Callback):
    """Records how many source cells each training batch holds."""

    def __init__(self):
        self.sources: list[int] = []
        self.blocks: list[tuple[int, ...]] = []
        self.one_label_per_block: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        x, labels = batch[BATCH_KEYS.X_SOURCE], batch[BATCH_KEYS.LABEL_SOURCE]
        self.sources.append(int(x.shape[:-1].numel()))
        self.blocks.append(tuple(x.shape[:-1]))
        self.one_label_per_block.append(bool((labels == labels[:, :1]).all()))


@pytest.fixture
def adata():
    """ctrl, 3 singles, 3 doubles; 300 cells each: 9 steps per epoch, under 400 epochs."""
    adata = pdae.data.simulate(
        n_perturbations=3, n_latent=4, n_genes=10, n_cells_per_condition=300, seed=0
    )
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    return adata


def test_default_layout_draws_64_sources_and_runs_about_3000_steps(adata):
    model = PDAE(adata, **TINY)
    counter = _SourceCount()
    # max_steps ends the run early; max_epochs is still set by the default length rule
    model.train(
        enable_progress_bar=False,
        accelerator="cpu",
        check_fit=False,
        held_out_conditions=0,
        callbacks=[counter],
        max_steps=3,
    )
    assert counter.sources == [64, 64, 64]
    assert counter.blocks == [(4, 16)] * 3  # the generative decoder: one-condition blocks
    assert all(counter.one_label_per_block)
    steps_per_epoch = math.ceil(adata.n_obs / (16 * 16))
    assert steps_per_epoch == 9
    assert model.trainer.max_epochs == math.ceil(3000 / steps_per_epoch)


def _source_shapes(model, **train_kwargs) -> list[tuple[int, ...]]:
    counter = _SourceCount()
    model.train(
        enable_progress_bar=False,
        accelerator="cpu",
        check_fit=False,
        held_out_conditions=0,
        callbacks=[counter],
        max_steps=2,
        **train_kwargs,
    )
    return counter.blocks


def test_the_residual_decoders_draw_one_mixed_source_set_unless_asked(adata):
    adata.X = abs(adata.X)
    model = PDAE(adata, decoder="residual", **TINY)
    assert _source_shapes(model) == [(64,)] * 2
    model = PDAE(adata, decoder="residual", **TINY)
    assert _source_shapes(model, n_source_conditions=8) == [(8, 8)] * 2
    model = PDAE(adata, **TINY)  # generative, asked for the mixed draw
    assert _source_shapes(model, n_source_conditions=None) == [(64,)] * 2


@pytest.mark.parametrize("blocks", [40, 0, "blocks"])
def test_source_blocks_of_fewer_than_two_cells_are_refused(adata, blocks):
    with pytest.raises(ValueError, match="n_source_conditions"):
        PDAE(adata, **TINY).train(n_source_conditions=blocks, enable_progress_bar=False)
