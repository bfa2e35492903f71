"""Held-out accuracy against training wall time, for several training settings.

Every ``--every`` epochs a callback pauses the clock, predicts the task's held-out
conditions and scores them (energy distance, :func:`pdae_sc.tl.evaluate`); the curve is
held-out energy distance against the training time spent so far (evaluation excluded). Each
setting also records when and why its own stopping rule ended training and the held-out
accuracy at that point, so a stopping rule can be judged by the accuracy it leaves.

Settings (``--settings``):

- ``default``: ``model.train()`` with the package defaults (about 2,000 steps);
- ``auto``: ``early_stopping="auto"`` (stops by convergence with a residual decoder);
- ``fixed_4000``: about 4,000 steps (the default before 0.2);
- ``all_pairs``: the authors' all-pairs estimator, ``batch_size=128``, 30 epochs;
- ``lr3e-3``: the default with ``lr=3e-3``;
- ``trace``: 6,000 steps with a validation split (the data for judging a stopping rule).

Tasks (``--tasks``): those of ``_tasks.py`` plus ``clean_paper`` (the paper-style clean
simulation, ~7,000 cells × 100 genes) and scale rows ``clean_5k_2000g``, ``clean_50k_100g``.

    python benchmarks/time_to_accuracy.py --tasks clean_paper counts datlinger_combo \
        --settings default auto all_pairs --out benchmarks/results

Writes ``time_to_accuracy.csv`` (curves) and ``time_to_accuracy.md`` (table) under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import scvi
import torch
from _tasks import TASKS, Task, _split, baselines, protocol_cells, score

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def clean_paper(seed: int = 0, n_genes: int = 100, n_cells_per_condition: int = 100) -> Task:
    """Paper-style clean simulation: 10 perturbations, all singles and doubles, ~7,000 cells."""
    adata = pdae.data.simulate(
        n_perturbations=10,
        n_genes=n_genes,
        n_cells_per_condition=n_cells_per_condition,
        seed=seed,
    )
    split = pdae.data.split_perturbations(adata, holdout="doubles", n_holdout=10, seed=seed)
    held = sorted(adata.obs["perturbation"][split == "test"].astype(str).unique())
    train, test = _split(adata, held)
    return Task("clean_paper", train, test, held)


EXTRA = {
    "clean_paper": lambda seed=0: clean_paper(seed),
    "clean_5k_2000g": lambda seed=0: clean_paper(seed, n_genes=2000, n_cells_per_condition=90),
    "clean_50k_100g": lambda seed=0: clean_paper(seed, n_cells_per_condition=900),
}

SETTINGS = {
    "default": ({}, {}),
    "auto": ({}, {"early_stopping": "auto"}),
    "fixed_4000": ({}, {"max_epochs": "steps:4000"}),
    "all_pairs": ({"estimator": "all_pairs"}, {"max_epochs": 30}),
    "lr3e-3": ({}, {"lr": 3e-3}),
    # long run with a validation split: the data for choosing a stopping rule
    "trace": ({}, {"max_epochs": "steps:6000", "validation_size": 0.1}),
}


class Tracker(pl.Callback):
    """Score the held-out conditions every ``every`` epochs with the training clock paused."""

    def __init__(self, model, task: Task, every: int, seed: int, verbose: bool = False):
        self.model, self.task, self.every, self.seed = model, task, every, seed
        self.verbose = verbose
        self.rows: list[dict] = []
        self.train_s = 0.0
        self._t0 = None

    def on_train_epoch_start(self, trainer, plan) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, plan) -> None:
        self.train_s += time.perf_counter() - self._t0
        epoch = trainer.current_epoch + 1
        if epoch % self.every == 0 or epoch == 1:
            row = self.evaluate(epoch, trainer.global_step)
            for key in ("energy_validation", "validation_loss", "train_loss"):
                if key in trainer.callback_metrics:
                    row[key] = float(trainer.callback_metrics[key])
            self.rows.append(row)
            if self.verbose:
                print(
                    f"  epoch {epoch} step {row['step']} {row['train_s']:.0f} s "
                    f"ED {row['energy_distance']:.4f} "
                    f"val {row.get('energy_validation', float('nan')):.4f}",
                    flush=True,
                )

    def on_validation_epoch_start(self, trainer, plan) -> None:
        self._tv = time.perf_counter()

    def on_validation_epoch_end(self, trainer, plan) -> None:
        self.train_s += time.perf_counter() - self._tv  # validation is part of training

    def evaluate(self, epoch: int, step: int) -> dict:
        was_training = self.model.module.training
        trained = self.model.is_trained_
        self.model.module.eval()
        self.model.is_trained_ = True
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = self.model.predict(
                self.task.targets,
                n_cells=protocol_cells(self.task),
                context=self.task.context,
                seed=self.seed,
            )
        self.model.is_trained_ = trained
        self.model.module.train(was_training)
        ed = float(score(self.task, pred, seed=self.seed)["energy_distance"].mean())
        return {"epoch": epoch, "step": step, "train_s": self.train_s, "energy_distance": ed}


def _resolve_epochs(value, steps_per_epoch: int):
    if isinstance(value, str) and value.startswith("steps:"):
        return int(min(1000, max(10, np.ceil(int(value[6:]) / steps_per_epoch))))
    return value


def load_task(task_name: str, seed: int) -> Task:
    return (EXTRA.get(task_name) or TASKS[task_name])(seed=seed)


def run(
    task_name: str,
    task: Task,
    setting: str,
    seed: int,
    every: int,
    verbose: bool = False,
    max_time: float | None = None,
) -> tuple[pd.DataFrame, dict]:
    model_kwargs, train_kwargs = SETTINGS[setting]
    train_kwargs = dict(train_kwargs)
    if max_time is not None:  # Lightning's wall-clock cap (the paused scoring counts too)
        train_kwargs["max_time"] = {"seconds": max_time}
    scvi.settings.seed = seed
    adata = task.train.copy()
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", **task.setup)
    model = pdae.model.PDAE(adata, **model_kwargs)
    if "max_epochs" in train_kwargs:
        n_cells_step = 16 * 16 if model.module.estimator == "grouped" else 128
        train_kwargs["max_epochs"] = _resolve_epochs(
            train_kwargs["max_epochs"], max(1, adata.n_obs // n_cells_step)
        )
    tracker = Tracker(model, task, every, seed, verbose)
    t0 = time.perf_counter()
    model.train(enable_progress_bar=False, check_fit=False, callbacks=[tracker], **train_kwargs)
    wall = time.perf_counter() - t0
    final = tracker.evaluate(len(model.history["train_loss"]), model.trainer.global_step)
    curve = pd.DataFrame(tracker.rows)
    curve["task"], curve["setting"], curve["seed"] = task_name, setting, seed
    reason = getattr(model, "training_stopped_", None) or "max_epochs"
    if max_time is not None and wall >= max_time:
        reason = f"max_time {max_time:.0f} s"
    summary = {
        "task": task_name,
        "setting": setting,
        "seed": seed,
        "epochs": final["epoch"],
        "steps": final["step"],
        "train_s": tracker.train_s,
        "wall_s": wall,
        "energy_distance": final["energy_distance"],
        "stopped": reason,
    }
    print(
        f"{task_name:16s} {setting:11s} seed {seed}: ED {final['energy_distance']:.4f} after "
        f"{final['epoch']} epochs / {final['step']} steps, {tracker.train_s:.0f} s train "
        f"({reason})",
        flush=True,
    )
    return curve, summary


def baseline_rows(task_name: str, task: Task, seed: int) -> list[dict]:
    rows = []
    for method, pred in baselines(task, seed=seed).items():
        rows.append(
            {
                "task": task_name,
                "setting": method,
                "seed": seed,
                "energy_distance": float(score(task, pred, seed=seed)["energy_distance"].mean()),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["clean_paper", "counts", "datlinger_combo"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--every", type=int, default=5, help="score every N epochs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--verbose", action="store_true", help="print every evaluation")
    parser.add_argument(
        "--max-time",
        type=float,
        default=None,
        help="wall-clock cap per training run in seconds (scale rows on a CPU)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    curves, summaries = [], []
    for task_name in args.tasks:
        for seed in args.seeds:
            task = load_task(task_name, seed)  # once: every setting trains on the same data
            summaries += baseline_rows(task_name, task, seed)
            for setting in args.settings:
                curve, summary = run(
                    task_name, task, setting, seed, args.every, args.verbose, args.max_time
                )
                curves.append(curve)
                summaries.append(summary)
    table = pd.DataFrame(summaries)
    print(table.to_string(index=False))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        pd.concat(curves).to_csv(out / "time_to_accuracy.csv", index=False)
        table.to_csv(out / "time_to_accuracy_summary.csv", index=False)


if __name__ == "__main__":
    main()
