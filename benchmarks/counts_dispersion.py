"""Count noise of ``predict(scale="counts")``: per-gene variance-to-mean ratio vs held-out cells.

Count-based scorers (cell-eval, the Virtual Cell Challenge) read raw counts. A predicted
cell on the count scale is its decoded expression put back on its source cell's count scale,
``rint(expm1(x) * s)``; this measures whether its counts are as noisy as measured ones. For
each held-out condition of a task of ``_tasks.py`` (the ``counts`` simulation and Datlinger
2017 knockout+stimulation), with PDAE trained with its defaults (one model per training
seed):

- ``registered``: the registered (training) cells moved, ``predict(..., scale="counts",
  method="pdae")`` with ``source=None`` (the model's ``default_source_``), ``"all"`` and
  ``"ctrl"``; and ``predict(..., scale="counts")`` as a user calls it (``method="auto"``:
  the method the model chose, possibly a baseline, on its source cells' count scale);
- ``new``: cells the model never saw, ``predict(..., adata=new, scale="counts",
  method="pdae")`` with each source, and as a user calls it (``method="auto"``, from their
  control cells), from a second model trained (same defaults) on a random half of every
  training condition's cells; the other half are the new cells;
- ``floor``: measured cells against measured cells (how noisy the figure is): one half of
  the held-out cells against the other, and as many of them as a prediction from the
  control cells has against the rest (:func:`floors`);
- ``poisson``: Poisson counts around the per-gene means of the default prediction (what the
  figure looks like for counts without cell-to-cell variation).

Each prediction has as many cells as the condition has held-out cells, each from a distinct
source cell; where the source pool is smaller (the control cells), every source once.

The figure: for the genes with a mean count of at least ``--min-mean`` (0.1) in the task's
training cells (chosen without looking at the cells compared), the ratio
``VMR(predicted) / VMR(held-out)`` of the per-gene variance-to-mean ratios, and its median
over those genes (each gene against itself, robust to a few genes far off); also
size-matched, against held-out subsets of the predicted size (:func:`figure`). The goal:
within 25% of 1.

    python benchmarks/counts_dispersion.py [--tasks counts datlinger_combo] [--seeds 0 1 2]
        [--out benchmarks/results] [--suffix S] [--threads N]
    python benchmarks/counts_dispersion.py --summarise a.csv b.csv --out benchmarks/results

Writes ``counts_dispersion{suffix}.csv`` (one row per task, seed, cells, source and
condition; rewritten after every model) and ``counts_dispersion{suffix}.md`` under ``--out``
and prints the summary; ``--summarise`` joins the CSV files of several runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _tasks import TASKS, Task, dense, fit_pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

SOURCES = (None, "all", "ctrl")
TOLERANCE = 0.25
N_SUBSETS = 20  # held-out subsets of the predicted size (vmr_ratio_matched)


def _vmr(counts: np.ndarray) -> np.ndarray:
    """Per-gene variance (``ddof=1``) over mean; 0 for a gene without counts."""
    mean = counts.mean(axis=0)
    return np.divide(counts.var(axis=0, ddof=1), mean, out=np.zeros_like(mean), where=mean > 0)


def vmr_ratio(pred: np.ndarray, obs: np.ndarray, genes: np.ndarray) -> float:
    """Median over ``genes`` of ``VMR(pred) / VMR(obs)`` (dense counts, cells × genes).

    Symmetric in its inputs: a gene without counts in ``pred`` has a ratio of 0, one
    without counts in ``obs`` a ratio of infinity, one without counts in either is left out.
    """
    num, den = _vmr(pred[:, genes]), _vmr(obs[:, genes])
    ratio = np.divide(num, den, out=np.full_like(num, np.inf), where=den > 0)
    ratio[(num == 0) & (den == 0)] = np.nan
    return float(np.nanmedian(ratio)) if (~np.isnan(ratio)).any() else float("nan")


def figure(pred, obs, genes: np.ndarray, seed: int) -> dict:
    """The VMR ratio of a prediction against the held-out cells ``obs``, and size-matched.

    ``genes``: the genes compared (mask). ``vmr_ratio``: against all of ``obs``.
    ``vmr_ratio_matched``: the median over :data:`N_SUBSETS` random subsets of ``obs`` of
    as many cells as ``pred`` (the same figure when it has as many): the sample VMR of
    sparse, bursty genes is biased low in few cells (their rare large counts are missed), so
    a prediction from a smaller pool of source cells is compared with measured cells at its
    own size.
    """
    pred, obs = dense(pred), dense(obs)
    out = {"n_cells": len(pred), "n_held_out": len(obs), "n_genes": int(genes.sum())}
    full = vmr_ratio(pred, obs, genes)
    if len(pred) >= len(obs):
        return {**out, "vmr_ratio": full, "vmr_ratio_matched": full}
    rng = np.random.default_rng(seed)
    subsets = [rng.choice(len(obs), len(pred), replace=False) for _ in range(N_SUBSETS)]
    matched = np.nanmedian([vmr_ratio(pred, obs[rows], genes) for rows in subsets])
    return {**out, "vmr_ratio": full, "vmr_ratio_matched": float(matched)}


def compared_genes(task: Task, min_mean: float) -> np.ndarray:
    """Genes with a mean count of at least ``min_mean`` in the task's training cells.

    Chosen without looking at the cells compared: a gene picked for its mean in the
    held-out cells is one whose held-out cells happen to have more (and burstier) counts,
    which biases the ratio low on sparse data.
    """
    return np.asarray(task.train.layers["counts"].mean(axis=0)).ravel() >= min_mean


def _pool(sources, source: str | None, default: str) -> int:
    obs = sources.obs["perturbation"].astype(str)
    return obs.size if (source or default) == "all" else int((obs == "ctrl").sum())


def _half_split(task: Task, seed: int) -> tuple[Task, object]:
    """The task trained on a random half of each training condition's cells, and the rest."""
    rng = np.random.default_rng(seed)
    codes = task.train.obs["perturbation"].astype(str).to_numpy()
    keep = np.zeros(task.train.n_obs, dtype=bool)
    for cond in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == cond))
        keep[rows[: (len(rows) + 1) // 2]] = True
    half = dataclasses.replace(task, train=task.train[keep].copy())
    return half, task.train[~keep].copy()


def _row(task, seed, cells, source, method, cond, pred, obs, genes) -> dict:
    labels = {"task": task.name, "seed": seed, "cells": cells, "source": source}
    return {**labels, "method": method, "condition": cond, **figure(pred, obs, genes, seed)}


def _predictions(task: Task, model, seed: int, cells: str, new, genes: np.ndarray) -> list:
    """The rows of one model: every held-out condition, source and reference."""
    sources = new if cells == "new" else model.adata
    default = "ctrl" if cells == "new" else model.default_source_
    extra = {"adata": new} if cells == "new" else {}
    rows = []
    for cond in task.targets:
        obs = dense(task.test[task.test.obs["perturbation"] == cond].layers["counts"])
        n_held = len(obs)
        for source in SOURCES:
            n = min(n_held, _pool(sources, source, default))
            pred = model.predict(
                [cond], n_cells=n, source=source, seed=seed, scale="counts", method="pdae", **extra
            )
            counts = dense(pred.layers["counts"])
            label = f"None ({default})" if source is None else source
            rows.append(_row(task, seed, cells, label, "pdae", cond, counts, obs, genes))
            if source is None and cells == "registered":  # no cell-to-cell variation
                poisson = np.random.default_rng(seed).poisson(
                    np.broadcast_to(counts.mean(axis=0), counts.shape)
                )
                rows.append(_row(task, seed, "poisson", "-", "-", cond, poisson, obs, genes))
        # what a user gets, method="auto": a baseline moves control cells, each once (new
        # cells: their control cells, whatever the method)
        baseline = model.prediction_method_ != "pdae" or cells == "new"
        pool = _pool(sources, "ctrl" if baseline else None, default)
        pred = model.predict([cond], n_cells=min(n_held, pool), seed=seed, scale="counts", **extra)
        method = pred.uns["pdae"]["method"]
        counts = dense(pred.layers["counts"])
        rows.append(_row(task, seed, cells, "auto", method, cond, counts, obs, genes))
    return rows


def floors(task: Task, seed: int, genes: np.ndarray, sizes: list[int]) -> list:
    """The measured cells against themselves: what the figure is for measured counts.

    Per held-out condition, a random half of its cells against the other half
    (``halves``), and a random ``n`` of its cells against the rest for each ``n`` of
    ``sizes`` smaller than the condition (``n cells``: the size of a prediction from a
    small source pool, scored as it is).
    """
    rows = []
    for cond in task.targets:
        obs = dense(task.test[task.test.obs["perturbation"] == cond].layers["counts"])
        n_held = len(obs)
        perm = np.random.default_rng(seed).permutation(n_held)
        small = (n for n in sizes if n < n_held and n != n_held // 2)
        parts = [("halves", n_held // 2), *((f"{n} cells", n) for n in small)]
        for label, n in parts:
            sample, rest = obs[perm[:n]], obs[perm[n:]]
            rows.append(_row(task, seed, "floor", label, "-", cond, sample, rest, genes))
    return rows


def run_task(
    name: str, seeds: list[int], min_mean: float, train_kwargs: dict, kinds=("registered", "new")
):
    """The rows of each model of the task, one table per model as it is done.

    ``kinds``: the models to fit, ``"registered"`` (on the task's training cells) and
    ``"new"`` (on half of them, predicting from the other half).
    """
    task = TASKS[name]()
    genes = compared_genes(task, min_mean)
    n_ctrl = int((task.train.obs["perturbation"] == "ctrl").sum())
    for seed in seeds:
        n_new_ctrl = _pool(_half_split(task, seed)[1], "ctrl", "ctrl")
        yield pd.DataFrame(floors(task, seed, genes, sorted({n_ctrl, n_new_ctrl})))
        for cells in kinds:
            fit_task, new = (task, None) if cells == "registered" else _half_split(task, seed)
            model, fit_s = fit_pdae(fit_task, seed, train_kwargs=train_kwargs)
            yield pd.DataFrame(_predictions(task, model, seed, cells, new, genes))
            print(
                f"{name} seed {seed} {cells} cells: fit {fit_s:.0f} s, default source "
                f"{model.default_source_}, chosen {model.prediction_method_}",
                flush=True,
            )


def _fmt(values: pd.Series) -> str:
    if len(values) > 1:
        return f"{values.mean():.2f} ± {values.std():.2f}"
    return f"{values.mean():.2f}"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per task, cells and source: each figure over conditions and seeds."""
    out = []
    for (task, cells, source), part in table.groupby(["task", "cells", "source"], sort=False):
        row = {"task": task, "cells": cells, "source": source}
        row["method"] = ", ".join(sorted(set(part["method"]) - {"-"}))
        for col, name in (("vmr_ratio_matched", "size-matched"), ("vmr_ratio", "vs all")):
            values = part[col]
            row[f"{name}: median over conditions"] = _fmt(part.groupby("seed")[col].median())
            row[f"{name}: range"] = f"{values.min():.2f}-{values.max():.2f}"
            row[f"{name}: within 25%"] = (
                f"{int(((values - 1).abs() <= TOLERANCE).sum())}/{len(part)}"
            )
        row["genes"] = f"{part['n_genes'].min()}-{part['n_genes'].max()}"
        row["cells predicted"] = f"{part['n_cells'].min()}-{part['n_cells'].max()}"
        row["held-out cells"] = f"{part['n_held_out'].min()}-{part['n_held_out'].max()}"
        out.append(row)
    return pd.DataFrame(out)


def per_condition(table: pd.DataFrame, task: str) -> pd.DataFrame:
    """Mean over seeds of each condition's size-matched figure, a column per cells, source."""
    part = table[table["task"] == task]
    col = part["cells"] + " " + part["source"].astype(str)
    wide = part.assign(col=col).pivot_table(
        index="condition", columns="col", values="vmr_ratio_matched", aggfunc="mean", sort=False
    )
    return wide.round(2).astype(object).where(wide.notna(), "")


def _md(frame: pd.DataFrame, index: bool = False) -> list[str]:
    frame = frame.reset_index() if index else frame
    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |"]
    lines.append("|---" * len(frame.columns) + "|")
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.to_numpy()]
    return lines


def markdown(table: pd.DataFrame, min_mean: float) -> str:
    seeds = sorted(int(x) for x in table["seed"].unique())
    lines = [
        "## Median per-gene VMR ratio, predicted counts / held-out counts",
        "",
        f"Training seeds {seeds}, PDAE defaults. Per held-out condition: the median, over the",
        f"genes with a mean count of at least {min_mean} in the training cells, of",
        "VMR(predicted) / VMR(held-out); 1 is the measured count noise, the goal within 25%.",
        "`size-matched`: against subsets of as many held-out cells as predicted cells",
        f"(median over {N_SUBSETS} subsets; the same figure where as many cells were",
        "predicted as held out); `vs all`: against every held-out cell. Median over",
        "conditions: per seed, then mean ± sd over seeds; range and `within 25%` over every",
        "condition and seed. `source` `None (x)`: the default, which took `x` (for new",
        'cells: their control cells); `auto`: `predict(scale="counts")` as called by a user,',
        "with the method the model chose. References: `floor`, measured against measured",
        "cells: one half of the held-out cells against the other (`halves`), and `n cells`",
        "of them against the rest (scored as a prediction of that size from a pool of `n`",
        "control cells); `poisson`, Poisson counts around the per-gene means of the default",
        "prediction (no cell-to-cell variation).",
        "",
        *_md(summary(table)),
    ]
    for task in dict.fromkeys(table["task"]):
        lines += ["", f"### {task}: size-matched figure per held-out condition (mean over seeds)"]
        lines += ["", *_md(per_condition(table, task), index=True)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["counts", "datlinger_combo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--min-mean", type=float, default=0.1)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the model's")
    parser.add_argument("--out", default=None)
    parser.add_argument("--suffix", default="", help="suffix of the result files")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--cells", nargs="+", default=["registered", "new"], choices=["registered", "new"]
    )
    parser.add_argument(
        "--summarise", nargs="+", default=None, help="only write the tables of these CSV files"
    )
    args = parser.parse_args()
    out = None if args.out is None else Path(args.out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    csv = None if out is None else out / f"counts_dispersion{args.suffix}.csv"
    if args.summarise:
        read = [pd.read_csv(f, keep_default_na=False, na_values=[""]) for f in args.summarise]
        table = pd.concat(read, ignore_index=True)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        train_kwargs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
        parts = []
        for name in args.tasks:
            for part in run_task(name, args.seeds, args.min_mean, train_kwargs, args.cells):
                parts.append(part)
                if csv is not None:  # after every model: a stopped run keeps what it did
                    pd.concat(parts, ignore_index=True).to_csv(csv, index=False)
        table = pd.concat(parts, ignore_index=True)
        print(f"done in {time.perf_counter() - t0:.0f} s")
    text = markdown(table, args.min_mean)
    print(text)
    if out is not None:
        table.to_csv(csv, index=False)
        (out / f"counts_dispersion{args.suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
