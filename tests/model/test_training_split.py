"""Training again keeps the train/validation split; the splitter options reach train()."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

import pdae_sc as pdae
from pdae_sc.model import PDAE

TRAIN = {"enable_progress_bar": False, "n_sources": 16, "accelerator": "cpu", "check_fit": False}
TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}


@pytest.fixture
def adata():
    """ctrl, 3 singles, 3 doubles; 20 cells each, 10 genes."""
    adata = pdae.data.simulate(
        n_perturbations=3, n_latent=4, n_genes=10, n_cells_per_condition=20, seed=0
    )
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    return adata


def test_training_again_keeps_the_validation_cells(adata):
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, validation_size=0.2, **TRAIN)
    val = model.validation_indices.copy()
    assert len(val) > 0
    model.train(max_epochs=1, **TRAIN)  # default validation_size: keep the split
    np.testing.assert_array_equal(model.validation_indices, val)
    model.train(max_epochs=1, early_stopping=True, **TRAIN)  # default 0.1, but the split stays
    np.testing.assert_array_equal(model.validation_indices, val)
    model.train(max_epochs=1, validation_size=0.2, **TRAIN)  # the same fraction
    np.testing.assert_array_equal(model.validation_indices, val)
    assert not set(model.train_indices) & set(val)


def test_training_again_refuses_a_new_validation_fraction(adata):
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, validation_size=0.2, held_out_conditions=0, **TRAIN)
    with pytest.raises(ValueError, match=r"already holds out 28 .*validation_size unset"):
        model.train(max_epochs=1, validation_size=0.4, **TRAIN)
    model.train(max_epochs=1, validation_size=0, **TRAIN)  # now every cell is trained on
    assert len(model.validation_indices) == 0
    assert len(model.train_indices) == adata.n_obs


def test_held_out_conditions_stay_out_when_training_again():
    """Their cells stay validation cells; validation_size counts the other cells only."""
    adata = pdae.data.simulate(  # 50 cells or more per condition: some can be held out
        n_perturbations=3, n_latent=4, n_genes=10, n_cells_per_condition=60, seed=0
    )
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, validation_size=0.2, **TRAIN)
    assert model.held_out_conditions_
    codes = adata.obs["perturbation"].astype(str).to_numpy()
    held = np.flatnonzero(np.isin(codes, [c for c, _ in model.held_out_conditions_]))
    assert set(held) <= set(model.validation_indices)
    with pytest.raises(ValueError, match=r"training conditions.*validation_size unset"):
        model.train(max_epochs=1, validation_size=0.4, **TRAIN)
    model.train(max_epochs=1, validation_size=0.2, **TRAIN)  # the same fraction: kept
    assert set(held) <= set(model.validation_indices)
    model.train(max_epochs=1, validation_size=0, held_out_conditions=0, **TRAIN)
    assert len(model.validation_indices) == 0
    assert model.held_out_conditions_ == []
    assert model.prediction_method_ == "pdae"


def test_validating_after_training_on_every_cell_warns(adata):
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, **TRAIN)
    with pytest.warns(UserWarning, match="trained on every cell before"):
        model.train(max_epochs=1, validation_size=0.2, **TRAIN)


def test_resume_from_checkpoint_keeps_the_validation_cells(adata, tmp_path):
    first = PDAE(adata, **TINY)
    callbacks = [ModelCheckpoint(dirpath=tmp_path, save_last=True)]
    first.train(max_epochs=2, validation_size=0.2, callbacks=callbacks, **TRAIN)
    resumed = PDAE(adata, **TINY)  # a fresh model built the same way draws no new split
    resumed.train(max_epochs=3, validation_size=0.2, ckpt_path=tmp_path / "last.ckpt", **TRAIN)
    np.testing.assert_array_equal(resumed.validation_indices, first.validation_indices)
    np.testing.assert_array_equal(resumed.train_indices, first.train_indices)


def test_saved_model_keeps_its_split(adata, tmp_path):
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, validation_size=0.2, **TRAIN)
    model.save(tmp_path / "m")
    loaded = PDAE.load(tmp_path / "m", adata)
    loaded.train(max_epochs=1, **TRAIN)
    np.testing.assert_array_equal(loaded.validation_indices, model.validation_indices)


def test_splitter_refuses_a_split_of_other_data():
    from pdae_sc.data._sampler import PerturbationDataSplitter

    codes = np.repeat([0, 1], 5)
    with pytest.raises(ValueError, match="do not partition the 10 registered cells"):
        PerturbationDataSplitter(
            np.zeros((10, 3)), codes, np.zeros(10, int), np.eye(2), split=(np.arange(8), [8])
        )


class _Placement(pl.Callback):
    def on_train_start(self, trainer, plan):
        self.resident = trainer.datamodule._resident is not None


def test_datasplitter_kwargs_reach_the_splitter(adata):
    model = PDAE(adata, **TINY)
    default, resident = _Placement(), _Placement()
    model.train(max_epochs=1, callbacks=[default], **TRAIN)
    model.train(
        max_epochs=1, datasplitter_kwargs={"data_device": "cpu"}, callbacks=[resident], **TRAIN
    )
    # CPU training keeps it on the host
    assert not default.resident
    assert resident.resident
    with pytest.raises(ValueError, match=r"max_memory_fraction=2"):
        model.train(max_epochs=1, datasplitter_kwargs={"max_memory_fraction": 2}, **TRAIN)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_sources": 8}, ValueError, r"'n_sources' \(use n_sources\), which train\(\) sets"),
        ({"data_devic": "host"}, TypeError, r"unknown arguments \['data_devic'\].*data_device"),
        ("host", TypeError, "pass a dict"),
    ],
)
def test_datasplitter_kwargs_errors(adata, kwargs, error, match):
    model = PDAE(adata, **TINY)
    with pytest.raises(error, match=match):
        model.train(max_epochs=1, datasplitter_kwargs=kwargs, **TRAIN)
