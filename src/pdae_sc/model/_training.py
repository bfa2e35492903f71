"""Training of the PDAE model class (a mixin of :class:`pdae_sc.model.PDAE`)."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Literal

import numpy as np
import pandas as pd
import torch

from pdae_sc.data._validation import check_positive_int

from ._arguments import check_batch_layout
from ._diagnostics import check_after_training
from ._held_out_checkpoints import HeldOutCheckpoints
from ._selection import choose_prediction_method, held_out_mask, wanted_count
from ._split import check_datasplitter_kwargs, held_out_groups, previous_split, split_with_held_out
from ._trainer import (
    ConvergenceStopping,
    GracefulInterrupt,
    set_validation_and_stopping,
    user_callbacks,
)

__all__ = ["TrainingMixin"]

#: Default peak learning rate (with the cosine schedule of the training plan): the
#: generative decoder learns from nothing; the residual decoders start at the least-squares
#: fit and drift from it at a higher rate (benchmarks/results/real_data.md).
DEFAULT_LR = {"generative": 3e-3, "residual": 1e-3}


class TrainingMixin:
    """:meth:`train` of :class:`~pdae_sc.model.PDAE`.

    Uses the model's ``registration`` and ``module``; after training, the fit check
    (:func:`~pdae_sc.model._diagnostics.check_after_training`) and the held-out choice.
    """

    def train(
        self,
        max_epochs: int | None = None,
        *,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        lr: float | None = None,
        validation_size: float | None = None,
        early_stopping: bool | Literal["auto", "held_out"] = "held_out",
        early_stopping_patience: int = 10,
        n_conditions_per_batch: int = 16,
        n_cells_per_condition: int = 16,
        n_sources: int = 64,
        n_source_conditions: int | Literal["auto"] | None = "auto",
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
        ``benchmarks/results/speed.md`` says what each option buys.

        Parameters
        ----------
        max_epochs
            Number of epochs (the cap with early stopping). Default: about 3,000 steps,
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
            ``"held_out"`` (default): train ``max_epochs`` and keep the weights that
            predict the held-out conditions best. At every twelfth of the run (at least
            100 steps apart) the network predicts the conditions held out of training
            (``held_out_conditions``) from the control cells and from every cell and is
            scored by energy distance (``model.held_out_checks_``). After training the
            last weights are scored from the default source set, and the best check takes
            their place when it is closer by more than one standard error of the
            per-condition differences (``training_stopped_`` then says "weights of step N
            restored"). From half of the run on, training stops at a check when, from both
            source sets, the rest of the run would have to gain more than the run so far
            has to change what is kept: the best check is clearly behind a simple baseline
            (which will then be the default prediction), or the last check clearly worse
            than the best, by more than the network gained from its first check to its best
            (behind a baseline: by any amount once the second half of the run so far made
            no new best; ``training_stopped_`` says "early stopping at step N ...").
            Without held-out conditions, as ``False``. ``False``: train
            ``max_epochs``, keep the last weights. ``"auto"``: with a residual decoder
            (the default for count data), stop when done: after every epoch the energy
            score of predictions for the held-out cells of the training conditions
            (``energy_validation``) is smoothed (moving average); training stops when it has
            not improved by 0.1% for 500 steps (not before step 500), and the weights of the
            best epoch are restored (:class:`~pdae_sc.model.ConvergenceStopping`). It trains
            fewer steps, at a cost in accuracy on some screens (the user guide, "How long to
            train"), so it is not the default. The generative decoder, whose
            held-out score levels off long before its accuracy does, trains ``max_epochs``
            under ``"auto"``, as it does without cells to hold out. ``True``: scvi-tools'
            rule, stop when ``validation_loss`` has not improved for
            ``early_stopping_patience`` epochs. ``model.training_stopped_`` and
            ``model.history["stopped"]`` say why training ended.
        early_stopping_patience
            Epochs without improvement before stopping (``early_stopping=True``).
        n_conditions_per_batch, n_cells_per_condition, n_sources
            Grouped batch layout ``G``, ``n``, ``S``.
        n_source_conditions
            The ``S`` source cells of a step come in this many blocks of one condition each
            (``S / n_source_conditions`` cells, at least 2), and each block's moved cells are
            scored on their own, so the cells of every condition, the control cells
            included, learn to predict every target. ``None``: one mixed draw of the
            context's cells, scored together, which can be right on average over conditions
            while the control cells are moved wrongly. ``"auto"`` (default): 4 for the
            generative decoder, whose cells are made from the basal latent alone (trained on
            a mix, its predictions from the control cells were far off), ``None`` for the
            residual decoders, which carry the source cell over (a mix kept their
            cross-validated accuracy on Papalexi 2021, blocks lost it;
            ``benchmarks/results/source_blocks.md``).
        batch_size
            Cells per step of the all-pairs estimator (``PDAE(estimator="all_pairs")``;
            default 128). The default grouped estimator has no single batch size: its step
            holds ``n_conditions_per_batch * n_cells_per_condition`` observed cells and
            ``n_sources`` source cells, so ``batch_size`` with it raises ``ValueError``.
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
            effects (strong and weak). After training each is predicted by the model (its
            last weights, before any restored by ``early_stopping="held_out"``: the best
            check was picked on these conditions, so its score there is optimistic) and by
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
        lr_given = lr is not None
        layout = dict(  # the batch layout, under the splitter's argument names
            n_conditions_per_batch=n_conditions_per_batch, n_sources=n_sources,
            n_cells_per_condition=n_cells_per_condition, batch_size=batch_size,
            n_source_conditions=n_source_conditions,
        )  # fmt: skip
        lr = self._check_training_arguments(
            max_epochs, lr, early_stopping, validation_size, layout
        )
        # "auto" stops by convergence for the residual decoders, which start at the
        # least-squares (linear) model; the generative decoder starts from nothing, and its
        # held-out score levels off long before its accuracy does
        # (benchmarks/history/time_to_accuracy.md): it trains a fixed number of steps.
        converge = early_stopping == "auto" and bool(getattr(self.module, "residual", False))
        fraction = validation_size
        if fraction is None:
            fraction = 0.1 if (early_stopping is True or converge) else 0.0
        splitter, held = self._splitter(
            validation_size, fraction, held_out_conditions, layout, datasplitter_kwargs
        )
        callbacks, given = user_callbacks(trainer_kwargs)
        converge = (converge or bool(given)) and splitter.n_val > 0
        if max_epochs is None:
            max_epochs = _epochs_for_steps(
                splitter.steps_per_epoch, MAX_STEPS if converge else FIXED_STEPS
            )
        if early_stopping is True and splitter.n_val == 0:
            raise _no_validation_cells(fraction, self.registration.cells.encoded.counts())
        plan = self._training_plan(lr, lr_given, plan_kwargs)
        interrupt, convergence = GracefulInterrupt(), given[0] if given else None
        if convergence is None and converge:
            convergence = ConvergenceStopping(**CONVERGENCE)
            callbacks = [*callbacks, convergence]
        checkpoints = HeldOutCheckpoints.for_run(self, held, early_stopping, convergence)
        trainer_kwargs["callbacks"] = [*callbacks, *filter(None, [checkpoints]), interrupt]
        only_held_out = bool(held) and fraction == 0 and not converge
        set_validation_and_stopping(
            trainer_kwargs,
            early_stopping,
            early_stopping_patience,
            only_held_out,
            splitter.n_val,
            ckpt_path,
        )
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
        self._run(runner, plan, splitter, interrupt)
        self._record_stop(
            plan, interrupt, convergence, early_stopping, checkpoints, runner.trainer, max_epochs
        )
        if plan.nonfinite_error is not None:
            raise plan.nonfinite_error
        self._after_training(check_fit, held, interrupt, max_epochs, checkpoints)

    def _check_training_arguments(
        self, max_epochs, lr, early_stopping, validation_size, layout: dict
    ) -> float:
        """Refuse bad arguments of :meth:`train`; the learning rate to use.

        ``layout``: the batch layout (:func:`~pdae_sc.model._arguments.check_batch_layout`);
        its ``batch_size`` is set to its default (128).
        """
        residual = bool(getattr(self.module, "residual", False))
        check_batch_layout(layout, self.module.estimator, residual)
        if max_epochs is not None:
            check_positive_int(max_epochs, "max_epochs")
        if lr is None:
            lr = DEFAULT_LR["residual" if residual else "generative"]
        if not (isinstance(lr, numbers.Real) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr={lr!r}; the learning rate must be a positive number.")
        if early_stopping not in (True, False, "auto", "held_out") or isinstance(
            early_stopping, np.bool_
        ):
            raise ValueError(
                f"early_stopping={early_stopping!r}; use 'held_out' (keep the weights that "
                "predict the held-out conditions best), 'auto' (stop when converged), True "
                "(stop when validation_loss stops improving) or False (fixed length)."
            )
        if validation_size is not None and not (
            isinstance(validation_size, numbers.Real) and 0 <= validation_size < 1
        ):
            raise ValueError(f"validation_size={validation_size!r}; use a fraction in [0, 1).")
        return lr

    def _splitter(self, validation_size, fraction, held_out, layout, datasplitter_kwargs):
        """The data splitter of a training run, and the held-out (condition, context) groups.

        A model trained before keeps its split (:meth:`_previous_split`); the cells of the
        held-out conditions are validation cells (:meth:`_split_with_held_out`).
        """
        kwargs = check_datasplitter_kwargs(datasplitter_kwargs, self._data_splitter_cls)
        wanted = wanted_count(held_out)
        cells = self.registration.cells
        enc, ctx_codes = cells.encoded, cells.context_codes
        recorded = held_out_mask(enc.codes, ctx_codes, held_out_groups(self, cells))
        split = previous_split(self, validation_size, enc.codes, recorded)
        seed = int(torch.randint(2**31 - 1, (1,)).item())
        split, held = split_with_held_out(self, split, recorded, fraction, wanted, cells, seed)
        splitter = self._data_splitter_cls(
            self.registration.matrix,
            enc.codes,
            ctx_codes,
            enc.label_rows,
            estimator=self.module.estimator,
            validation_size=fraction,
            seed=seed,
            split=split,
            **layout,
            **kwargs,
        )
        return splitter, held

    def _training_plan(self, lr: float, lr_given: bool, plan_kwargs: dict | None):
        """The training plan with learning rate ``lr`` (``plan_kwargs["lr"]`` if not given)."""
        plan_kwargs = dict(plan_kwargs or {})
        if "lr" in plan_kwargs and plan_kwargs["lr"] != lr and lr_given:
            raise ValueError(
                f"lr={lr!r} and plan_kwargs={{'lr': {plan_kwargs['lr']!r}}} disagree; give the "
                "learning rate once (train(lr=...))."
            )
        plan_kwargs = {"lr": lr, **plan_kwargs}  # plan_kwargs["lr"] wins over the default
        return self._training_plan_cls(self.module, **plan_kwargs)

    def _run(self, runner, plan, splitter, interrupt) -> None:
        """Run the trainer; after Ctrl+C or a fault, leave a usable model."""
        was_trained = self.is_trained_
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

    def _after_training(self, check_fit: bool, held, interrupt, max_epochs, checkpoints) -> None:
        """The fit check (default source set), the held-out choice, the best weights, warnings.

        The choice between the network and the simple baselines is made on the last
        weights: the best of the checks during training was picked on the same held-out
        conditions, so its score there is optimistic. When a check (``checkpoints``) was
        clearly closer to the held-out conditions than the last weights, the module then
        gets its weights back (for ``predict(method="pdae")`` and wherever the network is
        the choice) and the fit check runs again on them; only the second check's warnings
        are shown.
        """
        completed = interrupt.stopped_epoch is None
        self.default_source_ = "all"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if check_fit and self.is_trained_ and completed:
                check_after_training(self)
        choose_prediction_method(self, held if completed else [])
        if completed and checkpoints is not None and checkpoints.restore_if_clearly_better():
            self._note_restored(checkpoints.restored_step)
            if check_fit:
                check_after_training(self)
        else:
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if checkpoints is not None:
            self.held_out_checks_ = checkpoints.checks  # the last weights' score included
        if interrupt.stopped_epoch is not None:
            warnings.warn(
                f"Training was interrupted during epoch {interrupt.stopped_epoch + 1} of "
                f"{int(max_epochs)}; the model keeps the weights of the last step and "
                "model.history the epochs run so far.",
                UserWarning,
                stacklevel=3,
            )

    def _note_restored(self, step: int) -> None:
        """Add to ``training_stopped_`` that the weights of check ``step`` were restored."""
        self.training_stopped_ += (
            f"; weights of step {step} restored (clearly closer on the held-out conditions)"
        )
        history = getattr(self, "history_", None)
        if isinstance(history, dict) and "stopped" in history:
            history["stopped"]["reason"] = self.training_stopped_

    def _finish_training(self, was_trained: bool, plan, splitter) -> None:
        """Leave a usable model after training ended, normally or after a fault."""
        self.train_indices, self.validation_indices = splitter.train_idx, splitter.val_idx
        self.module.eval()
        self.is_trained_ = bool(was_trained or plan.n_updates > 0)

    def _record_stop(
        self, plan, interrupt, convergence, early_stopping, checkpoints, trainer, max_epochs
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
        elif checkpoints is not None and checkpoints.stopped is not None:
            reason = f"early stopping {checkpoints.stopped}"
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
# FIXED_STEPS steps. benchmarks/history/time_to_accuracy.md records how the rule was chosen;
# FIXED_STEPS went from 2,000 to 3,000 when the default n_sources went from 128 to 64, at the
# same time per fit (benchmarks/results/training_layout.md).
FIXED_STEPS = 3000
MAX_STEPS = 4000
CONVERGENCE = {"patience_steps": 500, "min_steps": 500, "min_delta": 1e-3, "smoothing": 0.3}


def _epochs_for_steps(steps_per_epoch: int, target_steps: int = FIXED_STEPS) -> int:
    return int(min(400, max(10, math.ceil(target_steps / max(1, steps_per_epoch)))))


def _no_validation_cells(fraction: float, condition_counts: np.ndarray) -> ValueError:
    """The error of ``early_stopping=True`` when no cell is held out for validation."""
    if fraction == 0:
        return ValueError(
            "early_stopping needs held-out cells: set validation_size > 0 (e.g. 0.1)."
        )
    return ValueError(
        f"early_stopping needs held-out cells, but validation_size={fraction!r} "
        "holds out none: a condition gives floor(validation_size * n_cells) cells to "
        f"validation and keeps at least 2 for training, and the largest condition has "
        f"{int(condition_counts.max())} cells. Use early_stopping=False, a larger "
        "validation_size, or more cells per condition."
    )
