"""Are new cells inside the registered range of basal states? The check of ``predict(adata=)``.

For each task of ``new_cells.py`` (a context held out of training, its control cells the
new cells), and two more held-out contexts checked here only (``CHECK_ONLY``), the
table that ``predict(targets, adata=new_cells)`` writes to ``uns["pdae"]["basal_range"]``
(``model/_basal_range.py``): the distance of the new control cells' mean to the convex
hull of the registered contexts' control means, its sampling noise, their ratio, the
noise's effective dimension, the p-value and the distance beyond noise relative to the
cells' spread; with a p-value below ``OUTSIDE_P`` and a relative distance of at least
``OUTSIDE_RELATIVE`` the prediction warns. No model is trained: the
check reads only the registered and the new cells.

Beside it, the null: contexts drawn from the registered ones. For each registered context,
a random half of its control cells is taken out of the registration and passed as new
cells (``--draws`` draws per context); their ratios and p-values are what a new context
inside the range gives (the p-values of a calibrated check are uniform there: about 5%
below 0.05). And, from ``results/new_cells.csv`` (``new_cells.py``), the default's energy
distance on the measured targets against the oracle half, mean over its seeds: how far
from the truth the default was on each task.

Last, its cost: seconds of ``basal_range`` for 5,000 new cells against 50,000 registered
cells (10,000 of them control cells in 4 contexts) x 2,000 genes, sparse, best of 3.

    python benchmarks/new_cells_basal.py [--tasks ...] [--draws 10] [--out benchmarks/results]

Prints a markdown table; with ``--out`` writes ``new_cells_basal.md`` there.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from _tasks import write_results
from new_cells import TASKS, datlinger_state, papalexi_replicate

import pdae_sc as pdae
from pdae_sc.model._basal_range import OUTSIDE_P, OUTSIDE_RELATIVE, basal_range
from pdae_sc.model._new_cells import read_new_cells

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).parent / "results"

#: Held-out contexts checked here only (``new_cells.py`` predicts none of them): the
#: Papalexi replicate rep_2, and the resting Datlinger cells after stimulated ones only.
CHECK_ONLY = {
    "papalexi_rep2": lambda: papalexi_replicate("rep_2"),
    "datlinger_rest": lambda: datlinger_state("unstimulated"),
}


def ratio_of(train, new, setup: dict) -> pd.Series:
    """The basal-range row of ``new`` against a model registered on ``train`` (untrained)."""
    pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl", **setup)
    model = pdae.model.PDAE(train)
    cells = read_new_cells(model.registration, new, source=None, scale="log1p")
    return basal_range(model.registration, cells, batch_size=1024).iloc[0]


def null_rows(task, draws: int) -> pd.DataFrame:
    """Rows of halves of each registered context's control cells, held out and passed back."""
    train, key = task.train, task.setup["context_keys"][0]
    ctrl = (train.obs["perturbation"].astype(str) == "ctrl").to_numpy()
    contexts = train.obs[key].astype(str).to_numpy()
    out = []
    for context in sorted(set(contexts)):
        cells = np.flatnonzero(ctrl & (contexts == context))
        for draw in range(draws):
            held = np.random.default_rng(draw).permutation(cells)[: len(cells) // 2]
            keep = np.ones(train.n_obs, dtype=bool)
            keep[held] = False
            new = train[held].copy()
            new.obs[key] = "held-out half"
            del new.obs["perturbation"]
            out.append(ratio_of(train[keep].copy(), new, task.setup))
    return pd.DataFrame(out)


def default_errors() -> pd.DataFrame:
    """Per task: the default's and the oracle half's energy distance on measured targets."""
    path = RESULTS / "new_cells.csv"
    if not path.exists():
        return pd.DataFrame()
    table = pd.read_csv(path)
    table = table[table["kind"] == "measured"]
    per_seed = table.groupby(["task", "method", "seed"])["energy_distance"].mean()
    return per_seed.groupby(["task", "method"]).mean().unstack()[["pdae", "oracle_half"]]


def seconds_of_the_check() -> float:
    """Best of 3 seconds of ``basal_range``: 5,000 new cells, 50,000 registered x 2,000 genes."""
    rng = np.random.default_rng(0)
    n_cells, n_genes = 50_000, 2_000
    x = sp.random(n_cells, n_genes, density=0.1, format="csr", random_state=0, dtype=np.float32)
    x.data = np.log1p(5 * x.data)
    labels = rng.choice([f"P{i}" for i in range(20)], n_cells)
    obs = pd.DataFrame(
        {
            "perturbation": np.where(rng.random(n_cells) < 0.2, "ctrl", labels),
            "context": rng.choice(list("ABCD"), n_cells),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    pdae.model.PDAE.setup_anndata(
        adata, "perturbation", control_group="ctrl", context_keys="context"
    )
    registration = pdae.model.PDAE(adata).registration
    new = ad.AnnData(x[:5000], obs=pd.DataFrame({"context": "new"}, index=obs.index[:5000]))
    new.var_names = adata.var_names
    cells = read_new_cells(registration, new, source=None, scale="log1p")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        basal_range(registration, cells, batch_size=1024)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=[*TASKS, *CHECK_ONLY])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    errors = default_errors()
    rows = []
    for name in args.tasks:
        nt = {**TASKS, **CHECK_ONLY}[name]()
        row = ratio_of(nt.task.train.copy(), nt.new, nt.task.setup)
        null = null_rows(nt.task, args.draws)
        ratios, p_values = null["ratio"].to_numpy(), null["p_value"].to_numpy()
        rows.append(
            {
                "task": name,
                "covered": nt.covered,
                "new control cells": int(row["n_control_cells"]),
                "distance": f"{row['distance']:.2f}",
                "noise": f"{row['noise']:.2f}",
                "ratio": f"{row['ratio']:.2f}",
                "dof": f"{row['dof']:.1f}",
                "p-value": f"{row['p_value']:.1g}",
                "relative distance": f"{row['relative_distance']:.2f}",
                "warns": "yes" if row["outside"] else "no",
                "null ratio: median (range)": f"{np.median(ratios):.2f} "
                f"({ratios.min():.2f}-{ratios.max():.2f})",
                "null dof": f"{null['dof'].min():.1f}-{null['dof'].max():.1f}",
                "null p < 0.05": f"{(p_values < 0.05).sum()}/{len(null)}",
                "null smallest p": f"{p_values.min():.2g}",
                "null relative distance: max": f"{null['relative_distance'].max():.2f}",
                "null warns": f"{int(null['outside'].sum())}/{len(null)}",
                "default, measured targets": f"{errors.loc[name, 'pdae']:.4f}"
                if name in errors.index
                else "-",
                "oracle half": f"{errors.loc[name, 'oracle_half']:.4f}"
                if name in errors.index
                else "-",
            }
        )
        print(
            f"{name}: ratio {row['ratio']:.2f} dof {row['dof']:.1f} p {row['p_value']:.2g}; "
            f"null p {np.round(p_values, 3).tolist()}",
            flush=True,
        )
    table = pd.DataFrame(rows)
    header = "| " + " | ".join(table.columns) + " |"
    lines = [header, "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    text = "\n".join(lines)
    print(f"\nOUTSIDE_P = {OUTSIDE_P}, OUTSIDE_RELATIVE = {OUTSIDE_RELATIVE}\n\n{text}")
    cost = seconds_of_the_check()
    text += f"\n\nbasal_range, 5,000 new cells, 50,000 registered x 2,000 genes: {cost:.2f} s\n"
    print(text.rsplit("\n\n", 1)[-1], end="")
    write_results(args.out, "new_cells_basal", table, text, csv=False)


if __name__ == "__main__":
    main()
