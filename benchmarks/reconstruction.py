"""The generative decoder's reconstruction term: its weight, and whether it trains the encoder.

Besides the perturbation energy score, every step scores each source cell against two
decodes of its own latent (the reconstruction energy score). Up to 0.2.0 it had weight 0.1
and its gradient stopped at the encoder's output (``detach_encoder=True``), the paper's
choice; since, the generative decoder trains it with weight 1 and lets it reach the encoder
(``PDAE(reconstruction_weight=1.0, detach_encoder=False)``, the defaults of
``model/_arguments.LOSS_DEFAULTS``). The residual decoders keep 0.1, detached.

This trains the default model with each setting of ``--settings`` (name -> ``PDAE(...)``
loss options, as JSON; ``default``: the model's own; ``--train-kwargs``: options of
``train``, the same for every setting) on the tasks whose decoder is the generative one
(``clean`` of ``_tasks.py``; ``laplace`` and ``clean500`` of ``held_out_stop.py``) and
scores its default prediction under the honest protocol of ``real_data.py`` (every method
as many distinct cells as the context has control cells, none twice), beside the simple
baselines and the oracle half.

    python benchmarks/reconstruction.py [--tasks clean laplace clean500] [--seeds 0 1 2]
        [--settings '{"default": {}, "paper": {"reconstruction_weight": 0.1,
        "detach_encoder": true}}'] [--train-kwargs '{"max_epochs": 334}'] [--out DIR]
    python benchmarks/reconstruction.py --summarise results/reconstruction.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path

import pandas as pd
from _tasks import (
    SIMPLE_BASELINES,
    fit_pdae,
    gap_closed_to_best_simple,
    labelled_score,
    predict_under_protocol,
    scored_baselines,
    seed_summary,
)
from held_out_stop import task_named

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

SETTINGS = {"default": {}, "paper": {"reconstruction_weight": 0.1, "detach_encoder": True}}
BASELINES = ["oracle_half", *SIMPLE_BASELINES]


def run(
    name: str, seeds: list[int], settings: dict[str, dict], train_kwargs: dict
) -> pd.DataFrame:
    task = task_named(name)
    rows = []
    for seed in seeds:
        rows.extend(scored_baselines(task, seed))
        for setting, model_kwargs in settings.items():
            model, fit_s = fit_pdae(task, seed, model_kwargs, train_kwargs)
            chosen = f"{model.prediction_method_}, {model.default_source_}"
            pred = predict_under_protocol(task, model, seed)
            rows.append(labelled_score(task, pred, seed, setting, fit_s=fit_s, chosen=chosen))
            score = rows[-1]["energy_distance"].mean()
            line = f"{name} seed {seed} {setting}: {score:.4f} ({chosen}, {fit_s:.0f} s)"
            print(line, flush=True)
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "task", name)
    return out


def markdown(table: pd.DataFrame) -> str:
    """Mean over targets, then mean ± sd over training seeds; the gap to linear closed."""
    per_seed, mean, sd = seed_summary(table)
    settings = [m for m in mean.columns if m not in (*BASELINES, "mean_response")]
    columns = settings + BASELINES
    head = " | ".join(columns) + " | " + " | ".join(f"gap closed: {s}" for s in settings)
    lines = [f"| task | {head} |", "|---" * (len(columns) + len(settings) + 1) + "|"]
    for task in mean.index:
        cells = [f"{mean.loc[task, c]:.4f} ± {sd.loc[task, c]:.4f}" for c in columns]
        gap = gap_closed_to_best_simple(table[table["task"] == task], settings)
        gaps = [f"{gap[s]:.2f}" for s in settings]
        lines.append(f"| {task} | " + " | ".join(cells + gaps) + " |")
    fits = table.dropna(subset=["chosen"]).groupby(["task", "method", "seed"])
    fits = fits[["chosen", "fit_s"]].first()
    lines += ["", "Per seed: energy distance (chosen method, default source; fit s):", ""]
    for (task, method), part in fits.groupby(level=[0, 1]):
        per = [
            f"{per_seed[(task, method, seed)]:.4f} ({row.chosen}; {row.fit_s:.0f} s)"
            for (_, _, seed), row in part.iterrows()
        ]
        lines.append(f"- {task}, {method}: " + " / ".join(per))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["clean", "laplace", "clean500"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--settings", type=json.loads, default=SETTINGS)
    parser.add_argument("--train-kwargs", type=json.loads, default={}, help="train(...), JSON")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--summarise", type=Path, default=None, help="rebuild from a CSV")
    args = parser.parse_args()
    if args.summarise:
        table = pd.read_csv(args.summarise)
    else:
        runs = [run(t, args.seeds, args.settings, args.train_kwargs) for t in args.tasks]
        table = pd.concat(runs, ignore_index=True)
        if args.out:  # before the summary, so that a fault there loses no run
            args.out.mkdir(parents=True, exist_ok=True)
            table.to_csv(args.out / "reconstruction.csv", index=False)
    text = markdown(table)
    print(text)
    if args.out:
        (args.out / "reconstruction.md").write_text(text)


if __name__ == "__main__":
    main()
