"""Source cells in one-condition blocks, or one mixed draw: what each teaches the network.

Each training step of the grouped estimator moves ``n_sources`` source cells to every
condition of the step and scores the moved cells against that condition's observed cells.
With ``train(n_source_conditions=None)`` (the default up to 0.2.0) the sources are one
random draw of the context's cells, a mix of many conditions scored together; with
``n_source_conditions=4`` (the generative decoder's default since) they come in 4 blocks
of one condition each, each block scored on its own. A mix can be right on average while
the cells of any one condition, the control cells included, are moved wrongly; blocks ask
every condition's cells to predict every target. (The residual decoders keep the mixed
draw by default: ``results/source_blocks.md``.)

This trains the default model both ways, with the same seeds, on the simulated tasks whose
decoder is the generative one (the clean simulation of ``_tasks.py``, the Laplace basal law
of ``held_out_stop.py``; ``--tasks clean500`` for its 500-gene one), and scores, under
the honest protocol of ``real_data.py`` (the same number of distinct cells for every
method, none twice):

- ``default``: ``predict`` as a user calls it (the model's own source set and method);
- ``from_ctrl`` and ``from_all``: the network's cells (``method="pdae"``) moved from the
  control cells and from every training cell, averaged over 3 prediction draws
  (prediction seeds ``100 * seed + draw``);

beside the simple baselines and the oracle half.

    python benchmarks/source_blocks.py [--tasks clean laplace] [--seeds 0 1 2] [--out DIR]
    python benchmarks/source_blocks.py --speed

``--speed``: milliseconds of one draw of the sampler (16 conditions x 16 cells, 64 sources)
with each setting, from a context of 200,000 control cells and 1,000 perturbations of 50
cells (the block draw reads each picked condition's whole pool), mean over 2,000 draws.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _tasks import (
    fit_pdae,
    labelled_score,
    predict_under_protocol,
    scored_baselines,
    seed_summary,
    write_results,
)
from held_out_stop import task_named

from pdae_sc.data._sampler import ConditionBatchSampler

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

SETTINGS = {"blocks": 4, "mixed": None}  # train(n_source_conditions=...)
DRAWS = 3


def run(name: str, seeds: list[int]) -> pd.DataFrame:
    task = task_named(name)
    rows = []
    for seed in seeds:
        rows.extend(scored_baselines(task, seed))
        for setting, blocks in SETTINGS.items():
            model, fit_s = fit_pdae(task, seed, train_kwargs={"n_source_conditions": blocks})
            labels = {
                "fit_s": fit_s,
                "chosen": f"{model.prediction_method_}, {model.default_source_}",
            }
            pred = predict_under_protocol(task, model, seed)
            rows.append(labelled_score(task, pred, seed, f"{setting}_default", **labels))
            line = [
                f"{name} seed {seed} {setting}: default {rows[-1]['energy_distance'].mean():.4f}"
            ]
            for source in ("ctrl", "all"):
                for draw in range(DRAWS):
                    pred = predict_under_protocol(
                        task, model, 100 * seed + draw, source=source, method="pdae"
                    )
                    method = f"{setting}_from_{source}"
                    rows.append(labelled_score(task, pred, seed, method, draw=draw, **labels))
                mean = pd.concat(rows[-DRAWS:])["energy_distance"].mean()
                line.append(f"from {source} {mean:.4f}")
            print(", ".join(line) + f" ({labels['chosen']}, {fit_s:.0f} s)", flush=True)
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "task", name)
    return out


def markdown(table: pd.DataFrame) -> str:
    """Mean over targets, then mean ± sd over training seeds (draws averaged first)."""
    _, mean, sd = seed_summary(table)
    columns = [f"{s}_{k}" for s in SETTINGS for k in ("default", "from_ctrl", "from_all")]
    columns += ["oracle_half", "linear", "additive", "pooled", "control"]
    lines = [
        "| task | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for task in mean.index:
        cells = [
            f"{mean.loc[task, c]:.4f}"
            + (f" ± {sd.loc[task, c]:.4f}" if c.split("_")[0] in SETTINGS else "")
            for c in columns
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    chosen = table.dropna(subset=["chosen"]).groupby(["task", "method", "seed"])["chosen"].first()
    lines += ["", "Chosen (method, default source), per seed:", ""]
    for (task, method), part in chosen.groupby(level=[0, 1]):
        if method.endswith("_default"):
            lines.append(f"- {task}, {method[: -len('_default')]}: " + " / ".join(part))
    return "\n".join(lines) + "\n"


def sampler_speed(draws: int = 2000) -> None:
    """Print the ms per sampler draw of each setting (see the module docstring)."""
    n_ctrl, n_perturbed, per = 200_000, 1000, 50
    codes = np.concatenate([np.zeros(n_ctrl, int), np.repeat(np.arange(1, n_perturbed + 1), per)])
    for setting, blocks in SETTINGS.items():
        sampler = ConditionBatchSampler(
            codes,
            np.zeros(len(codes), int),
            np.arange(len(codes)),
            n_conditions=16,
            n_cells=16,
            n_sources=64,
            n_source_conditions=blocks,
            rng=np.random.default_rng(0),
        )
        t0 = time.perf_counter()
        for _ in range(draws):
            sampler.sample()
        ms = (time.perf_counter() - t0) / draws * 1e3
        print(
            f"{setting}: {ms:.3f} ms per draw ({len(codes):,} cells, {n_perturbed + 1} conditions)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["clean", "laplace"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--summarise", type=Path, default=None, help="rebuild from a CSV")
    parser.add_argument("--speed", action="store_true", help="time the sampler's draws only")
    args = parser.parse_args()
    if args.speed:
        sampler_speed()
        return
    if args.summarise:
        table = pd.read_csv(args.summarise)
    else:
        table = pd.concat([run(t, args.seeds) for t in args.tasks], ignore_index=True)
    text = markdown(table)
    print(text)
    write_results(args.out, "source_blocks", table, text, csv=not args.summarise)


if __name__ == "__main__":
    main()
