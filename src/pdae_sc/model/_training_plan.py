"""Lightning training plan of the PDAE."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from pdae_sc.module import PDAEModule
from pdae_sc.module._batch_keys import BATCH_KEYS

__all__ = ["NonFiniteLossError", "PDAETrainingPlan"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a non-finite loss or gradient.

    Raised by :meth:`pdae_sc.model.PDAE.train` after training stopped; the model keeps the
    weights of the last finite step. A subclass of :class:`FloatingPointError`; its message
    says when it happened and what to try (a lower learning rate, log-normalised data).

    Examples
    --------
    A far too large learning rate makes the loss overflow after the first update:

    >>> import pdae_sc as pdae
    >>> issubclass(pdae.model.NonFiniteLossError, FloatingPointError)
    True
    >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=4)
    >>> try:
    ...     model.train(max_epochs=3, lr=1e30, enable_progress_bar=False)
    ... except pdae.model.NonFiniteLossError as error:
    ...     print("Lower the learning rate" in str(error))
    True
    >>> model.is_trained  # the finite first update was kept
    True
    """


def _fused_adam(module: torch.nn.Module) -> bool | None:
    """Adam's fused kernel where every parameter can use it (on the CPU or a CUDA GPU).

    One kernel for all parameters instead of a loop over them: on 2 CPU cores a default
    fit is 6-7% shorter (``benchmarks/results/fused_adam.md``). ``None`` on other devices:
    torch's default.
    """
    params = list(module.parameters())
    ok = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return True if ok and params else None


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class PDAETrainingPlan(pl.LightningModule):
    """Optimise a :class:`~pdae_sc.module.PDAEModule` with Adam.

    Logs ``train_loss`` / ``validation_loss`` and each loss term per epoch (they end up in
    ``model.history``). A non-finite loss (or gradient) skips the optimiser step, so the
    weights stay at their last finite values, stops training after the current step and is
    kept in :attr:`nonfinite_error`, which :meth:`pdae_sc.model.PDAE.train` raises once
    Lightning has shut down cleanly. Under data-parallel training (``strategy="ddp"``) the
    decision is taken jointly by all processes, so they stop together.

    Mixed precision comes from Lightning (``model.train(precision="bf16-mixed")`` or
    ``"16-mixed"``); the pairwise distances of the losses stay in float32. With
    ``"16-mixed"`` an overflowing gradient is left to Lightning's gradient scaler (the step
    is skipped and the scale lowered) instead of stopping training.

    Parameters
    ----------
    module
        The module to train.
    lr
        Adam learning rate (the peak of the schedule).
    weight_decay
        Adam weight decay.
    compile
        Run the module's loss through :func:`torch.compile` (compiled lazily, in each
        process, on the first step); a dict is passed to :func:`torch.compile` (e.g.
        ``{"mode": "reduce-overhead"}`` for CUDA graphs on a GPU). Off by default: see
        ``benchmarks/results/speed.md`` for when it pays off.
    lr_schedule
        ``"cosine"`` (default): the learning rate decays from ``lr`` to ``lr / 100`` along a
        cosine over the steps of the run (Lightning's ``estimated_stepping_batches``), so
        the last steps refine instead of jittering. ``"constant"``: ``lr`` throughout.

    Attributes
    ----------
    nonfinite_error
        The :class:`NonFiniteLossError` that stopped training, or ``None``.
    n_updates
        Optimiser updates made (steps with a finite loss and finite gradients).

    Examples
    --------
    :meth:`pdae_sc.model.PDAE.train` builds the plan; ``plan_kwargs`` passes options to it:

    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=4)
    >>> model.train(max_epochs=1, enable_progress_bar=False, plan_kwargs={"weight_decay": 1e-4})
    >>> plan = model.trainer.lightning_module
    >>> type(plan).__name__, plan.weight_decay, plan.n_updates > 0, plan.nonfinite_error
    ('PDAETrainingPlan', 0.0001, True, None)
    >>> optim = plan.configure_optimizers()["optimizer"]
    >>> optim.defaults["lr"], optim.defaults["weight_decay"]
    (0.003, 0.0001)
    """

    def __init__(
        self,
        module: PDAEModule,
        *,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        compile: bool | dict = False,
        lr_schedule: str = "cosine",
    ):
        super().__init__()
        if not isinstance(compile, bool | dict):
            raise TypeError(f"compile={compile!r}; use True, False or a dict of options.")
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule={lr_schedule!r}; use 'constant' or 'cosine'.")
        self.lr_schedule = lr_schedule
        self.module = module
        self.lr = lr
        self.weight_decay = weight_decay
        self.compile = compile
        self._loss_fn = None
        self.nonfinite_error: NonFiniteLossError | None = None
        self._drop_update = False
        self._train_sums: torch.Tensor | None = None
        self._train_names: list[str] = []
        self._train_n = 0
        # A buffer, not an int: Lightning's spawn launchers (ddp_spawn, ddp_notebook) copy
        # the state dict of rank 0 back to the main process, and this count with it.
        self.register_buffer("_n_updates", torch.zeros((), dtype=torch.long))

    @property
    def n_updates(self) -> int:
        """Optimiser updates made (steps with a finite loss and finite gradients)."""
        return int(self._n_updates.item())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Accept checkpoints written before the update counter was part of the state."""
        state = checkpoint.get("state_dict", {})
        state.setdefault("_n_updates", torch.zeros((), dtype=torch.long))

    def loss(self, batch: dict[str, torch.Tensor]):
        """The module's :class:`~pdae_sc.module.PDAELoss` of a batch (compiled if asked).

        Parameters
        ----------
        batch
            A training batch, as passed to :meth:`~pdae_sc.module.PDAEModule.forward`:
            ``x_anchor``, ``label_anchor``, ``x_source`` and ``label_source`` for the grouped
            estimator, ``x`` and ``label`` for the all-pairs one.

        Returns
        -------
        The :class:`~pdae_sc.module.PDAELoss`: the total loss and its terms, all scalars.

        Examples
        --------
        >>> import torch
        >>> import pdae_sc as pdae
        >>> _ = torch.manual_seed(0)
        >>> module = pdae.module.PDAEModule(5, 2, n_latent=3, n_hidden=(8,), n_noise=2)
        >>> plan = pdae.model.PDAETrainingPlan(module)
        >>> batch = {
        ...     "x_anchor": torch.randn(2, 4, 5),  # 2 conditions x 4 cells x 5 genes
        ...     "label_anchor": torch.eye(2),  # conditions P0 and P1
        ...     "x_source": torch.randn(6, 5),  # 6 control cells
        ...     "label_source": torch.zeros(6, 2),
        ... }
        >>> out = plan.loss(batch)
        >>> out.loss.shape, bool(torch.isfinite(out.loss)), sorted(out.terms())
        (torch.Size([]), True, ['energy', 'prior', 'reconstruction', 'sparsity'])
        """
        if self.compile is False:
            return self.module(batch)
        if self._loss_fn is None:
            options = {} if self.compile is True else self.compile
            self._loss_fn = torch.compile(self.module.forward, **options)
        return self._loss_fn(batch)

    @property
    def _distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        finite = bool(torch.isfinite(loss))
        if self._distributed:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        return finite

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
        out = self.loss(batch)
        if not self._finite_everywhere(out.loss):
            if torch.isfinite(out.loss):
                self._stop(f"The {split} loss became non-finite in another process")
            else:
                terms = ", ".join(f"{k}={v.item():.4g}" for k, v in out.terms().items())
                self._stop(f"The {split} loss became {out.loss.item()} (terms: {terms})")
            if not self._distributed:
                return None  # Lightning skips backward and the optimiser step
            # DDP needs a backward pass in every process: a zero loss, and no update.
            self._drop_update = True
            return sum((p * 0.0).sum() for p in self.module.parameters())
        grouped = BATCH_KEYS.X_ANCHOR in batch
        n = batch[BATCH_KEYS.X_ANCHOR if grouped else BATCH_KEYS.X].shape[0]
        if split == "train":
            # Summed here and logged once per epoch (on_train_epoch_end): a self.log call per
            # term and step cost about 15% of a CPU step. Same weighted mean as Lightning's.
            values = torch.stack([out.loss.detach(), *(v.detach() for v in out.terms().values())])
            if self._train_sums is None:
                self._train_sums, self._train_names = values * n, list(out.terms())
            else:
                self._train_sums = self._train_sums + values * n
            self._train_n += n
            return out.loss
        self._log_epoch(split, out.loss, out.terms(), n)
        return out.loss

    def _log_epoch(self, split: str, loss, terms: dict, n: int) -> None:
        sync = self._distributed
        self.log(
            f"{split}_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=n,
            sync_dist=sync,
        )
        for name, value in terms.items():
            self.log(
                f"{name}_{split}",
                value,
                on_step=False,
                on_epoch=True,
                batch_size=n,
                sync_dist=sync,
            )

    def on_train_epoch_start(self) -> None:
        """Reset the sums of the training metrics."""
        self._train_sums, self._train_n = None, 0

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training loss and terms (means weighted by batch size)."""
        if self._train_sums is None or self._train_n == 0:
            return
        means = self._train_sums / self._train_n
        self._log_epoch(
            "train",
            means[0],
            dict(zip(self._train_names, means[1:], strict=True)),
            self._train_n,
        )

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
        if self._drop_update:
            for p in params:
                p.grad = None
            return
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            self._n_updates += 1  # "16-mixed": the gradient scaler skips overflowing steps
            return
        if _all_finite([p.grad for p in params]):
            self._n_updates += 1
            return
        for p in params:
            p.grad = None  # Adam skips parameters without a gradient
        self._stop("The gradients became non-finite")

    def configure_optimizers(self):
        """Adam on all module parameters, with the learning-rate schedule (per step)."""
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r}; the learning rate must be a positive number.")
        optimizer = torch.optim.Adam(
            self.module.parameters(),
            lr=self.lr,
            weight_decay=self.weight_decay,
            fused=_fused_adam(self.module),
        )
        if self.lr_schedule == "constant":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total, eta_min=self.lr / 100
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step"},
        }
