"""Trainer pieces of the PDAE: Lightning checkpoints for resuming, and a graceful Ctrl+C."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import signal
import threading
from collections.abc import Iterator

import lightning.pytorch as pl
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import Checkpoint
from scvi.train import SaveCheckpoint, Trainer, TrainRunner

__all__ = [
    "ConvergenceStopping",
    "GracefulInterrupt",
    "PDAETrainRunner",
    "PDAETrainer",
    "check_checkpoint",
    "set_validation_and_stopping",
    "user_callbacks",
]

logger = logging.getLogger(__name__)


class PDAETrainer(Trainer):
    """scvi-tools' :class:`~scvi.train.Trainer` that also accepts Lightning checkpoint callbacks.

    scvi-tools turns checkpointing off unless its own ``SaveCheckpoint`` is used, and Lightning
    refuses a ``ModelCheckpoint`` callback when checkpointing is off. Lightning checkpoint
    callbacks (e.g. ``ModelCheckpoint(dirpath=..., save_last=True)``) are therefore attached
    after the trainer is built; their ``.ckpt`` files can resume training with
    ``model.train(ckpt_path=...)``.
    """

    def __init__(self, *args, callbacks: list[pl.Callback] | None = None, **kwargs):
        callbacks = list(callbacks or [])
        lightning_checkpoints = [
            c for c in callbacks if isinstance(c, Checkpoint) and not isinstance(c, SaveCheckpoint)
        ]
        others = [c for c in callbacks if not any(c is k for k in lightning_checkpoints)]
        super().__init__(*args, callbacks=others, **kwargs)
        self.callbacks.extend(lightning_checkpoints)


class PDAETrainRunner(TrainRunner):
    """scvi-tools' :class:`~scvi.train.TrainRunner` with the :class:`PDAETrainer`."""

    _trainer_cls = PDAETrainer


class GracefulInterrupt(pl.Callback):
    """Turn Ctrl+C (SIGINT) during training into a clean stop after the current step.

    Lightning answers a ``KeyboardInterrupt`` with ``sys.exit(1)`` and ignores further
    Ctrl+C, which ends a script and confuses a notebook. While :meth:`installed` is active (in
    the main thread only), the first Ctrl+C only sets :attr:`requested`; the callback then
    asks the trainer to stop after the current step, so the model keeps its weights and
    history. A second Ctrl+C raises ``KeyboardInterrupt`` at once.
    """

    def __init__(self):
        self.requested = False
        self.stopped_epoch: int | None = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning(
            "Interrupt received: training stops after the current step "
            "(press Ctrl+C again to abort at once)."
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[GracefulInterrupt]:
        """Install the SIGINT handler for the duration of the block; restore the old one."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)

    def on_train_batch_end(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        """Ask the trainer to stop once an interrupt was requested."""
        if self.requested and self.stopped_epoch is None:
            self.stopped_epoch = trainer.current_epoch
            trainer.should_stop = True


class ConvergenceStopping(pl.Callback):
    """Stop training when a smoothed held-out score stops improving; keep the best weights.

    After every validation epoch the monitored metric (by default ``energy_validation``, the
    energy score of predictions for *held-out cells of the training conditions*) is smoothed
    with an exponential moving average. Training stops once the smoothed value has not
    improved by more than ``min_delta`` (relative) for ``patience_steps`` optimiser steps,
    but not before ``min_steps``. With ``restore_best`` the module gets back the weights of
    the epoch with the best smoothed value when training ends (also at the ``max_epochs``
    cap). :attr:`reason` says why training ended.

    Parameters
    ----------
    monitor
        Logged metric to watch (lower is better).
    patience_steps
        Optimiser steps without improvement before stopping.
    min_steps
        Never stop before this many steps.
    min_delta
        Relative improvement of the smoothed value that counts as one.
    smoothing
        Weight of the newest value in the moving average (1: no smoothing).
    restore_best
        Load the best weights when training ends.

    Examples
    --------
    :meth:`pdae_sc.model.PDAE.train` adds one by default (``early_stopping="auto"``); pass
    your own to change the rule:

    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=40, seed=0)
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=4)
    >>> rule = pdae.model.ConvergenceStopping(patience_steps=20, min_steps=20)
    >>> model.train(max_epochs=100, callbacks=[rule], enable_progress_bar=False)
    >>> model.training_stopped_ == model.history["stopped"]["reason"].iloc[0]
    True
    >>> model.training_stopped_.startswith(("converged", "max_epochs"))
    True
    """

    def __init__(
        self,
        monitor: str = "energy_validation",
        *,
        patience_steps: int = 600,
        min_steps: int = 600,
        min_delta: float = 1e-3,
        smoothing: float = 0.3,
        restore_best: bool = True,
    ):
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing={smoothing!r}; use a weight in (0, 1].")
        self.monitor = monitor
        self.patience_steps = int(patience_steps)
        self.min_steps = int(min_steps)
        self.min_delta = float(min_delta)
        self.smoothing = float(smoothing)
        self.restore_best = restore_best
        self.smoothed: float | None = None
        self.best: float = math.inf
        self.best_step = 0
        self.best_epoch: int | None = None
        self.reason: str | None = None
        self._best_state: dict | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        """Update the smoothed score; ask the trainer to stop when it has converged.

        Parameters
        ----------
        trainer
            The Lightning trainer (its ``callback_metrics`` hold the monitored score).
        plan
            The training plan, whose weights are kept when the score is the best so far.

        Examples
        --------
        >>> from types import SimpleNamespace
        >>> import torch
        >>> import pdae_sc as pdae
        >>> rule = pdae.model.ConvergenceStopping(patience_steps=10, min_steps=0, smoothing=1.0)
        >>> plan = torch.nn.Linear(2, 1)
        >>> for step, value in [(10, 3.0), (20, 2.0), (30, 2.5), (40, 2.5)]:
        ...     trainer = SimpleNamespace(
        ...         sanity_checking=False, global_step=step, current_epoch=step // 10 - 1,
        ...         callback_metrics={"energy_validation": torch.tensor(value)},
        ...         should_stop=False,
        ...     )
        ...     rule.on_validation_epoch_end(trainer, plan)
        >>> rule.best, rule.best_epoch, trainer.should_stop
        (2.0, 1, True)
        """
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if not math.isfinite(value):
            return
        a = self.smoothing
        self.smoothed = value if self.smoothed is None else a * value + (1 - a) * self.smoothed
        step = trainer.global_step
        margin = self.min_delta * abs(self.best) if math.isfinite(self.best) else 0.0
        if self.smoothed < self.best - margin:
            self.best, self.best_step = self.smoothed, step
            self.best_epoch = trainer.current_epoch
            if self.restore_best:
                self._best_state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in plan.state_dict().items()}
                )
        elif step >= self.min_steps and step - self.best_step >= self.patience_steps:
            self.reason = (
                f"converged: smoothed {self.monitor} did not improve for "
                f"{step - self.best_step} steps (best at epoch {self.best_epoch + 1})"
            )
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, plan: pl.LightningModule) -> None:
        """Restore the best weights (when asked) and record why training ended.

        Parameters
        ----------
        trainer
            The Lightning trainer.
        plan
            The training plan; it gets the weights of the best epoch back.

        Examples
        --------
        >>> from types import SimpleNamespace
        >>> import torch
        >>> import pdae_sc as pdae
        >>> rule = pdae.model.ConvergenceStopping()
        >>> rule.on_train_end(SimpleNamespace(interrupted=False), torch.nn.Linear(2, 1))
        >>> rule.reason
        'max_epochs'
        """
        if self.reason is None:
            self.reason = "max_epochs" if not trainer.interrupted else "interrupted"
        if self.restore_best and self._best_state is not None:
            plan.load_state_dict(self._best_state)


def set_validation_and_stopping(
    trainer_kwargs, early_stopping, patience, only_held_out, n_val, ckpt_path
) -> None:
    """Trainer arguments for early stopping, validation and resuming (in place)."""
    if early_stopping is True:
        trainer_kwargs.update(
            early_stopping=True,
            early_stopping_monitor="validation_loss",
            early_stopping_patience=patience,
        )
    if only_held_out and early_stopping is not True:
        # only the held-out conditions are validation cells and no stopping rule reads
        # them: they are scored once after training, not every epoch (which costs time)
        trainer_kwargs.setdefault("limit_val_batches", 0)
    if n_val > 0:
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
    if ckpt_path is not None:
        trainer_kwargs["ckpt_path"] = check_checkpoint(ckpt_path)


def check_checkpoint(ckpt_path) -> str:
    if not os.path.isfile(ckpt_path):
        raise FileNotFoundError(
            f"ckpt_path={str(ckpt_path)!r} is not a file; pass a .ckpt written by a "
            "Lightning ModelCheckpoint callback (e.g. 'dirpath/last.ckpt')."
        )
    return os.fspath(ckpt_path)


def user_callbacks(trainer_kwargs: dict) -> tuple[list, list]:
    """The user's Lightning callbacks, and those of them that stop by convergence."""
    callbacks = trainer_kwargs.get("callbacks") or []
    callbacks = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
    return callbacks, [c for c in callbacks if isinstance(c, ConvergenceStopping)]
