"""What the held-out conditions cost the network, and a refit after the choice (a lead).

``train`` keeps a few measured conditions out of the fit to choose between the network and
the baselines; the network never sees them. Two ways to put them back, each scored by the
network's own cells (``predict(method="pdae")``) on a task of ``real_data.py``, every
method from the same distinct control cells, none twice:

- ``held_in``: the default training with ``held_out_conditions=0`` (no choice at all: the
  reference for what holding out costs);
- ``refit``: 2,000 steps with the held-out conditions out (the choice is made there), then
  1,000 more steps on every cell through the public API,
  ``model.train(held_out_conditions=0, lr=1e-3)`` (a second cosine from 1e-3), the same
  3,000 steps as the default;
- ``continue``: the same two phases, but the second starts where the default's cosine
  stands after 2,000 of 3,000 steps (lr about 2.6e-4) and decays from there: one schedule
  split at the choice, not a second one.

    python benchmarks/refit_after_choice.py [--tasks clean ...] [--modes held_in refit]
        [--seeds 0 1 2] [--out benchmarks/results]

Writes ``refit_after_choice.md`` and ``refit_after_choice.csv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from pathlib import Path

import pandas as pd
from _tasks import TASKS, fit_pdae, predict_under_protocol, score

import pdae_sc.model._training as training
import pdae_sc.model._training_plan as plan

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

FIRST_STEPS, REFIT_STEPS, REFIT_LR = 2000, 1000, 1e-3
#: ``continue``: the default cosine (1e-3 down to 1e-5 over 3,000 steps) at step 2,000.
CONTINUE_LR = 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * FIRST_STEPS / 3000)) / 2


def _network(task, model, seed: int) -> float:
    pred = predict_under_protocol(task, model, seed, method="pdae")
    return float(score(task, pred, seed=seed)["energy_distance"].mean())


def run(task, mode: str, seed: int) -> dict:
    if mode == "held_in":
        model, fit_s = fit_pdae(task, seed, {}, {"held_out_conditions": 0})
        return {
            "task": task.name,
            "mode": mode,
            "seed": seed,
            "first": float("nan"),
            "network": _network(task, model, seed),
            "chosen": model.prediction_method_,
            "fit_s": fit_s,
        }
    default_steps = training.FIXED_STEPS
    training.FIXED_STEPS = FIRST_STEPS
    cosine = plan.torch.optim.lr_scheduler.CosineAnnealingLR
    if mode == "continue":  # the first 2,000 steps of a 3,000-step cosine
        plan.torch.optim.lr_scheduler.CosineAnnealingLR = lambda opt, T_max, eta_min: cosine(
            opt, T_max=round(T_max * 3000 / FIRST_STEPS), eta_min=eta_min
        )
    try:
        model, fit_s = fit_pdae(task, seed)
    finally:
        training.FIXED_STEPS = default_steps
        plan.torch.optim.lr_scheduler.CosineAnnealingLR = cosine
    chosen, first = model.prediction_method_, _network(task, model, seed)
    steps_per_epoch = math.ceil(model.trainer.global_step / model.trainer.current_epoch)
    t0 = time.perf_counter()
    model.train(
        max_epochs=max(1, round(REFIT_STEPS / steps_per_epoch)),
        held_out_conditions=0,
        lr=CONTINUE_LR if mode == "continue" else REFIT_LR,
        enable_progress_bar=False,
    )
    fit_s += time.perf_counter() - t0
    return {
        "task": task.name,
        "mode": mode,
        "seed": seed,
        "first": first,
        "network": _network(task, model, seed),
        "chosen": chosen,
        "fit_s": fit_s,
    }


def summary(table: pd.DataFrame) -> list[str]:
    """Mean ± sd over seeds per task and mode, with the per-seed figures."""
    lines = [
        "| task | mode | seeds | network after 2,000 steps | network (mean ± sd) | per seed | "
        "chosen | fit s |",
        "|---" * 8 + "|",
    ]
    for (task, mode), rows in table.groupby(["task", "mode"], sort=False):
        sd = rows["network"].std(ddof=1) if len(rows) > 1 else float("nan")
        first = ", ".join(f"{v:.4f}" for v in rows["first"]) if mode != "held_in" else ""
        lines.append(
            f"| {task} | {mode} | {', '.join(map(str, rows['seed']))} | {first} | "
            f"{rows['network'].mean():.4f} ± {sd:.4f} | "
            f"{', '.join(f'{v:.4f}' for v in rows['network'])} | "
            f"{', '.join(rows['chosen'])} | "
            f"{rows['fit_s'].min():.0f}-{rows['fit_s'].max():.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["clean"], choices=list(TASKS))
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["held_in", "refit"],
        choices=["held_in", "refit", "continue"],
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    for task_name in args.tasks:
        task = TASKS[task_name]()
        for mode in args.modes:
            for seed in args.seeds:
                rows.append(run(task, mode, seed))
                r = rows[-1]
                print(
                    f"{task.name} {mode} seed {seed}: network {r['network']:.4f} (after "
                    f"2,000 steps {r['first']:.4f}), chose {r['chosen']}, {r['fit_s']:.0f} s",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "refit_after_choice.csv"
    if csv.exists():  # runs of other tasks accumulate; a task and mode run again replace theirs
        old = pd.read_csv(csv)
        keep = ~old.set_index(["task", "mode"]).index.isin(table.set_index(["task", "mode"]).index)
        table = pd.concat([old[keep], table], ignore_index=True)
    table.to_csv(csv, index=False)
    lines = summary(table)
    (args.out / "refit_after_choice.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
