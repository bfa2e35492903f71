"""Training that stops when it is done (issue "Fast to a good model", item 2)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pdae_sc as pdae
from pdae_sc.model import ConvergenceStopping


class _Trainer(SimpleNamespace):
    """The few trainer attributes the callback reads."""


def _run(rule, values, steps_per_epoch=10):
    """Feed ``values`` as one validation score per epoch; weights change every epoch."""
    plan = torch.nn.Linear(2, 1)
    trainer = _Trainer(sanity_checking=False, callback_metrics={}, global_step=0, current_epoch=0)
    trainer.should_stop, trainer.interrupted = False, False
    weights = []
    for epoch, value in enumerate(values):
        with torch.no_grad():
            plan.weight.fill_(float(epoch))
        weights.append(float(epoch))
        trainer.current_epoch = epoch
        trainer.global_step = (epoch + 1) * steps_per_epoch
        trainer.callback_metrics = {"energy_validation": torch.tensor(value)}
        rule.on_validation_epoch_end(trainer, plan)
        if trainer.should_stop:
            break
    rule.on_train_end(trainer, plan)
    return trainer, plan, epoch


def test_stops_after_patience_and_restores_the_best_weights():
    values = [5.0, 4.0, 3.0, 2.0] + [2.5] * 50  # best at epoch 3, then worse
    rule = ConvergenceStopping(patience_steps=50, min_steps=0, smoothing=1.0)
    trainer, plan, stopped_at = _run(rule, values)
    assert trainer.should_stop
    assert rule.best_epoch == 3
    assert stopped_at == 3 + 5  # 5 epochs of 10 steps without improvement
    assert float(plan.weight[0, 0]) == 3.0  # the weights of the best epoch
    assert rule.reason.startswith("converged")
    assert "epoch 4" in rule.reason


def test_keeps_training_while_it_improves_and_respects_min_steps():
    improving = list(np.linspace(10.0, 5.0, 30))
    rule = ConvergenceStopping(patience_steps=20, min_steps=0, smoothing=1.0)
    trainer, plan, _ = _run(rule, improving)
    assert not trainer.should_stop
    assert rule.reason == "max_epochs"
    assert float(plan.weight[0, 0]) == 29.0
    flat = [3.0] * 30
    rule = ConvergenceStopping(patience_steps=20, min_steps=200, smoothing=1.0)
    trainer, _, stopped_at = _run(rule, flat)
    assert trainer.should_stop
    assert (stopped_at + 1) * 10 >= 200


def test_small_changes_do_not_count_and_smoothing_damps_noise():
    rng = np.random.default_rng(0)
    noisy = 4.0 + 0.001 * rng.standard_normal(60)  # within the 0.1% margin
    rule = ConvergenceStopping(patience_steps=100, min_steps=0, smoothing=0.3)
    trainer, _, stopped_at = _run(rule, noisy)
    assert trainer.should_stop
    assert rule.best_epoch == 0
    assert stopped_at == 10


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="smoothing"):
        ConvergenceStopping(smoothing=0)


def _counts_like(seed=0):
    adata = pdae.data.simulate(
        n_perturbations=3, n_genes=20, n_cells_per_condition=40, counts=True, seed=seed
    )
    adata.X = np.log1p(adata.layers["counts"]).astype(np.float32)  # non-negative: residual
    return adata


def test_auto_stops_by_convergence_for_the_residual_decoder():
    adata = _counts_like()
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=4)
    assert model.module.residual
    model.train(max_epochs=200, early_stopping="auto", enable_progress_bar=False, check_fit=False)
    assert len(model.validation_indices) > 0  # "auto" holds cells out to judge
    assert model.history["stopped"]["reason"].iloc[0] == model.training_stopped_
    assert model.training_stopped_.startswith(("converged", "max_epochs"))
    assert "energy_validation" in model.history


def test_generative_decoder_trains_a_fixed_length_on_every_cell_under_auto():
    adata = pdae.data.simulate(n_perturbations=3, n_genes=20, n_cells_per_condition=20, seed=0)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=4)
    assert not model.module.residual
    model.train(
        max_epochs=3,
        early_stopping="auto",
        enable_progress_bar=False,
        check_fit=False,
        held_out_conditions=0,
    )
    assert len(model.validation_indices) == 0
    assert model.training_stopped_ == "max_epochs"
    assert len(model.history["train_loss"]) == 3


def test_a_given_rule_replaces_the_default_and_early_stopping_is_checked():
    adata = _counts_like(1)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=4)
    rule = ConvergenceStopping(patience_steps=1, min_steps=0, smoothing=1.0, min_delta=1.0)
    model.train(
        max_epochs=50,
        early_stopping="auto",
        callbacks=[rule],
        enable_progress_bar=False,
        check_fit=False,
    )
    # min_delta=1 (100%) never counts as an improvement: stops right after the patience
    assert rule.reason.startswith("converged")
    assert len(model.history["train_loss"]) < 50
    assert sum(isinstance(c, ConvergenceStopping) for c in model.trainer.callbacks) == 1
    with pytest.raises(ValueError, match="early_stopping"):
        model.train(max_epochs=1, early_stopping="yes", enable_progress_bar=False)


def test_default_is_a_fixed_length_and_says_so():
    adata = _counts_like(2)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=4)
    model.train(max_epochs=4, enable_progress_bar=False, check_fit=False, held_out_conditions=0)
    assert model.training_stopped_ == "max_epochs"
    assert len(model.validation_indices) == 0
    assert len(model.history["train_loss"]) == 4
