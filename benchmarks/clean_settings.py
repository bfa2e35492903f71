"""How firm is the held-out choice on the clean simulation, across training settings?

For each setting and training seed: the network's energy distance on the ``clean`` task of
``real_data.py`` (each method from the same 100 distinct control cells per target), the
method the model chose on its held-out training combinations (a baseline only when ahead by
more than one standard error), the mean and standard error of PDAE minus the best baseline
on those combinations, and what the rule "the lowest held-out mean wins outright" would
have picked and scored.

    python benchmarks/clean_settings.py [--settings default noise64 ...] [--seeds 0 1 2]
        [--out benchmarks/history]

``--task``: another task of ``_tasks.py`` (default ``clean``). Writes ``clean_settings.md``
and ``clean_settings.csv`` under ``--out`` (``clean_settings_<task>.*`` for another task).
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _tasks import TASKS, fit_pdae, predict_under_protocol, score

from pdae_sc.model._selection import SIMPLE_METHODS

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

#: setting -> (PDAE(...) arguments, train(...) arguments)
SETTINGS = {
    "default": ({}, {}),
    "noise64": ({"n_noise": 64}, {}),
    "sources256": ({}, {"n_sources": 256}),
    "conditions32": ({}, {"n_conditions_per_batch": 32}),
    "latent16": ({"n_latent": 16}, {}),
    "hidden128": ({"n_hidden": (128, 128)}, {}),
    "noise8": ({"n_noise": 8}, {}),
}


def run(setting: str, seed: int, task) -> dict:
    model_kwargs, train_kwargs = SETTINGS[setting]
    model, fit_s = fit_pdae(task, seed, model_kwargs, train_kwargs)

    def scored(method):
        pred = predict_under_protocol(task, model, seed, method=method)
        return float(score(task, pred, seed=seed)["energy_distance"].mean())

    held = model.held_out_scores_
    means = held[["pdae", *SIMPLE_METHODS]].mean()
    best = min(SIMPLE_METHODS, key=lambda m: means[m])
    diff = (held["pdae"] - held[best]).to_numpy(dtype=float)
    lowest = best if means[best] < means["pdae"] else "pdae"
    network = scored("pdae")
    return {
        "setting": setting,
        "seed": seed,
        "network": network,
        "chosen": model.prediction_method_,
        "default": scored("auto"),
        "held_out_best": best,
        "held_out_diff": diff.mean(),
        "held_out_se": diff.std(ddof=1) / np.sqrt(len(diff)),
        "held_out_per_condition": ", ".join(f"{d:.3f}" for d in diff),
        "lowest_mean_pick": lowest,
        "lowest_mean_score": network if lowest == "pdae" else scored(lowest),
        "fit_s": fit_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "history")
    parser.add_argument("--task", default="clean", choices=list(TASKS))
    args = parser.parse_args()
    task = TASKS[args.task]()
    rows = []
    for setting in args.settings:
        for seed in args.seeds:
            rows.append(run(setting, seed, task))
            r = rows[-1]
            print(
                f"{setting} seed {seed}: network {r['network']:.4f}, chose {r['chosen']} "
                f"({r['default']:.4f}); held-out PDAE - {r['held_out_best']} "
                f"{r['held_out_diff']:+.4f} (se {r['held_out_se']:.4f}); lowest mean would "
                f"pick {r['lowest_mean_pick']} ({r['lowest_mean_score']:.4f}); {r['fit_s']:.0f} s",
                flush=True,
            )
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "clean_settings" if args.task == "clean" else f"clean_settings_{args.task}"
    table.to_csv(args.out / f"{name}.csv", index=False)
    lines = [
        "| setting | seed | network | chosen | default predict | held-out best baseline | "
        "PDAE - it | se | per combination | lowest mean would pick | its score | fit s |",
        "|---" * 12 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['seed']} | {r['network']:.4f} | {r['chosen']} | "
            f"{r['default']:.4f} | {r['held_out_best']} | {r['held_out_diff']:+.4f} | "
            f"{r['held_out_se']:.4f} | {r['held_out_per_condition']} | "
            f"{r['lowest_mean_pick']} | {r['lowest_mean_score']:.4f} | {r['fit_s']:.0f} |"
        )
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
