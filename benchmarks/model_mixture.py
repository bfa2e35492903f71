"""Pooling the cells of independently trained networks: how much of the error is the seed.

On the clean simulations the default PDAE fits its training conditions at the noise floor,
yet its held-out doubles stay well above it, and the figure moves from one training seed to
the next: the error is in how each trained network extrapolates, not in how well it fits.
If those extrapolation errors are independent between seeds, a mixture of the cells of
several networks trained with different seeds is closer to the truth than each of them (the
energy distance is convex in the predicted distribution). This measures by how much.

For each replicate ``r`` of ``--replicates``, it trains ``--members`` default models with
training seeds ``10 * r + k`` and scores, under the honest protocol of ``real_data.py``
(every method predicts as many cells as the context has control cells, from as many
distinct control cells, none twice):

- ``single``: each member's own cells (``method="pdae"``) moved from the control cells
  (the mean over members is the figure of one default model);
- ``mixture``: the control cells split at random into ``--members`` disjoint parts, member
  ``k`` moving part ``k`` (``predict(targets, adata=part, method="pdae")``), the parts' cells
  pooled: as many cells from as many distinct control cells as ``single``;
- the simple baselines and the oracle half (:func:`_tasks.scored_baselines`).

A *member-decoder* prototype (one run, several decoders sharing the encoder and the shift,
each scored on its own source block) did not reproduce the gain; it was not kept
(``results/model_mixture.md``).

    python benchmarks/model_mixture.py [--tasks clean laplace] [--replicates 0 1 2]
        [--members 3] [--out DIR]
    python benchmarks/model_mixture.py --summarise results/model_mixture.csv
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from _tasks import (
    control_cells,
    fit_pdae,
    gap_closed_to_best_simple,
    labelled_score,
    predict_under_protocol,
    scored_baselines,
    seed_summary,
    write_results,
)
from held_out_stop import task_named

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def mixture_prediction(task, models: list, seed: int) -> ad.AnnData:
    """The members' cells pooled, each member moving its own disjoint part of the controls."""
    ctrl = control_cells(task)
    parts = np.array_split(np.random.default_rng(seed).permutation(ctrl.n_obs), len(models))
    preds = []
    for k, (model, part) in enumerate(zip(models, parts, strict=True)):
        cells = ctrl[np.sort(part)].copy()
        pred = model.predict(task.targets, adata=cells, method="pdae", seed=seed + k)
        pred.obs_names = [f"m{k}_{name}" for name in pred.obs_names]
        preds.append(pred)
    mixture = ad.concat(preds)
    mixture.uns["pdae"] = {"method": "mixture"}
    return mixture


def run(name: str, replicates: list[int], members: int) -> pd.DataFrame:
    task = task_named(name)
    rows = []
    for rep in replicates:
        rows.extend(scored_baselines(task, rep))
        models = []
        for k in range(members):
            model, fit_s = fit_pdae(task, 10 * rep + k)
            pred = predict_under_protocol(task, model, rep, source="ctrl", method="pdae")
            rows.append(labelled_score(task, pred, rep, "single", member=k, fit_s=fit_s))
            models.append(model)
        singles = pd.concat(rows[-members:])["energy_distance"].mean()
        rows.append(labelled_score(task, mixture_prediction(task, models, rep), rep, "mixture"))
        print(
            f"{name} replicate {rep}: single {singles:.4f} (mean of {members}), "
            f"mixture {rows[-1]['energy_distance'].mean():.4f}",
            flush=True,
        )
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "task", name)
    return out


def markdown(table: pd.DataFrame) -> str:
    """Mean over targets, members averaged, then mean ± sd over replicates."""
    _, mean, sd = seed_summary(table)
    columns = ["oracle_half", "single", "mixture", "linear", "additive", "pooled", "control"]
    lines = ["| task | " + " | ".join(columns) + " | gap closed: single | mixture |"]
    lines.append("|---" * (len(columns) + 3) + "|")
    for task in mean.index:
        cells = [f"{mean.loc[task, c]:.4f} ± {sd.loc[task, c]:.4f}" for c in columns]
        gap = gap_closed_to_best_simple(table[table["task"] == task], ["single", "mixture"])
        gaps = [gap["single"], gap["mixture"]]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {gaps[0]:.2f} | {gaps[1]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["clean", "laplace"])
    parser.add_argument("--replicates", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--summarise", type=Path, default=None, help="rebuild from a CSV")
    args = parser.parse_args()
    if args.summarise:
        table = pd.read_csv(args.summarise)
    else:
        table = pd.concat(
            [run(t, args.replicates, args.members) for t in args.tasks], ignore_index=True
        )
    text = markdown(table)
    print(text)
    write_results(args.out, "model_mixture", table, text, csv=not args.summarise)


if __name__ == "__main__":
    main()
