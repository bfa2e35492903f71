"""Checks of the network on the held-out conditions during training, and the weights kept."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import scvi
import torch

import pdae_sc as pdae
from pdae_sc.model._held_out_checkpoints import HeldOutCheckpoints

SMALL = {"n_latent": 4, "n_hidden": (32,), "n_noise": 4}


def _callback(scores_by_step: dict, last: dict, source: str = "all"):
    """A callback whose checks scored ``scores_by_step`` and whose last weights score ``last``."""
    module = torch.nn.Linear(2, 1)
    model = SimpleNamespace(module=module, default_source_=source)
    cb = HeldOutCheckpoints(model, groups=[])
    for step, by_source in scores_by_step.items():
        for src, values in by_source.items():
            cb._scores[(step, src)] = np.asarray(values, dtype=float)
        cb._states[step] = {"weight": torch.full((1, 2), float(step)), "bias": torch.zeros(1)}
    cb.last_step = 300
    cb._score = lambda module, src: np.asarray(last[src], dtype=float)
    return cb, module


def test_an_earlier_check_clearly_closer_gives_its_weights_back():
    cb, module = _callback(
        {
            100: {"all": [0.10, 0.12, 0.09, 0.11], "ctrl": [0.9] * 4},
            200: {"all": [0.20, 0.22, 0.19, 0.21], "ctrl": [0.9] * 4},
        },
        last={"all": [0.30, 0.32, 0.29, 0.31], "ctrl": [0.0] * 4},
    )
    last_weight = module.weight.detach().clone()
    assert cb.restore_if_clearly_better()
    assert cb.restored_step == 100
    assert torch.equal(module.weight, torch.full((1, 2), 100.0))
    assert torch.equal(cb._states[300]["weight"], last_weight)  # the last weights are kept
    assert set(cb.checks["step"]) == {100, 200, 300}


def test_a_check_ahead_only_by_noise_keeps_the_last_weights():
    # mean 0.30 against 0.35, but the per-condition differences (+0.35, -0.25, ...) have a
    # standard error of 0.17: not clearly closer
    cb, module = _callback(
        {100: {"all": [0.0, 0.6, 0.0, 0.6], "ctrl": [0.0] * 4}},
        last={"all": [0.35] * 4, "ctrl": [0.35] * 4},
    )
    before = module.weight.detach().clone()
    assert not cb.restore_if_clearly_better()
    assert cb.restored_step is None
    assert torch.equal(module.weight, before)


def test_the_checks_are_judged_from_the_default_source_set():
    scores = {100: {"all": [0.9] * 4, "ctrl": [0.10, 0.12, 0.09, 0.11]}}
    last = {"all": [0.5] * 4, "ctrl": [0.30, 0.32, 0.29, 0.31]}
    cb, _ = _callback(scores, last, source="ctrl")
    assert cb.restore_if_clearly_better()  # from the control cells the check is closer
    cb, _ = _callback(scores, last, source="all")
    assert not cb.restore_if_clearly_better()  # from every cell it is not


@pytest.fixture(scope="module")
def screen():
    adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=60, n_genes=20, seed=0)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    return adata


def _trained(adata, **kwargs):
    scvi.settings.seed = 0
    model = pdae.model.PDAE(adata, **SMALL)
    model.train(max_epochs=120, enable_progress_bar=False, **kwargs)
    return model


def test_training_checks_the_held_out_conditions_without_changing_the_run(screen):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BaselineFavouredWarning, PoorFitWarning
        checked = _trained(screen)
        plain = _trained(screen, early_stopping=False)
    assert checked.held_out_conditions_ == plain.held_out_conditions_
    checks = checked.held_out_checks_
    callback = next(c for c in checked.trainer.callbacks if isinstance(c, HeldOutCheckpoints))
    steps = sorted(s for s in callback._states if s % callback.every == 0)
    assert len(steps) >= 2
    assert set(callback._states) <= {*steps, callback.last_step}
    for source in ("all", "ctrl"):
        assert set(checks.loc[checks["source"] == source, "step"]) >= set(steps)
    assert np.isfinite(checks["energy_distance"]).all()
    assert getattr(plain, "held_out_checks_", None) is None
    ours = checked.module.state_dict()
    if callback.restored_step is None:
        # the checks leave the random state of training alone: the same run, the same weights
        for name, value in plain.module.state_dict().items():
            torch.testing.assert_close(ours[name], value)
        assert "restored" not in checked.training_stopped_
    else:
        kept = callback._states[callback.restored_step]
        for name, value in kept.items():
            torch.testing.assert_close(ours[name], value)
        assert f"weights of step {callback.restored_step} restored" in checked.training_stopped_
        for name, value in plain.module.state_dict().items():
            torch.testing.assert_close(callback._states[callback.last_step][name], value)
