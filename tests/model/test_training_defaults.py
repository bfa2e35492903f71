"""The default training: 64 source cells a grouped step (4 one-condition blocks), ~3,000 steps."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
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
    # max_steps ends the run early; max_epochs is still set by the default length rule
    counter = _count_sources(model, max_steps=3)
    assert counter.sources == [64, 64, 64]
    assert counter.blocks == [(4, 16)] * 3  # the generative decoder: one-condition blocks
    assert all(counter.one_label_per_block)
    steps_per_epoch = math.ceil(adata.n_obs / (16 * 16))
    assert steps_per_epoch == 9
    assert model.trainer.max_epochs == math.ceil(3000 / steps_per_epoch)


def _count_sources(model, max_steps: int = 2, **train_kwargs) -> _SourceCount:
    """Train ``max_steps`` steps on the CPU, without checks; what each step's sources were."""
    counter = _SourceCount()
    model.train(
        enable_progress_bar=False,
        accelerator="cpu",
        check_fit=False,
        held_out_conditions=0,
        callbacks=[counter],
        max_steps=max_steps,
        **train_kwargs,
    )
    return counter


def _source_shapes(model, **train_kwargs) -> list[tuple[int, ...]]:
    return _count_sources(model, **train_kwargs).blocks


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


def test_loss_defaults_depend_on_the_decoder(adata):
    """Generative: reconstruction weight 1 reaching the encoder; residual: 0.1, detached."""
    generative = PDAE(adata, **TINY)
    assert generative.module.residual is False
    assert generative.module.reconstruction_weight == 1.0
    assert generative.module.detach_encoder is False
    residual = PDAE(adata, decoder="residual", **TINY)
    assert residual.module.reconstruction_weight == 0.1
    assert residual.module.detach_encoder is True
    given = PDAE(adata, reconstruction_weight=0.3, detach_encoder=True, **TINY)
    assert given.module.reconstruction_weight == 0.3
    assert given.module.detach_encoder is True


def test_loss_defaults_are_saved_with_the_model(adata, tmp_path):
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, enable_progress_bar=False, check_fit=False, held_out_conditions=0)
    model.save(tmp_path / "m")
    loaded = PDAE.load(tmp_path / "m", adata=adata, accelerator="cpu")
    assert loaded.module.reconstruction_weight == 1.0
    assert loaded.module.detach_encoder is False
    assert loaded.init_params_["kwargs"]["module_kwargs"] == {
        "reconstruction_weight": 1.0,
        "detach_encoder": False,
    }


def test_the_encoder_learns_from_the_reconstruction_only_where_asked(adata):
    """One step of the reconstruction term alone moves the encoder only when not detached."""
    import torch

    for detach, moves in ((False, True), (True, False)):
        model = PDAE(adata, detach_encoder=detach, **TINY)
        module = model.module
        x = torch.as_tensor(np.asarray(adata.X[:32]), dtype=torch.float32)
        z = module.encoder(x)
        rec, _, _ = module._auxiliary(x, z, z)
        rec.backward()
        grads = [p.grad for p in module.encoder.parameters()]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads) is moves
