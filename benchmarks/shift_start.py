"""Where the generative decoder's latent shift W starts: nn.Linear's random init or zero.

The residual decoders start ``W`` at zero, so that their move starts as the ``linear``
model (``model/_linear.start_at_linear_model``). Would a zero start help the generative
decoder too (no perturbation moving a cell before training)? This trains the default model
both ways, with the same seeds, on the simulated tasks whose decoder is the generative one
(the clean simulation of ``_tasks.py`` and the variants of ``held_out_stop.py``: Laplace
basal law, another data seed, 500 genes) and scores both under the honest protocol
(``real_data.py``), beside the simple baselines and the oracle half. ``zero`` sets ``W`` to
zero after the model is built, which draws no random number, so every other draw is the
default's.

    python benchmarks/shift_start.py --tasks clean laplace clean500 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import pandas as pd
import torch
from _tasks import (
    fit_pdae,
    labelled_score,
    predict_under_protocol,
    scored_baselines,
    seed_summary,
    write_results,
)
from held_out_stop import task_named

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

STARTS = ("zero", "random")


def zero_shift(model: pdae.model.PDAE) -> None:
    """Set the latent shift ``W`` to zero (draws no random number)."""
    with torch.no_grad():
        model.module.shift.weight.zero_()


def run(name: str, seeds: list[int]) -> pd.DataFrame:
    task = task_named(name)
    rows = []
    for seed in seeds:
        rows.extend(scored_baselines(task, seed))
        for start in STARTS:
            prepare = zero_shift if start == "zero" else None
            model, fit_s = fit_pdae(task, seed, before_training=prepare)
            pred = predict_under_protocol(task, model, seed)
            s = labelled_score(
                task, pred, seed, f"pdae_{start}", fit_s=fit_s, chosen=model.prediction_method_
            )
            rows.append(s)
            print(
                f"{name} seed {seed} W {start}: {s['energy_distance'].mean():.4f} "
                f"({model.prediction_method_}, {fit_s:.0f} s)",
                flush=True,
            )
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "task", name)
    return out


def markdown(table: pd.DataFrame) -> str:
    per_seed, mean, sd = seed_summary(table)
    columns = ["oracle_half", "pdae_zero", "pdae_random", "linear", "additive", "pooled"]
    columns += ["control"]
    lines = [
        "| task | " + " | ".join(columns) + " | zero - random, per seed |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for task in mean.index:
        cells = [
            f"{mean.loc[task, c]:.4f}" + (f" ± {sd.loc[task, c]:.4f}" if "pdae" in c else "")
            for c in columns
        ]
        diff = per_seed.loc[task, "pdae_zero"] - per_seed.loc[task, "pdae_random"]
        cells.append(" / ".join(f"{d:+.4f}" for d in diff))
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["clean", "laplace", "clean_data1"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    table = pd.concat([run(t, args.seeds) for t in args.tasks], ignore_index=True)
    text = markdown(table)
    print(text)
    write_results(args.out, "shift_start", table, text, csv=True)


if __name__ == "__main__":
    main()
