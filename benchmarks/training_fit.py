"""Fit against extrapolation: the network on its own training conditions and on held-out ones.

A network can fit every training condition and still shape the cells of an unseen
combination badly. For each seed this trains the default model (or ``--model-kwargs``) on
a simulated task and scores the network's cells moved from the control cells
(``method="pdae"``, ``source="ctrl"``):

- ``train_doubles`` / ``train_singles``: 50 cells each for the first 10 training doubles
  and 5 singles (by name), against 50 of that condition's own training cells (every cell
  distinct, none twice); the noise floor of 50 against 50 cells is about 0;
- ``held_out``: the task's held-out doubles under the honest protocol of ``real_data.py``,
  beside the simple baselines and the oracle half (energy distance and mean L2).

    python benchmarks/training_fit.py [--task laplace] [--seeds 0]
        [--model-kwargs '{"reconstruction_weight": 0.1, "detach_encoder": true}']
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings

import numpy as np
import pandas as pd
from _tasks import (
    control_cells,
    fit_pdae,
    labelled_score,
    predict_under_protocol,
    scored_baselines,
)
from held_out_stop import task_named

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

N_CELLS = 50


def training_fit(task, model, kind: str, targets: list[str]) -> pd.DataFrame:
    """The network's cells for training ``targets`` against their own training cells."""
    labels = task.train.obs["perturbation"].astype(str).to_numpy()
    pred = model.predict(targets, n_cells=N_CELLS, source="ctrl", method="pdae", seed=1)
    rows = np.concatenate([np.flatnonzero(labels == t)[:N_CELLS] for t in targets])
    scores = pdae.tl.evaluate(pred, task.train[rows], adata_control=control_cells(task), seed=0)
    scores["method"] = kind
    return scores


def run(name: str, seed: int, model_kwargs: dict) -> pd.DataFrame:
    task = task_named(name)
    model, _ = fit_pdae(task, seed, model_kwargs)
    names = sorted(task.train.obs["perturbation"].astype(str).unique())
    doubles = [n for n in names if "+" in n][:10]
    singles = [n for n in names if "+" not in n and n != "ctrl"][:5]
    pred = predict_under_protocol(task, model, seed, source="ctrl", method="pdae")
    tables = [
        training_fit(task, model, "train_doubles", doubles),
        training_fit(task, model, "train_singles", singles),
        labelled_score(task, pred, seed, "held_out"),
        *scored_baselines(task, seed),
    ]
    out = pd.concat(tables, ignore_index=True)
    out["seed"] = seed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="laplace")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--model-kwargs", type=json.loads, default={})
    args = parser.parse_args()
    table = pd.concat([run(args.task, s, args.model_kwargs) for s in args.seeds])
    summary = table.groupby(["method", "seed"])[["energy_distance", "mean_l2"]].mean()
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
