"""Trainer pieces of the PDAE: Lightning checkpoints for resuming, and a graceful Ctrl+C."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Checkpoint
from scvi.train import SaveCheckpoint, Trainer, TrainRunner

__all__ = ["GracefulInterrupt", "PDAETrainRunner", "PDAETrainer"]

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
