"""Which weights of a run to keep: the network scored on the conditions held out of training.

``train`` keeps a few measured conditions out of the fit to choose between the network and
the simple baselines (:mod:`._selection`). The same conditions tell which weights of the run
predict best. The residual decoders start at the least-squares (linear) fit; on data whose
effects a mean shift already captures, the network drifts away from it as training goes on
and its score on the held-out conditions gets worse, while on data with a nonlinear response
it keeps improving to the end of the schedule (``benchmarks/results/held_out_checks.md``).
:class:`HeldOutCheckpoints` scores the network on the held-out conditions at regular steps
and keeps those weights; :meth:`HeldOutCheckpoints.restore_if_clearly_better` gives the
module the weights of the best check when it is clearly closer than the last weights. From
half of the run on, it stops training when the rest of the run would have to gain more than
the run so far has (or, behind a baseline, when the second half of the run so far gained
nothing) to change what is kept (:meth:`HeldOutCheckpoints._reason_to_stop`;
``benchmarks/results/held_out_stop.md``).
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch

from ._selection import SIMPLE_METHODS, clearly_positive, closest_baseline, score_held_out

__all__ = ["HeldOutCheckpoints"]

#: Checks over a run (3,000 steps: one every 250 steps).
N_CHECKS = 12
#: Fewest steps between two checks: a check costs about as much as 5-30 steps.
MIN_EVERY = 100
#: The source sets a check predicts from: the context's control cells, and every cell.
SOURCES = ("ctrl", "all")
#: Share of the planned steps from which training may stop on the checks
#: (:meth:`HeldOutCheckpoints._no_use_going_on`).
STOP_FROM = 0.5
#: Fewest checks of this run before it may stop: the gain so far needs a few to mean
#: anything (a run resumed from a checkpoint past half of its length starts with none).
MIN_CHECKS_TO_STOP = 3


class HeldOutCheckpoints(pl.Callback):
    """Score the network on the held-out conditions during training; keep those weights.

    Before the first step and every ``1 / N_CHECKS`` of the run the network predicts each
    held-out condition from its context's control cells and from every cell of the context
    (the two source sets that :meth:`~pdae_sc.model.PDAE.predict` may use by default) and is
    scored by energy distance to the measured cells
    (:func:`~pdae_sc.model._selection.score_held_out`, the same draws and decoder noise at
    every check; the random state of training is left as it was). The weights of every
    check are kept on the host until training ends. From :data:`STOP_FROM` of the run on, a
    check may stop training (:meth:`_no_use_going_on`).

    Parameters
    ----------
    model
        The :class:`~pdae_sc.model.PDAE` being trained.
    groups
        The held-out (condition code, context code) groups.

    Attributes
    ----------
    restored_step
        Step whose weights :meth:`restore_if_clearly_better` gave back, or ``None``.
    stopped
        Why training stopped early (at which step, and the reason from each source set), or
        ``None``.
    """

    def __init__(self, model, groups):
        self.model = model
        self.groups = list(groups)
        self.every = self.last_step = self.total = 0
        self.decaying = False
        self.restored_step: int | None = None
        self.stopped: str | None = None
        self._scores: dict[tuple[int, str], np.ndarray] = {}
        self._states: dict[int, dict[str, torch.Tensor]] = {}
        self._baselines: dict[str, pd.DataFrame] = {}

    @classmethod
    def for_run(cls, model, groups, early_stopping, convergence) -> HeldOutCheckpoints | None:
        """The callback of a ``train`` run, or ``None``.

        ``None`` unless ``early_stopping="held_out"``, conditions are held out and no
        convergence rule (which keeps its own best weights) is in use.
        """
        if early_stopping != "held_out" or not groups or convergence is not None:
            return None
        return cls(model, groups)

    @property
    def checks(self) -> pd.DataFrame:
        """One row per check and source set: ``step``, ``source``, ``energy_distance``."""
        rows = [(step, src, float(v.mean())) for (step, src), v in self._scores.items()]
        return pd.DataFrame(rows, columns=["step", "source", "energy_distance"])

    def on_train_start(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        """Space the checks over the planned steps of the run (none under DDP).

        A run that starts at step 0 is checked there too, before its first step: the
        residual decoders start as the ``linear`` model (clipped at zero for non-negative
        data; :func:`~pdae_sc.model._linear.start_at_linear_model`), and on data where
        training only makes the held-out conditions worse, that start is the best weights.
        """
        if trainer.world_size == 1:
            self.total = max(1, int(trainer.estimated_stepping_batches))
            self.every = max(MIN_EVERY, round(self.total / N_CHECKS))
        self.decaying = getattr(plan, "lr_schedule", None) == "cosine"
        if self.every and trainer.global_step == 0:
            self._check(plan.module, 0)

    def on_train_end(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        """Note the last step, whose weights :meth:`restore_if_clearly_better` judges."""
        self.last_step = trainer.global_step

    def on_train_batch_end(self, trainer, plan, outputs, batch, batch_idx) -> None:
        """Check the network every ``every`` steps; stop when going on is of no use."""
        step = trainer.global_step
        if self.every and step % self.every == 0 and step not in self._states:
            self._check(plan.module, step)
            if step >= STOP_FROM * self.total and self._no_use_going_on(plan.module, step):
                trainer.should_stop = True

    def _no_use_going_on(self, module: torch.nn.Module, step: int) -> bool:
        """Whether the rest of the run would have to gain more than the run so far has.

        Asked from :data:`STOP_FROM` of the run on, at every check; yes when, from every
        source set, :meth:`_reason_to_stop` finds a reason (the source set the model will
        predict from is chosen only after training). Needs two held-out conditions or more
        and :data:`MIN_CHECKS_TO_STOP` checks of this run. Sets :attr:`stopped` when it is.
        """
        if len(self.groups) < 2 or len(self._states) < MIN_CHECKS_TO_STOP:
            return False
        reasons = []
        for source in SOURCES:
            reason = self._reason_to_stop(module, source)
            if reason is None:
                return False
            reasons.append(reason)
        self.stopped = f"at step {step} of {self.total} on the held-out conditions: " + "; ".join(
            reasons
        )
        return True

    def _reason_to_stop(self, module: torch.nn.Module, source: str) -> str | None:
        """Why the checks from ``source`` say training may stop, or ``None``.

        ``gain``: how much the network improved from its first check to its best so far.
        The rest of the run would have to gain more than that to change what is kept when

        - the best check is clearly behind the simple baseline with the lowest mean on the
          same conditions and cells (fitted on the training cells), by more than ``gain``,
          or by any amount when the run has *stalled* (:meth:`_pace`: under the cosine
          schedule, no check of the second half of the run so far improved on the best
          before it): the baseline will be the default prediction. From half of a cosine
          schedule on, the rest of the run has less learning rate to spend than the second
          half of the run so far, so a network that gained nothing there is not expected to
          catch up; the large early gains of every run say nothing about that. Comparing the
          gap with the amount gained over that stretch (not only whether it gained) stopped a
          clean-simulation run that was still improving; or
        - the last check is clearly worse than the best, by more than ``gain``: training is
          moving away from the best weights, which will be restored.

        "Clearly": by more than one standard error of the per-condition differences, the
        rule that makes a baseline the default prediction
        (:func:`~pdae_sc.model._selection.choose_method`).
        """
        steps = sorted(s for s, src in self._scores if src == source)
        curve = {s: self._scores[(s, source)] for s in steps}
        best = min(steps, key=lambda s: curve[s].mean())
        gain = self._gain(curve, steps)
        pace = self._pace(curve, steps)
        stalled = pace == 0.0 < gain
        if source not in self._baselines:
            self._baselines[source] = self._held_out_table(module, source, SIMPLE_METHODS)
        baselines = self._baselines[source]
        method = closest_baseline(baselines)
        behind = curve[best] - baselines[method].to_numpy(dtype=float)
        if clearly_positive(behind) and behind.mean() > pace:
            gained = (
                "and the network has not improved over the second half of the run so far"
                if stalled
                else f"more than the network gained since its first check ({gain:.3f})"
            )
            return (
                f"from {source!r} the best check (step {best}) is behind {method!r} by "
                f"{behind.mean():.3f}, {gained}"
            )
        worse = curve[steps[-1]] - curve[best]
        if clearly_positive(worse) and worse.mean() > gain:
            return (
                f"from {source!r} the network is worse than at step {best} by "
                f"{worse.mean():.3f}, more than it gained since its first check ({gain:.3f})"
            )
        return None

    @staticmethod
    def _gain(curve: dict, steps: list[int]) -> float:
        """How much the network improved from its first check to its best so far."""
        return float(curve[steps[0]].mean() - min(curve[s].mean() for s in steps))

    def _pace(self, curve: dict, steps: list[int]) -> float:
        """The gain that a gap to a baseline is compared with: none when stalled.

        Stalled: under the cosine schedule, no check of the second half of the run so far
        improved on the best before it; otherwise the whole gain (:meth:`_gain`).
        """
        if self.decaying and self._recent_gain(curve, steps) <= 0.0:
            return 0.0
        return self._gain(curve, steps)

    @staticmethod
    def _recent_gain(curve: dict, steps: list[int]) -> float:
        """How much the best check improved over the second half of the run so far."""
        half = [s for s in steps if s <= steps[-1] / 2] or steps[:1]
        return float(min(curve[s].mean() for s in half) - min(curve[s].mean() for s in steps))

    def restore_if_clearly_better(self) -> bool:
        """Give the module the best check's weights when they are clearly closer.

        Called when training has ended, with the model's default source set chosen
        (:attr:`~pdae_sc.model.PDAE.default_source_`). The last weights are
        scored on the held-out conditions from that source set; the check with the lowest
        mean replaces them when its mean is lower by more than one standard error of the
        per-condition differences (the rule that picks a baseline over the network,
        :func:`~pdae_sc.model._selection.clearly_closer`). Returns whether it did.
        """
        if not self._states:
            return False
        module = self.model.module
        source = "ctrl" if self.model.default_source_ != "all" else "all"
        step = self.last_step
        last = self._score(module, source)
        self._scores[(step, source)] = last
        best = min(
            (s for s, src in self._scores if src == source and s in self._states),
            key=lambda s: self._scores[(s, source)].mean(),
        )
        diff = last - self._scores[(best, source)]
        if best == step or len(diff) < 2 or not clearly_positive(diff):
            return False  # one group alone cannot show that a check is clearly closer
        self._states[step] = _host_copy(module)  # the last weights, for comparison
        module.load_state_dict(self._states[best])
        self.restored_step = best
        return True

    def _check(self, module: torch.nn.Module, step: int) -> None:
        for source in SOURCES:
            self._scores[(step, source)] = self._score(module, source)
        self._states[step] = _host_copy(module)

    def _score(self, module: torch.nn.Module, source: str) -> np.ndarray:
        """Per-group energy distances of the network from ``source`` (training untouched)."""
        return self._held_out_table(module, source)["pdae"].to_numpy(dtype=float)

    def _held_out_table(self, module: torch.nn.Module, source: str, methods=()) -> pd.DataFrame:
        """:func:`score_held_out` of the network from ``source`` and of ``methods``.

        The module is scored in eval mode under a forked random state, so training goes on
        as if nothing had been scored.
        """
        was_training = module.training
        module.eval()
        with torch.random.fork_rng(devices=_cuda_devices(module)), torch.no_grad():
            scores = score_held_out(
                self.model, self.groups, seed=0, methods=methods, from_control=source == "ctrl"
            )
        module.train(was_training)
        return scores


def _host_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _cuda_devices(module: torch.nn.Module) -> list[int]:
    """The CUDA devices whose random state a check must leave as it found it."""
    devices = {p.device.index for p in module.parameters() if p.device.type == "cuda"}
    return sorted(d for d in devices if d is not None)
