"""Checks of the network on the held-out conditions during training, and the weights kept."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scvi
import torch

import pdae_sc as pdae
from pdae_sc.model import _held_out_checkpoints
from pdae_sc.model._held_out_checkpoints import HeldOutCheckpoints
from pdae_sc.model._selection import SIMPLE_METHODS, score_held_out

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


def _behind_callback(checks: dict, baselines: dict, n_groups: int = 4):
    """A callback with checks ``{source: [per-group scores, ...]}`` and baseline tables.

    ``baselines``: ``{source: {method: per-group scores}}``; a method not given scores 9.
    """
    cb = HeldOutCheckpoints(SimpleNamespace(), groups=[(i, 0) for i in range(n_groups)])
    cb.total = 1000
    for source, rows in checks.items():
        for i, values in enumerate(rows):
            cb._scores[(100 * (i + 1), source)] = np.asarray(values, dtype=float)
            cb._states[100 * (i + 1)] = {}
    for step in range(100, 100 * (_held_out_checkpoints.MIN_CHECKS_TO_STOP + 1), 100):
        cb._states.setdefault(step, {})  # the checks of this run, at least enough to stop
    for source, table in baselines.items():
        cb._baselines[source] = pd.DataFrame(
            {m: table.get(m, [9.0] * n_groups) for m in SIMPLE_METHODS}
        )
    return cb


def test_training_stops_when_clearly_behind_a_baseline_by_more_than_it_gained():
    # checks 0.60-0.70, then 0.30-0.35: gained 0.32; linear is ahead by 0.22 -> go on
    behind = [[0.6, 0.7, 0.65, 0.62], [0.3, 0.35, 0.32, 0.31]]
    linear = {"linear": [0.10, 0.12, 0.09, 0.11]}
    cb = _behind_callback({"all": behind, "ctrl": behind}, {"all": linear, "ctrl": linear})
    assert not cb._no_use_going_on(None, 500)
    # the same gap after a smaller gain (0.05): stop
    small_gain = [[0.35, 0.40, 0.37, 0.36], [0.3, 0.35, 0.32, 0.31]]
    cb = _behind_callback({"all": small_gain, "ctrl": small_gain}, {"all": linear, "ctrl": linear})
    assert cb._no_use_going_on(None, 500)
    assert cb.stopped.startswith("at step 500 of 1000 on the held-out conditions")
    assert "behind 'linear'" in cb.stopped
    assert "from 'ctrl'" in cb.stopped
    # from every cell the best check is as close as the baseline: go on
    cb = _behind_callback(
        {"all": [*small_gain, [0.10, 0.12, 0.09, 0.11]], "ctrl": small_gain},
        {"all": linear, "ctrl": linear},
    )
    assert not cb._no_use_going_on(None, 500)
    assert cb.stopped is None


def test_under_a_decaying_schedule_a_stalled_run_behind_a_baseline_stops():
    # a large gain at first (0.65 -> 0.30), none since: behind linear by 0.20
    early = [[0.65] * 4, [0.30] * 4, [0.31] * 4, [0.30] * 4, [0.32] * 4, [0.31] * 4]
    early = [[v + d for v, d in zip(row, (0.0, 0.01, -0.01, 0.0), strict=True)] for row in early]
    linear = {"linear": [0.10, 0.12, 0.09, 0.11]}
    checks, bases = {"all": early, "ctrl": early}, {"all": linear, "ctrl": linear}
    cb = _behind_callback(checks, bases)
    assert not cb._no_use_going_on(None, 600)  # constant learning rate: the whole gain
    cb = _behind_callback(checks, bases)
    cb.decaying = True  # the second half of the run so far gained nothing
    assert cb._no_use_going_on(None, 600)
    assert "has not improved over the second half of the run so far" in cb.stopped
    # a new best in the second half, if only by 0.02, while 0.18 behind: go on
    slow = [*early[:-1], [0.28, 0.29, 0.27, 0.28]]
    cb = _behind_callback({"all": slow, "ctrl": slow}, bases)
    cb.decaying = True
    assert not cb._no_use_going_on(None, 600)
    # moving away from the best still needs more than the whole gain: a rise of 0.05
    far = {"control": [9.0] * 4}
    dip = [[0.65] * 4, [0.30] * 4, [0.31] * 4, [0.33] * 4, [0.34] * 4, [0.35] * 4]
    cb = _behind_callback({"all": dip, "ctrl": dip}, {"all": far, "ctrl": far})
    cb.decaying = True
    assert not cb._no_use_going_on(None, 600)


def test_the_schedule_is_read_from_the_training_plan():
    # a run resumed past step 0: no check at its start
    trainer = SimpleNamespace(world_size=1, estimated_stepping_batches=1200, global_step=600)
    for schedule, decaying in (("cosine", True), ("constant", False)):
        cb = HeldOutCheckpoints(SimpleNamespace(), groups=[(0, 0), (1, 0)])
        cb.on_train_start(trainer, SimpleNamespace(lr_schedule=schedule))
        assert (cb.decaying, cb.total, cb.every) == (decaying, 1200, 100)


def test_training_stops_when_it_moves_away_from_its_best_faster_than_it_improved():
    far = {"control": [9.0] * 4}  # no baseline is close
    # best first (no gain), then clearly worse: stop
    drift = [[0.10, 0.12, 0.09, 0.11], [0.15, 0.16, 0.14, 0.15], [0.20, 0.22, 0.19, 0.21]]
    cb = _behind_callback({"all": drift, "ctrl": drift}, {"all": far, "ctrl": far})
    assert cb._no_use_going_on(None, 600)
    assert "worse than at step 100" in cb.stopped
    # a large gain first (0.50 -> 0.10), then a smaller rise: go on (it may come back down)
    dip = [[0.50, 0.52, 0.49, 0.51], [0.10, 0.12, 0.09, 0.11], [0.20, 0.22, 0.19, 0.21]]
    cb = _behind_callback({"all": dip, "ctrl": dip}, {"all": far, "ctrl": far})
    assert not cb._no_use_going_on(None, 600)


def test_a_run_with_too_few_checks_does_not_stop():
    # e.g. resumed from a checkpoint past half of its length: one check, clearly behind
    behind = [[0.5, 0.6, 0.55, 0.52]]
    linear = {"linear": [0.10, 0.12, 0.09, 0.11]}
    cb = _behind_callback({"all": behind, "ctrl": behind}, {"all": linear, "ctrl": linear})
    assert cb._no_use_going_on(None, 500)
    cb._states = {100: {}}
    assert not cb._no_use_going_on(None, 500)


def test_behind_only_by_noise_or_on_one_condition_keeps_training():
    noisy = [[0.0, 0.6, 0.0, 0.6]]  # mean 0.30 against 0.25, standard error 0.17
    base = {"control": [0.25] * 4}
    cb = _behind_callback({"all": noisy, "ctrl": noisy}, {"all": base, "ctrl": base})
    assert not cb._no_use_going_on(None, 500)
    one = _behind_callback(
        {"all": [[0.9]], "ctrl": [[0.9]]}, {"all": {"pooled": [0.1]}, "ctrl": {"pooled": [0.1]}}, 1
    )
    assert not one._no_use_going_on(None, 500)


def test_the_stop_is_asked_only_from_half_of_the_run():
    cb = HeldOutCheckpoints(SimpleNamespace(), groups=[(0, 0), (1, 0)])
    cb.total, cb.every, asked = 1000, 100, []
    cb._check = lambda module, step: cb._states.setdefault(step, {})
    cb._no_use_going_on = lambda module, step: asked.append(step) or True
    for step in (100, 400, 500):
        trainer = SimpleNamespace(global_step=step, should_stop=False)
        cb.on_train_batch_end(trainer, SimpleNamespace(module=None), None, None, 0)
        assert trainer.should_stop is (step >= 500)
    assert asked == [500]


@pytest.fixture(scope="module")
def screen():
    adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=60, n_genes=20, seed=0)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    return adata


def _trained(adata, max_epochs=120, **kwargs):
    """A small model trained with seed 0, its warnings (BaselineFavoured, PoorFit) silenced."""
    scvi.settings.seed = 0
    model = pdae.model.PDAE(adata, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=max_epochs, enable_progress_bar=False, **kwargs)
    return model


def _checkpoints(model) -> HeldOutCheckpoints:
    """The held-out checks callback of the model's last training run."""
    return next(c for c in model.trainer.callbacks if isinstance(c, HeldOutCheckpoints))


def test_training_checks_the_held_out_conditions_without_changing_the_run(screen, monkeypatch):
    monkeypatch.setattr(_held_out_checkpoints, "STOP_FROM", 2.0)  # never stop: compare runs
    # on the CPU, whose training is reproducible to the bit (on a GPU, see the test below)
    checked = _trained(screen, accelerator="cpu")
    plain = _trained(screen, early_stopping=False, accelerator="cpu")
    assert checked.held_out_conditions_ == plain.held_out_conditions_
    checks = checked.held_out_checks_
    callback = _checkpoints(checked)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_checks_leave_a_gpu_run_as_it_was(screen, monkeypatch):
    """On a GPU: the checks change a run no more than running it twice does."""
    monkeypatch.setattr(_held_out_checkpoints, "STOP_FROM", 2.0)
    plain = _trained(screen, early_stopping=False, accelerator="gpu", max_epochs=30)
    again = _trained(screen, early_stopping=False, accelerator="gpu", max_epochs=30)
    checked = _trained(screen, accelerator="gpu", max_epochs=30)
    callback = _checkpoints(checked)
    restored = callback.restored_step is not None
    ours = callback._states[callback.last_step] if restored else checked.module.state_dict()
    for name, value in plain.module.state_dict().items():
        rerun = (again.module.state_dict()[name] - value).abs().max().item()
        differs = (ours[name].to(value.device) - value).abs().max().item()
        assert differs <= max(2 * rerun, 1e-5), f"{name}: {differs:.3g} vs rerun {rerun:.3g}"


def test_the_start_is_checked_before_the_first_step(monkeypatch):
    """Step 0 is a check: the untrained move (the linear model, no network term) is kept."""
    monkeypatch.setattr(_held_out_checkpoints, "STOP_FROM", 2.0)
    counts = pdae.data.simulate(
        n_perturbations=4, n_cells_per_condition=60, n_genes=20, counts=True, seed=0
    )
    pdae.model.PDAE.setup_anndata(counts, "perturbation", control_group="ctrl")
    model = _trained(counts, max_epochs=60)  # non-negative data: the residual decoder
    callback = _checkpoints(model)
    assert model.module.residual
    assert min(callback._states) == 0
    assert 0 in set(model.held_out_checks_["step"])
    assert not callback._states[0]["shift.weight"].any()  # the network's part is zero there
    later = sorted(s for s in callback._states if s > 0)
    assert later, "the run was checked only at its start"
    assert callback._states[later[0]]["shift.weight"].any()  # and trained after


def test_a_stop_on_the_checks_ends_training_and_says_why(screen, monkeypatch):
    def behind(self, module, step):
        self.stopped = f"at step {step}, behind"
        return True

    monkeypatch.setattr(HeldOutCheckpoints, "_no_use_going_on", behind)
    model = _trained(screen)
    callback = _checkpoints(model)
    half = _held_out_checkpoints.STOP_FROM * callback.total
    first = min(s for s in callback._states if s % callback.every == 0 and s >= half)
    assert model.trainer.global_step == first < callback.total
    assert model.training_stopped_.startswith(f"early stopping at step {first}, behind")
    assert model.history["stopped"]["reason"].iloc[0] == model.training_stopped_
    assert model.is_trained_
    assert model.prediction_method_ in ("pdae", *SIMPLE_METHODS)
    assert model.predict(["P0+P1"], n_cells=10, seed=0).n_obs == 10


def test_the_method_is_chosen_on_the_last_weights_not_the_restored_ones(screen, monkeypatch):
    seen = {}

    def restore(self):
        seen["last"] = {k: v.clone() for k, v in self.model.module.state_dict().items()}
        seen["source"] = self.model.default_source_
        self.restored_step = min(self._states)
        self.model.module.load_state_dict(self._states[self.restored_step])
        return True

    monkeypatch.setattr(HeldOutCheckpoints, "restore_if_clearly_better", restore)
    model = _trained(screen)
    callback = _checkpoints(model)
    assert f"weights of step {callback.restored_step} restored" in model.training_stopped_
    restored = model.module.state_dict()
    from_control = seen["source"] == model.registration.control_group
    on_restored = score_held_out(model, callback.groups, seed=0, from_control=from_control)
    model.module.load_state_dict(seen["last"])
    on_last = score_held_out(model, callback.groups, seed=0, from_control=from_control)
    model.module.load_state_dict(restored)
    chosen_on = model.held_out_scores_["pdae"].to_numpy()
    np.testing.assert_allclose(chosen_on, on_last["pdae"].to_numpy(), rtol=1e-6)
    assert not np.allclose(chosen_on, on_restored["pdae"].to_numpy(), rtol=1e-6)
