"""Training of the PDAE model class (a mixin of :class:`pdae_sc.model.PDAE`)."""

from __future__ import annotations

import inspect
import math
import numbers
import os
import warnings
from typing import Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback

from pdae_sc.data._sampler import draw_validation_cells

from ._diagnostics import DiagnosticsMixin
from ._selection import (
    BaselineFavouredWarning,
    choose_method,
    held_out_mask,
    pick_held_out,
    score_held_out,
    wanted_count,
)
from ._trainer import ConvergenceStopping, GracefulInterrupt

__all__ = ["TrainingMixin"]

#: Default peak learning rate (with the cosine schedule of the training plan): the
#: generative decoder learns from nothing; the residual decoders start at the least-squares
#: fit and drift from it at a higher rate (benchmarks/results/real_data.md).
DEFAULT_LR = {"generative": 3e-3, "residual": 1e-3}


class TrainingMixin(DiagnosticsMixin):
    """:meth:`train` of :class:`~pdae_sc.model.PDAE` (it runs the fit check of the diagnostics)."""

    def train(
        self,
        max_epochs: int | None = None,
        *,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        lr: float | None = None,
        validation_size: float | None = None,
        early_stopping: bool | Literal["auto"] = False,
        early_stopping_patience: int = 10,
        n_conditions_per_batch: int = 16,
        n_cells_per_condition: int = 16,
        n_sources: int = 128,
        batch_size: int | None = None,
        enable_progress_bar: bool = True,
        check_fit: bool = True,
        held_out_conditions: int | Literal["auto"] = "auto",
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        ckpt_path: str | os.PathLike | None = None,
        **trainer_kwargs,
    ) -> None:
        """Train the PDAE with Lightning, on the GPU when there is one.

        Each step of the default (grouped) estimator draws ``n_conditions_per_batch``
        conditions of one context, ``n_cells_per_condition`` observed cells of each and
        ``n_sources`` source cells; an epoch has about one draw per training cell.

        Faults: a non-finite loss or gradient skips that update, stops training and raises
        :class:`~pdae_sc.model.NonFiniteLossError`; the model keeps the weights of the last
        finite step and the history so far, and counts as trained if any update was made.
        Ctrl+C (in the main thread) stops training after the current step with a warning and
        leaves a usable model; a second Ctrl+C aborts at once.

        Resuming: pass Lightning checkpoint callbacks, e.g.
        ``callbacks=[ModelCheckpoint(dirpath="ckpt", save_last=True)]``, then continue on a
        model built the same way with ``model.train(max_epochs=N, ckpt_path="ckpt/last.ckpt")``:
        weights, optimiser state and the epoch counter are restored, and training runs from
        the saved epoch up to ``N`` (the minibatch draws differ from an uninterrupted run).

        Speed and scale: on a GPU the expression matrix is kept on the device when it takes
        less than half of its free memory (else minibatches are gathered on the host and
        copied from pinned memory). Mixed precision: ``precision="bf16-mixed"`` (or
        ``"16-mixed"``); the losses' distances stay in float32. ``plan_kwargs={"compile":
        True}`` runs the loss through :func:`torch.compile`. Several GPUs:
        ``strategy="ddp", devices=N`` (in a script, which Lightning launches once per device;
        save on one process only, ``if model.trainer.is_global_zero: model.save(...)``), or
        ``strategy="ddp_notebook"`` in Jupyter (``"ddp_spawn"`` in a script with an
        ``if __name__ == "__main__":`` guard). Each process draws its own conditions, an
        epoch is shared between the processes, and scvi-tools switches early stopping off.
        See ``benchmarks/results/speed.md`` for what each option buys.

        Parameters
        ----------
        max_epochs
            Number of epochs (the cap with early stopping). Default: about 2,000 steps,
            between 10 and 400 epochs (about 4,000 steps when ``early_stopping="auto"``
            stops by convergence).
        accelerator, devices
            Lightning accelerator and devices (``"auto"`` picks a GPU when available).
        lr
            Peak Adam learning rate (default: ``3e-3`` for the generative decoder, ``1e-3``
            for the residual decoders, which start at the least-squares fit); it decays
            along a cosine to a hundredth of itself over the run
            (``plan_kwargs={"lr_schedule": "constant"}`` keeps it fixed).
        validation_size
            Fraction of each condition's cells held out to monitor ``validation_loss`` and
            ``energy_validation`` (default 0.1 with early stopping, else 0). A model trained
            before keeps its split (``model.validation_indices``), so training again or
            resuming never validates on cells already trained on: leave it unset (or give the
            same fraction) to keep it, or pass 0 to train on every cell.
        early_stopping
            ``False`` (default): train ``max_epochs``. ``"auto"``: with a residual decoder
            (the default for count data), stop when done: after every epoch the energy
            score of predictions for the held-out cells of the training conditions
            (``energy_validation``) is smoothed (moving average); training stops when it has
            not improved by 0.1% for 500 steps (not before step 500), and the weights of the
            best epoch are restored (:class:`~pdae_sc.model.ConvergenceStopping`). On the
            count simulation and the real screens of ``benchmarks/real_data.py`` this trains
            about 4× fewer steps at the same energy distance (counts, context transfer) or
            up to 0.011 worse (Datlinger knockout+stimulation), so it is not the default
            yet (``benchmarks/history/time_to_accuracy.md``). The generative decoder, whose
            held-out score levels off long before its accuracy does, trains ``max_epochs``
            under ``"auto"``, as it does without cells to hold out. ``True``: scvi-tools'
            rule, stop when ``validation_loss`` has not improved for
            ``early_stopping_patience`` epochs. ``model.training_stopped_`` and
            ``model.history["stopped"]`` say why training ended.
        early_stopping_patience
            Epochs without improvement before stopping (``early_stopping=True``).
        n_conditions_per_batch, n_cells_per_condition, n_sources
            Grouped batch layout ``G``, ``n``, ``S``.
        batch_size
            Cells per step of the all-pairs estimator (``PDAE(estimator="all_pairs")``;
            default 128). The default grouped estimator has no single batch size: its step
            holds ``n_conditions_per_batch * n_cells_per_condition`` observed cells and
            ``n_sources`` source cells, so ``batch_size`` with it raises ``ValueError``
            (it used to be ignored).
        enable_progress_bar
            Show a progress bar.
        check_fit
            After training, run :meth:`check_fit`: pick the default source set of
            :meth:`predict` (:attr:`default_source_`, every cell or the control cells,
            whichever is closer to the training conditions' measured cells) and warn with
            :class:`~pdae_sc.model.PoorFitWarning` when the moved cells are further from the
            measured cells than the unmoved control cells. ``False``: no check, and
            ``default_source_`` is ``"all"``.
        held_out_conditions
            Measured conditions kept out of the fit to decide how :meth:`predict` predicts
            (the user guide, "When PDAE falls back to a baseline"). ``"auto"`` (default):
            about a tenth of the perturbed (condition, context) groups with at least 50
            cells, 2 to 8, whose labels stay in the span of the rest: combinations first,
            then perturbations also measured in another context, spread over the range of
            effects (strong and weak). After training each is predicted by the model and by
            the ``linear``, ``additive``, ``mean_response``, ``pooled`` and ``control``
            baselines (fitted without them, every method from the same number of distinct
            cells) and scored by energy distance (``model.held_out_scores_``); the baseline
            with the lowest mean becomes ``model.prediction_method_``, the default of
            ``predict(method=...)``, when it is ahead of the model by more than one
            standard error of the per-condition differences (else ``"pdae"``), with a
            :class:`~pdae_sc.model.BaselineFavouredWarning` when it is a baseline. Their cells
            are validation cells (``model.validation_indices``; scored every epoch only
            when a stopping rule reads ``energy_validation``). A number: hold out
            that many. ``0``: train on every condition and always predict with the model.
            Not available (nothing held out) with doses or several ``context_keys``, or when
            no condition stays in the span; a model trained before keeps its held-out set.
        plan_kwargs
            Extra arguments of :class:`~pdae_sc.model.PDAETrainingPlan` (e.g. ``weight_decay``);
            an ``lr`` here is used when ``lr`` is left at its default, and a different
            explicit ``lr`` raises ``ValueError``.
        datasplitter_kwargs
            Extra arguments of the data splitter (``PDAE._data_splitter_cls``, by default
            ``pdae_sc.data._sampler.PerturbationDataSplitter``), as in scvi-tools: where the
            expression matrix is kept, ``{"data_device": "host"}`` (always gather on the
            host), ``"auto"`` or a torch device, and ``"max_memory_fraction"`` (the largest
            share of the free GPU memory a resident matrix may take, default 0.5). The split
            and batch layout are set by the arguments of ``train`` and cannot be given here.
        ckpt_path
            Lightning checkpoint (``.ckpt``) to resume from; ``max_epochs`` counts the epochs
            already done.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` / Lightning's ``Trainer`` (e.g.
            ``callbacks``, ``precision``, ``strategy``, ``max_time``).

        Returns
        -------
        ``None``; fills ``model.history`` (per-epoch losses) and sets ``model.is_trained``.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(max_epochs=2, lr=1e-3, enable_progress_bar=False)
        >>> model.is_trained_
        True
        >>> len(model.history["train_loss"])  # one row per epoch
        2

        With a validation split and early stopping (``validation_loss`` in the history):

        >>> model = pdae.model.PDAE(adata, n_latent=8)
        >>> model.train(
        ...     max_epochs=3, early_stopping=True, validation_size=0.2, enable_progress_bar=False
        ... )
        >>> "validation_loss" in model.history
        True
        """
        if max_epochs is not None and (
            not isinstance(max_epochs, int | np.integer)
            or isinstance(max_epochs, bool)
            or max_epochs < 1
        ):
            raise ValueError(f"max_epochs={max_epochs!r}; train for at least 1 epoch.")
        lr_given = lr is not None
        if lr is None:
            residual = bool(getattr(self.module, "residual", False))
            lr = DEFAULT_LR["residual" if residual else "generative"]
        if not (isinstance(lr, numbers.Real) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr={lr!r}; the learning rate must be a positive number.")
        if batch_size is not None and self.module.estimator != "all_pairs":
            raise ValueError(
                f"batch_size={batch_size!r} is used only by PDAE(estimator='all_pairs'); the "
                "default grouped estimator draws n_conditions_per_batch x "
                f"n_cells_per_condition observed cells (now {n_conditions_per_batch} x "
                f"{n_cells_per_condition}) and n_sources={n_sources} source cells per step. "
                "Set those instead (e.g. n_cells_per_condition=32), or build the model with "
                "estimator='all_pairs'."
            )
        if batch_size is None:
            batch_size = 128
        for name, value in [
            ("n_conditions_per_batch", n_conditions_per_batch),
            ("n_cells_per_condition", n_cells_per_condition),
            ("n_sources", n_sources),
            ("batch_size", batch_size),
        ]:
            if not isinstance(value, int | np.integer) or value < (
                2 if name == "n_sources" else 1
            ):
                raise ValueError(f"{name}={value!r}; use a positive integer (n_sources >= 2).")
        if early_stopping not in (True, False, "auto") or isinstance(early_stopping, np.bool_):
            raise ValueError(
                f"early_stopping={early_stopping!r}; use 'auto' (stop when converged), True "
                "(stop when validation_loss stops improving) or False (fixed length)."
            )
        # "auto" stops by convergence for the residual decoders, which start at the
        # least-squares (linear) model; the generative decoder starts from nothing, and its
        # held-out score levels off long before its accuracy does
        # (benchmarks/history/time_to_accuracy.md): it trains a fixed number of steps.
        converge = early_stopping == "auto" and bool(getattr(self.module, "residual", False))
        if validation_size is not None and not (
            isinstance(validation_size, numbers.Real) and 0 <= validation_size < 1
        ):
            raise ValueError(f"validation_size={validation_size!r}; use a fraction in [0, 1).")
        datasplitter_kwargs = _check_datasplitter_kwargs(
            datasplitter_kwargs, self._data_splitter_cls
        )
        wanted = wanted_count(held_out_conditions)
        enc, ctx_codes, ctx_names = self._encode(self.adata)
        recorded = held_out_mask(enc.codes, ctx_codes, self._held_out_groups(enc, ctx_names))
        split = self._previous_split(validation_size, enc.codes, recorded)
        fraction = validation_size
        if fraction is None:
            fraction = 0.1 if (early_stopping is True or converge) else 0.0
        seed = int(torch.randint(2**31 - 1, (1,)).item())
        split, held = self._split_with_held_out(
            split, recorded, fraction, wanted, enc, ctx_codes, ctx_names, seed
        )
        validation_size = fraction
        splitter = self._data_splitter_cls(
            self._matrix(self.adata),
            enc.codes,
            ctx_codes,
            enc.label_rows,
            estimator=self.module.estimator,
            validation_size=validation_size,
            n_conditions_per_batch=n_conditions_per_batch,
            n_cells_per_condition=n_cells_per_condition,
            n_sources=n_sources,
            batch_size=batch_size,
            seed=seed,
            split=split,
            **datasplitter_kwargs,
        )
        steps = splitter.steps_per_epoch
        callbacks = trainer_kwargs.get("callbacks") or []
        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        given = [c for c in callbacks if isinstance(c, ConvergenceStopping)]
        converge = (converge or bool(given)) and splitter.n_val > 0
        if max_epochs is None:
            max_epochs = _epochs_for_steps(steps, MAX_STEPS if converge else FIXED_STEPS)
        if early_stopping is True and splitter.n_val == 0:
            if validation_size == 0:
                raise ValueError(
                    "early_stopping needs held-out cells: set validation_size > 0 (e.g. 0.1)."
                )
            largest = int(enc.counts().max())
            raise ValueError(
                f"early_stopping needs held-out cells, but validation_size={validation_size!r} "
                "holds out none: a condition gives floor(validation_size * n_cells) cells to "
                f"validation and keeps at least 2 for training, and the largest condition has "
                f"{largest} cells. Use early_stopping=False, a larger validation_size, or more "
                "cells per condition."
            )
        plan_kwargs = dict(plan_kwargs or {})
        if "lr" in plan_kwargs and plan_kwargs["lr"] != lr and lr_given:
            raise ValueError(
                f"lr={lr!r} and plan_kwargs={{'lr': {plan_kwargs['lr']!r}}} disagree; give the "
                "learning rate once (train(lr=...))."
            )
        plan_kwargs = {"lr": lr, **plan_kwargs}  # plan_kwargs["lr"] wins over the default
        plan = self._training_plan_cls(self.module, **plan_kwargs)
        if early_stopping is True:
            trainer_kwargs.update(
                early_stopping=True,
                early_stopping_monitor="validation_loss",
                early_stopping_patience=early_stopping_patience,
            )
        if held and fraction == 0 and not converge and early_stopping is not True:
            # only the held-out conditions are validation cells and no stopping rule reads
            # them: they are scored once after training, not every epoch (which costs time)
            trainer_kwargs.setdefault("limit_val_batches", 0)
        if splitter.n_val > 0:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        if ckpt_path is not None:
            if not os.path.isfile(ckpt_path):
                raise FileNotFoundError(
                    f"ckpt_path={str(ckpt_path)!r} is not a file; pass a .ckpt written by a "
                    "Lightning ModelCheckpoint callback (e.g. 'dirpath/last.ckpt')."
                )
            trainer_kwargs["ckpt_path"] = os.fspath(ckpt_path)
        interrupt = GracefulInterrupt()
        convergence = given[0] if given else None
        if convergence is None and converge:
            convergence = ConvergenceStopping(**CONVERGENCE)
            callbacks = [*callbacks, convergence]
        trainer_kwargs["callbacks"] = [*callbacks, interrupt]
        was_trained = self.is_trained_
        runner = self._train_runner_cls(
            self,
            training_plan=plan,
            data_splitter=splitter,
            max_epochs=int(max_epochs),
            accelerator=accelerator,
            devices=devices,
            enable_progress_bar=enable_progress_bar,
            **trainer_kwargs,
        )
        try:
            with interrupt.installed(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*`training_step` returned `None`")
                runner()
        except SystemExit as exc:  # Lightning exits on KeyboardInterrupt; undo that
            if not runner.trainer.interrupted:
                raise
            self._finish_training(was_trained, plan, splitter)
            raise KeyboardInterrupt(
                "Training was aborted; the model keeps the weights of the last step."
            ) from exc
        self._finish_training(was_trained, plan, splitter)
        self._record_stop(
            plan, interrupt, convergence, early_stopping, splitter, runner.trainer, max_epochs
        )
        if plan.nonfinite_error is not None:
            raise plan.nonfinite_error
        if check_fit and self.is_trained_ and interrupt.stopped_epoch is None:
            self._check_after_training()
        else:
            self.default_source_ = "all"
        self._choose_prediction_method(held if interrupt.stopped_epoch is None else [])
        if interrupt.stopped_epoch is not None:
            warnings.warn(
                f"Training was interrupted during epoch {interrupt.stopped_epoch + 1} of "
                f"{int(max_epochs)}; the model keeps the weights of the last step and "
                "model.history the epochs run so far.",
                UserWarning,
                stacklevel=2,
            )

    def _split_with_held_out(
        self, split, recorded, fraction, wanted, enc, ctx_codes, ctx_names, seed: int
    ):
        """The training split with the held-out conditions' cells among the validation cells.

        A fresh model picks its held-out groups; a model trained before keeps its own (or,
        with ``held_out_conditions=0``, trains on them from now on). ``split``: the earlier
        split of the other cells (:meth:`_previous_split`) or ``None`` for a new one;
        ``recorded``: the cells of the groups held out before. Records the groups in
        ``held_out_conditions_``; returns the split (``None``: the splitter draws one) and
        the groups.
        """
        labels = self._labels
        if self.train_indices is None:  # a fresh model
            held = []
            if wanted != 0 and labels.dosage_key is None and len(labels.context_keys) <= 1:
                rng = np.random.default_rng([seed, 2])
                held = pick_held_out(
                    enc.label_rows,
                    enc.codes,
                    ctx_codes,
                    wanted,
                    rng,
                    matrix=self._matrix(self.adata),
                )
        else:
            held = self._held_out_groups(enc, ctx_names) if wanted != 0 else []
        self.held_out_conditions_ = [[enc.conditions[c], ctx_names[k]] for c, k in held]
        mask = held_out_mask(enc.codes, ctx_codes, held)
        if split is None:
            if not held:
                return None, held
            rest = np.flatnonzero(~mask)
            rng = np.random.default_rng([seed, 1])
            drawn = rest[draw_validation_cells(enc.codes[rest], fraction, rng)]
            val = np.union1d(np.flatnonzero(mask), drawn)
            return (np.setdiff1d(np.arange(len(enc.codes)), val), val), held
        train, val = split
        train = np.union1d(train, np.flatnonzero(recorded & ~mask))
        return (train, np.union1d(val, np.flatnonzero(mask))), held

    def _held_out_groups(self, enc, ctx_names) -> list[tuple[int, int]]:
        """``held_out_conditions_`` as (condition code, context code) pairs."""
        names = getattr(self, "held_out_conditions_", None) or []
        code_of = {name: i for i, name in enumerate(enc.conditions)}
        return [
            (code_of[c], ctx_names.index(k)) for c, k in names if c in code_of and k in ctx_names
        ]

    def _choose_prediction_method(self, held: list[tuple[int, int]]) -> None:
        """Score the held-out groups and set ``prediction_method_`` (``"pdae"`` without any)."""
        self.prediction_method_ = "pdae"
        self.held_out_scores_ = None
        if not held or not self.is_trained_:
            return
        scores = score_held_out(self, held, seed=0)
        self.held_out_scores_ = scores
        self.prediction_method_ = choose_method(scores)
        if self.prediction_method_ != "pdae":
            means = scores[["pdae", self.prediction_method_]].mean()
            warnings.warn(
                f"On {len(scores)} measured conditions held out of training, the "
                f"{self.prediction_method_!r} baseline (energy distance "
                f"{means[self.prediction_method_]:.4f}) was closer to the measured cells than "
                f"PDAE ({means['pdae']:.4f}), so predict() returns its cells "
                f"(model.prediction_method_; scores in model.held_out_scores_). Pass "
                "predict(..., method='pdae') for the model's own cells.",
                BaselineFavouredWarning,
                stacklevel=3,
            )

    def _previous_split(
        self, validation_size: float | None, codes: np.ndarray, recorded: np.ndarray
    ):
        """The split of an earlier training to keep, or ``None`` to draw a new one.

        Cells held out before stay held out, so training again (or resuming) never
        validates on cells already trained on. ``validation_size=0`` trains on every cell
        (nothing is validated); a different explicit fraction raises ``ValueError``. The
        cells of held-out conditions (``recorded``) are left out of the returned split and
        of these rules (:meth:`_split_with_held_out` places them).
        """
        train, val = self.train_indices, self.validation_indices
        if train is None or val is None or len(train) + len(val) != len(codes):
            return None
        train, val = np.asarray(train), np.asarray(val)
        train, val = train[~recorded[train]], val[~recorded[val]]
        codes = np.asarray(codes)[~recorded]
        if validation_size == 0 or (len(val) == 0 and not validation_size):
            return None
        if len(val) == 0:
            if self.is_trained_:
                warnings.warn(
                    "The model was trained on every cell before (no validation split), so the "
                    f"validation cells drawn now (validation_size={validation_size!r}) were "
                    "trained on and validation_loss is optimistic. Build a new model to "
                    "validate on unseen cells.",
                    UserWarning,
                    stacklevel=3,
                )
            return None
        if validation_size is not None:
            expected = _validation_count(codes, validation_size)
            if expected != len(val):
                raise ValueError(
                    f"validation_size={validation_size!r} would hold out {expected} cells of the "
                    f"training conditions, but the model already holds out {len(val)} of them "
                    "(model.validation_indices, besides the cells of held_out_conditions_) "
                    "from an earlier training; a new split would validate on cells trained on. "
                    "Leave "
                    "validation_size unset to keep the split, pass validation_size=0 to train "
                    "on every cell, or build a new model."
                )
        return train, val

    def _finish_training(self, was_trained: bool, plan, splitter) -> None:
        """Leave a usable model after training ended, normally or after a fault."""
        self.train_indices, self.validation_indices = splitter.train_idx, splitter.val_idx
        self.module.eval()
        self.is_trained_ = bool(was_trained or plan.n_updates > 0)

    def _record_stop(
        self, plan, interrupt, convergence, early_stopping, splitter, trainer, max_epochs
    ) -> None:
        """Say in ``training_stopped_`` and ``history["stopped"]`` why training ended."""
        epochs = int(trainer.current_epoch)
        if plan.nonfinite_error is not None:
            reason = "non-finite loss"
        elif interrupt.stopped_epoch is not None:
            reason = "interrupted"
        elif convergence is not None:
            reason = convergence.reason or "max_epochs"
            if convergence.best_epoch is not None and convergence.restore_best:
                reason += f"; weights of epoch {convergence.best_epoch + 1} restored"
        elif early_stopping is True and epochs < int(max_epochs):
            reason = "early stopping: validation_loss stopped improving"
        elif early_stopping == "auto" and getattr(self.module, "residual", False):
            reason = (
                "max_epochs (no held-out cells to judge convergence: every condition is too "
                "small for validation_size)"
            )
        else:
            reason = "max_epochs"
        self.training_stopped_ = reason
        history = getattr(self, "history_", None)
        if isinstance(history, dict):
            history["stopped"] = pd.DataFrame(
                {"reason": [reason]}, index=pd.Index([epochs], name="epoch")
            )


# Default training length: with a validation split, training stops when the smoothed
# held-out energy score has converged (at most MAX_STEPS steps); without one it runs about
# FIXED_STEPS steps. See benchmarks/history/time_to_accuracy.md for how these were chosen.
FIXED_STEPS = 2000
MAX_STEPS = 4000
CONVERGENCE = {"patience_steps": 500, "min_steps": 500, "min_delta": 1e-3, "smoothing": 0.3}


#: Splitter arguments that ``train`` sets itself (its own argument, if it has one).
_SPLITTER_SET_BY_TRAIN = {
    "matrix": None,
    "codes": None,
    "contexts": None,
    "label_table": None,
    "estimator": "PDAE(estimator=...)",
    "validation_size": "validation_size",
    "n_conditions_per_batch": "n_conditions_per_batch",
    "n_cells_per_condition": "n_cells_per_condition",
    "n_sources": "n_sources",
    "batch_size": "batch_size",
    "seed": "scvi.settings.seed",
    "split": "validation_size (the split of an earlier training is kept)",
}


def _check_datasplitter_kwargs(kwargs: dict | None, splitter_cls) -> dict:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise TypeError(
            f"datasplitter_kwargs={kwargs!r}; pass a dict, e.g. {{'data_device': 'host'}}."
        )
    taken = [k for k in kwargs if k in _SPLITTER_SET_BY_TRAIN]
    if taken:
        hints = [f"{k!r} (use {_SPLITTER_SET_BY_TRAIN[k]})" for k in taken]
        raise ValueError(
            f"datasplitter_kwargs sets {', '.join(hints)}, which train() sets itself; "
            "datasplitter_kwargs takes 'data_device' and 'max_memory_fraction'."
        )
    accepted = [
        k for k in inspect.signature(splitter_cls).parameters if k not in _SPLITTER_SET_BY_TRAIN
    ]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise TypeError(
            f"datasplitter_kwargs has unknown arguments {unknown}; "
            f"{splitter_cls.__name__} accepts {accepted}."
        )
    return dict(kwargs)


def _validation_count(codes: np.ndarray, validation_size: float) -> int:
    """Cells a fresh split with ``validation_size`` holds out (as the data splitter draws)."""
    sizes = np.unique(np.asarray(codes), return_counts=True)[1]
    return int(np.maximum(np.minimum(np.floor(validation_size * sizes), sizes - 2), 0).sum())


def _epochs_for_steps(steps_per_epoch: int, target_steps: int = FIXED_STEPS) -> int:
    return int(min(400, max(10, math.ceil(target_steps / max(1, steps_per_epoch)))))
