"""Lightning training plan of the PDAE."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from pdae_sc.module import PDAEModule

__all__ = ["NonFiniteLossError", "PDAETrainingPlan"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a non-finite loss."""


class PDAETrainingPlan(pl.LightningModule):
    """Optimise a :class:`~pdae_sc.module.PDAEModule` with Adam.

    Logs ``train_loss`` / ``validation_loss`` and each loss term per epoch (they end up in
    ``model.history``). A non-finite loss stops training with a :class:`NonFiniteLossError`
    before the optimiser step, so the weights stay at their last finite values.

    Parameters
    ----------
    module
        The module to train.
    lr
        Adam learning rate.
    weight_decay
        Adam weight decay.
    """

    def __init__(self, module: PDAEModule, *, lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__()
        self.module = module
        self.lr = lr
        self.weight_decay = weight_decay

    def _step(self, batch: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        out = self.module(batch)
        if not torch.isfinite(out.loss):
            raise NonFiniteLossError(
                f"The {split} loss became {out.loss.item()} (terms: "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in out.terms().items())
                + "). Lower the learning rate (plan_kwargs={'lr': ...}) or check the data scale:"
                " the model expects log-normalised expression, not raw counts. The weights are"
                " those of the last finite step."
            )
        n = batch["x_anchor"].shape[0] if "x_anchor" in batch else batch["x"].shape[0]
        self.log(
            f"{split}_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n
        )
        for name, value in out.terms().items():
            self.log(f"{name}_{split}", value, on_step=False, on_epoch=True, batch_size=n)
        return out.loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Loss of one training batch."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Loss of one validation batch (held-out cells of training conditions)."""
        self._step(batch, "validation")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on all module parameters."""
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r}; the learning rate must be a positive number.")
        return torch.optim.Adam(
            self.module.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
