"""Lightning training plan of the PDAE."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from pdae_sc.module import PDAEModule

__all__ = ["NonFiniteLossError", "PDAETrainingPlan"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a non-finite loss or gradient.

    Raised by :meth:`pdae_sc.model.PDAE.train` after training stopped; the model keeps the
    weights of the last finite step.
    """


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class PDAETrainingPlan(pl.LightningModule):
    """Optimise a :class:`~pdae_sc.module.PDAEModule` with Adam.

    Logs ``train_loss`` / ``validation_loss`` and each loss term per epoch (they end up in
    ``model.history``). A non-finite loss (or gradient) skips the optimiser step, so the
    weights stay at their last finite values, stops training after the current step and is
    kept in :attr:`nonfinite_error`, which :meth:`pdae_sc.model.PDAE.train` raises once
    Lightning has shut down cleanly.

    Parameters
    ----------
    module
        The module to train.
    lr
        Adam learning rate.
    weight_decay
        Adam weight decay.

    Attributes
    ----------
    nonfinite_error
        The :class:`NonFiniteLossError` that stopped training, or ``None``.
    n_updates
        Optimiser updates made (steps with a finite loss and finite gradients).
    """

    def __init__(self, module: PDAEModule, *, lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__()
        self.module = module
        self.lr = lr
        self.weight_decay = weight_decay
        self.nonfinite_error: NonFiniteLossError | None = None
        self.n_updates = 0

    def _stop(self, what: str) -> None:
        if self.nonfinite_error is None:
            self.nonfinite_error = NonFiniteLossError(
                f"{what} at epoch {self.current_epoch}, step {self.global_step}. Training "
                "stopped; the model keeps the weights of the last finite step. Lower the "
                f"learning rate (lr={self.lr:g} now; try model.train(lr={self.lr / 10:g})) or "
                "check the data scale: PDAE expects log-normalised expression "
                "(sc.pp.normalize_total then sc.pp.log1p, values up to about 10), not raw "
                "counts or unscaled intensities."
            )
        self.trainer.should_stop = True

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor | None:
        out = self.module(batch)
        if not torch.isfinite(out.loss):
            terms = ", ".join(f"{k}={v.item():.4g}" for k, v in out.terms().items())
            self._stop(f"The {split} loss became {out.loss.item()} (terms: {terms})")
            return None  # Lightning skips backward and the optimiser step
        n = batch["x_anchor"].shape[0] if "x_anchor" in batch else batch["x"].shape[0]
        self.log(
            f"{split}_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n
        )
        for name, value in out.terms().items():
            self.log(f"{name}_{split}", value, on_step=False, on_epoch=True, batch_size=n)
        return out.loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        """Loss of one training batch (``None`` after a non-finite loss: no update)."""
        if self.nonfinite_error is not None:
            return None
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss of one validation batch (held-out cells of training conditions)."""
        if self.nonfinite_error is None:
            self._step(batch, "validation")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop the update when a gradient is non-finite (the weights stay finite)."""
        params = [p for p in self.module.parameters() if p.grad is not None]
        if not params:
            return
        if _all_finite([p.grad for p in params]):
            self.n_updates += 1
            return
        for p in params:
            p.grad = None  # Adam skips parameters without a gradient
        self._stop("The gradients became non-finite")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on all module parameters."""
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r}; the learning rate must be a positive number.")
        return torch.optim.Adam(
            self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
