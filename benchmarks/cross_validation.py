"""Does ``tl.cross_validate`` on a whole real screen say what the held-out benchmark says?

For every real task of ``_tasks.py`` the task's training and test cells are put back
together (the screen as a user has it), the model is set up as in ``real_data.py``, and
``pdae.tl.cross_validate(model, seed=...)`` runs with its defaults (2 folds of 8 held-out
conditions, default training). The verdict and the per-method means are printed and written
beside ``real_data.md``'s held-out figures for the same task.

    python benchmarks/cross_validation.py [--tasks ...] [--seeds 0] [--out benchmarks/results]
        [--train-kwargs JSON]

``--train-kwargs``: ``cross_validate(train_kwargs=...)``, e.g. ``'{"n_source_conditions": 4}'``
(the refits' source cells in one-condition blocks, not the residual decoders' default).

Writes ``cross_validation.md`` and ``cross_validation.csv`` (every score row, with the task
and seed) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import anndata as ad
import pandas as pd
from _tasks import TASKS

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

REAL = ["datlinger_combo", "datlinger_context", "papalexi_context"]
ORDER = ["oracle_half", "pdae", "linear", "additive", "mean_response", "control", "pooled"]


def whole_screen(name: str) -> tuple[ad.AnnData, dict]:
    """The task's cells, training and held-out together, and its setup arguments."""
    task = TASKS[name]()
    adata = ad.concat([task.train, task.test], merge="same")
    return adata, task.setup


def run(name: str, seed: int, train_kwargs: dict | None = None) -> tuple[pd.DataFrame, str, float]:
    adata, setup = whole_screen(name)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", **setup)
    model = pdae.model.PDAE(adata)
    t0 = time.perf_counter()
    cv = pdae.tl.cross_validate(model, seed=seed, train_kwargs=train_kwargs)
    wall = time.perf_counter() - t0
    scores = cv.scores.assign(task=name, seed=seed)
    return scores, cv.verdict, wall


def benchmark_means(out: Path) -> pd.DataFrame | None:
    """Mean energy distance per task and method from ``real_data.csv`` (if it is there)."""
    path = out / "real_data.csv"
    if not path.exists():
        return None
    df = pd.read_csv(path)
    per_seed = df.groupby(["task", "method", "seed"])["energy_distance"].mean()
    return per_seed.groupby(["task", "method"]).mean().unstack("method")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=REAL, choices=REAL)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--train-kwargs", type=json.loads, default=None, help="cross_validate(train_kwargs=...)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    all_scores, lines = [], []
    for name in args.tasks:
        for seed in args.seeds:
            scores, verdict, wall = run(name, seed, args.train_kwargs)
            all_scores.append(scores)
            means = scores.groupby("method")["energy_distance"].mean()
            cells = " | ".join(f"{means.get(m, float('nan')):.3f}" for m in ORDER)
            line = f"| {name} | cross_validate, seed {seed} ({wall:.0f} s) | {cells} |"
            lines.append((name, line, verdict, seed))
            print(line, flush=True)
            print(f"  {verdict}", flush=True)
    scores = pd.concat(all_scores, ignore_index=True)
    scores.to_csv(args.out / "cross_validation.csv", index=False)
    bench = benchmark_means(args.out)  # read last: real_data.py may have run meanwhile
    header = "| task | figures from | " + " | ".join(ORDER) + " |"
    table = [header, "|" + "---|" * (len(ORDER) + 2)]
    for name in args.tasks:
        if bench is not None and name in bench.index:
            row = bench.loc[name]
            cells = " | ".join(f"{row.get(m, float('nan')):.3f}" for m in ORDER)
            table.append(f"| {name} | held-out benchmark (`real_data.md`) | {cells} |")
        table += [line for task, line, _, _ in lines if task == name]
    verdicts = [f"- **{task}**, seed {seed}: {verdict}" for task, _, verdict, seed in lines]
    text = "\n".join(
        [
            "# Cross-validation on the real screens (`benchmarks/cross_validation.py`)",
            "",
            f"`python benchmarks/cross_validation.py --tasks {' '.join(args.tasks)} --seeds "
            f"{' '.join(map(str, args.seeds))}`: each task's cells as one screen, "
            "`pdae.tl.cross_validate(model, seed=seed)` with its defaults (2 folds of 8 "
            "held-out conditions, default training); the wall time includes both refits. "
            "Every method predicts as many distinct cells per held-out condition as its "
            "context has control cells in the fold, each drawn once; the held-out benchmark "
            "uses the same protocol (`real_data.md`).",
            "",
            "Mean energy distance over the held-out conditions (lower is better):",
            "",
            *table,
            "",
            "Verdicts:",
            "",
            *verdicts,
            "",
        ]
    )
    (args.out / "cross_validation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
