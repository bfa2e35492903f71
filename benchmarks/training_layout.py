"""Source cells per step against number of steps: accuracy and fit time of the default length.

A grouped step decodes every source cell once per condition of the batch (``G * S`` decodes
and ``G * S * (n + S)`` distances), so halving ``n_sources`` (``S``) about halves the cost of
a step and buys more steps in the same time. For each layout and training seed this trains
PDAE on a task of ``real_data.py`` with ``train``'s default length rule set to the layout's
step count, and prints the network's energy distance (every method from the same distinct
control cells, none twice), the method chosen on the held-out training conditions and the
fit time. Run it on an otherwise idle machine: the layouts are compared by their times.

    python benchmarks/training_layout.py [--tasks clean ...] [--layouts s128x2000 ...]
        [--seeds 0 1 2] [--out benchmarks/results]

Writes ``training_layout.md`` and ``training_layout.csv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import pandas as pd
from _tasks import TASKS, fit_pdae, predict_under_protocol, score

import pdae_sc.model._training as training

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

#: layout -> (n_sources, steps of the default length rule)
LAYOUTS = {
    "s128x2000": (128, 2000),
    "s64x2000": (64, 2000),
    "s64x3000": (64, 3000),
    "s32x5000": (32, 5000),
}


def run(task, layout: str, seed: int) -> dict:
    n_sources, steps = LAYOUTS[layout]
    default_steps = training.FIXED_STEPS
    training.FIXED_STEPS = steps
    try:
        model, fit_s = fit_pdae(task, seed, {}, {"n_sources": n_sources})
    finally:
        training.FIXED_STEPS = default_steps
    pred = predict_under_protocol(task, model, seed, method="pdae")
    return {
        "task": task.name,
        "layout": layout,
        "n_sources": n_sources,
        "steps": int(model.trainer.global_step),
        "seed": seed,
        "network": float(score(task, pred, seed=seed)["energy_distance"].mean()),
        "chosen": model.prediction_method_,
        "fit_s": fit_s,
    }


def summary(table: pd.DataFrame) -> list[str]:
    """Mean ± sd over seeds per task and layout, as markdown rows."""
    lines = [
        "| task | layout | S | steps | network (mean ± sd) | chosen | fit s (min-max) |",
        "|---" * 7 + "|",
    ]
    for (task, layout), rows in table.groupby(["task", "layout"], sort=False):
        chosen = rows["chosen"].value_counts()
        picks = ", ".join(f"{m} ×{k}" for m, k in chosen.items())
        lines.append(
            f"| {task} | {layout} | {rows['n_sources'].iloc[0]} | {int(rows['steps'].mean())} | "
            f"{rows['network'].mean():.4f} ± {rows['network'].std(ddof=1):.4f} | {picks} | "
            f"{rows['fit_s'].min():.0f}-{rows['fit_s'].max():.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["clean"], choices=list(TASKS))
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    for task_name in args.tasks:
        task = TASKS[task_name]()
        for layout in args.layouts:
            for seed in args.seeds:
                rows.append(run(task, layout, seed))
                r = rows[-1]
                print(
                    f"{task_name} {layout} seed {seed}: network {r['network']:.4f} after "
                    f"{r['steps']} steps, chose {r['chosen']}, {r['fit_s']:.0f} s",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "training_layout.csv", index=False)
    lines = summary(table)
    (args.out / "training_layout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
