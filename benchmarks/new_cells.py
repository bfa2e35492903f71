"""New cells without retraining: ``model.predict(targets, adata=new_cells)`` on a context the
model never saw, against the new cells unchanged and the new cells + the mean shift measured
in the training contexts.

Tasks: one context is held out of training entirely; its control cells are the new cells,
its perturbed cells the truth.

- ``sim_basal``: simulation (:func:`pdae_sc.data.simulate`, 8 latent dimensions, 100 genes)
  with four contexts that differ only in their basal state (a hidden latent offset each:
  none, ``1.5 w6``, ``1.5 w7``); the new context has the offset ``0.75 (w6 + w7)``, between
  the others. 6 singles and 4 doubles in every context, 3 more doubles in the new context
  only (never measured, scored apart). The case the method covers.
- ``sim_basal_outside``: the same with the new context's offset ``3 w6``, twice B's: a
  basal state outside the range the network was trained on (the guard of the new-cells
  rule's use of the network is tested there).
- ``sim_basal_counts``: the same with negative-binomial counts, normalised + log1p as a
  user would: non-negative data, so the model's default decoder is the residual one (the
  Gaussian simulation gets the generative decoder), as on real screens.
- ``papalexi_rep3``: Papalexi 2021 ECCITE-seq, trained on replicates ``rep_1`` and
  ``rep_2``; the new cells are the non-targeting cells of ``rep_3``, the truth its
  knockouts with at least 50 cells. Replicates of one cell line: close to "only the basal
  state differs". ``papalexi_rep1``: the same with ``rep_1`` held out (trained on
  ``rep_2`` and ``rep_3``), the replicate whose control cells lie furthest outside the
  others' (``new_cells_basal.py``).
- ``datlinger_stim``: Datlinger 2017 CROP-seq, trained on the unstimulated cells; the new
  cells are the stimulated control cells, the truth the stimulated knockouts. Outside what
  the method covers: stimulation changes what the knockouts do (most act on the TCR
  pathway), not only the basal state. A test of how badly both methods fail there.

Methods, every one predicting as many cells per target as there are new control cells,
each new cell used once (the honest protocol of the user guide):

- ``pdae``: ``predict(adata=new)``, ``method="auto"``: each target measured in training
  its measured mean shift; a target never measured the network's cells where the network was
  clearly closer on the model's held-out conditions, else the model's baseline if it chose
  one there, else the shifting baseline that did best there (``chosen`` names the baseline
  and how many targets the network moved);
- ``pdae_network``: ``method="pdae"``;
- ``linear``, ``additive``, ``mean_response``: ``method="linear"`` etc., the new cells +
  that baseline's shift fitted on the training cells;
- ``mean_shift``: the new cells + the target's mean shift (mean minus control mean,
  averaged over the training contexts that measured it; for a combination never measured
  the sum of its singles'), computed here, independently of the package;
- ``unchanged``: the new cells as they are (the control baseline);
- ``pooled``: perturbed training cells of every condition, drawn without replacement (it
  does not use the new cells);
- ``oracle_half``: half of the true cells against the other half (the noise floor).

Scored by :func:`pdae_sc.tl.evaluate` against the true cells, as ``_tasks.score`` does.

    nice python benchmarks/new_cells.py [--tasks ...] [--seeds 0 1 2] [--out benchmarks/results]
    python benchmarks/new_cells.py --summarise a.csv b.csv --out benchmarks/results

Writes ``new_cells.csv`` (one row per task, seed, method and condition) and
``new_cells.md`` under ``--out`` and prints the summary.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from _tasks import MIN_TEST_CELLS, Task, datlinger, dense, fit_pdae, papalexi_context

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

METRICS = ["energy_distance", "mean_l2", "pearson_delta"]
ORDER = [
    "oracle_half",
    "pdae",
    "pdae_network",
    "linear",
    "additive",
    "mean_response",
    "mean_shift",
    "unchanged",
    "pooled",
]


@dataclass
class NewCellsTask:
    """Training cells, the new (control) cells of the held-out context and its truth."""

    task: Task  # train, test (the truth), targets, setup
    new: ad.AnnData
    covered: str


def _held_out_context(name, adata, key, context, setup, covered) -> NewCellsTask:
    """Hold ``adata.obs[key] == context`` out entirely; its control cells are the new cells."""
    out = (adata.obs[key].astype(str) == context).to_numpy()
    ctrl = (adata.obs["perturbation"].astype(str) == "ctrl").to_numpy()
    n_per = adata.obs["perturbation"][out & ~ctrl].value_counts()
    targets = sorted(str(t) for t in n_per.index[n_per >= MIN_TEST_CELLS])
    truth = out & adata.obs["perturbation"].isin(targets).to_numpy()
    new = adata[out & ctrl].copy()
    del new.obs["perturbation"]  # unlabelled, as a user's new control cells often are
    task = Task(name, adata[~out].copy(), adata[truth].copy(), targets, key, None, setup)
    return NewCellsTask(task, new, covered)


#: Hidden basal offset of the new context D: between the training contexts' (``inside``)
#: or twice B's along one of their axes (``outside``).
NEW_OFFSETS = {"inside": {"P6": 0.75, "P7": 0.75}, "outside": {"P6": 3.0}}


def sim_basal(seed: int = 0, counts: bool = False, new: str = "inside") -> NewCellsTask:
    visible = [f"P{k}" for k in range(6)]
    doubles = ["P0+P1", "P2+P3", "P4+P5", "P1+P2"]
    offsets = {"A": {}, "B": {"P6": 1.5}, "C": {"P7": 1.5}, "D": NEW_OFFSETS[new]}
    unmeasured = ["P0+P2", "P1+P4", "P3+P5"]  # in the new context only: never measured
    conditions, doses, contexts = [], [], []
    for ctx, hidden in offsets.items():
        for cond in ["ctrl", *visible, *doubles, *(unmeasured if ctx == "D" else [])]:
            tokens = {} if cond == "ctrl" else dict.fromkeys(cond.split("+"), 1.0)
            tokens.update(hidden)
            if not tokens:
                conditions.append("ctrl")
                doses.append(None)
            else:
                conditions.append("+".join(tokens))
                doses.append("+".join(f"{d:g}" for d in tokens.values()))
            contexts.append((ctx, cond))
    sim = pdae.data.simulate(
        n_perturbations=8,
        n_latent=8,
        n_genes=100,
        n_cells_per_condition=100,
        conditions=conditions,
        dosages=doses,
        counts=counts,
        seed=seed,
    )
    per_cell = np.repeat(np.arange(len(contexts)), 100)  # simulate keeps the order asked
    obs = pd.DataFrame(
        {
            "perturbation": [contexts[i][1] for i in per_cell],
            "context": [contexts[i][0] for i in per_cell],
        },
        index=sim.obs_names,
    )
    setup = {"context_keys": ["context"]}
    if counts:  # the counts as a user gets them, then normalise + log1p
        adata = ad.AnnData(sim.layers["counts"].astype(np.float32), obs=obs, var=sim.var)
        pdae.pp.normalize_counts(adata)
        setup["counts_layer"] = "counts"
    else:
        adata = ad.AnnData(sim.X, obs=obs, var=sim.var)
    name = "sim_basal_counts" if counts else "sim_basal"
    name += "_outside" if new == "outside" else ""
    covered = "basal only, outside the training range" if new == "outside" else "yes (basal only)"
    return _held_out_context(name, adata, "context", "D", setup, covered)


def papalexi_replicate(rep: str = "rep_3") -> NewCellsTask:
    task = papalexi_context()  # the loading and normalisation of _tasks, then rejoined
    adata = ad.concat([task.train, task.test], merge="same")
    adata.var_names = task.train.var_names
    return _held_out_context(
        f"papalexi_{rep.replace('_', '')}",
        adata,
        "rep",
        rep,
        {"counts_layer": "counts", "context_keys": ["rep"]},
        "close (replicates)",
    )


def datlinger_state(state: str = "stimulated") -> NewCellsTask:
    adata = datlinger()
    adata.obs["perturbation"] = adata.obs["target"].astype(str)
    return _held_out_context(
        "datlinger_stim" if state == "stimulated" else "datlinger_rest",
        adata,
        "state",
        state,
        {"counts_layer": "counts", "context_keys": ["state"]},
        "no (effects change)",
    )


TASKS = {
    "sim_basal": sim_basal,
    "sim_basal_counts": lambda: sim_basal(counts=True),
    "sim_basal_outside": lambda: sim_basal(new="outside"),
    "papalexi_rep3": papalexi_replicate,
    "papalexi_rep1": lambda: papalexi_replicate("rep_1"),
    "datlinger_stim": datlinger_state,
}


def _measured(train: ad.AnnData, key: str, target: str) -> np.ndarray | None:
    """Mean of ``target`` minus the control mean in each context, averaged (``None``: none)."""
    obs, deltas = train.obs, []
    for ctx in obs[key].astype(str).unique():
        in_ctx = (obs[key].astype(str) == ctx).to_numpy()
        hit = in_ctx & (obs["perturbation"].astype(str) == target).to_numpy()
        ctrl = in_ctx & (obs["perturbation"].astype(str) == "ctrl").to_numpy()
        if hit.any() and ctrl.any():
            deltas.append(dense(train.X[hit]).mean(0) - dense(train.X[ctrl]).mean(0))
    return np.mean(deltas, axis=0) if deltas else None


def shifted_new_cells(nt: NewCellsTask, method: str) -> ad.AnnData:
    """The new cells, each once per target: unchanged, or + the mean shift measured elsewhere."""
    train, new = nt.task.train, nt.new
    x_new = dense(new.X)
    blocks = []
    for target in nt.task.targets:
        shift = np.zeros(new.n_vars)
        if method == "mean_shift":
            shift = _measured(train, nt.task.context_key, target)
            if shift is None:  # never measured: the sum of its singles' measured shifts
                shift = sum(_measured(train, nt.task.context_key, t) for t in target.split("+"))
        blocks.append((x_new + shift).astype(np.float32))
    n = new.n_obs
    return ad.AnnData(
        np.vstack(blocks),
        obs=pd.DataFrame(
            {
                "perturbation": np.repeat(nt.task.targets, n),
                "pdae_source_cell": np.tile(new.obs_names.to_numpy(), len(nt.task.targets)),
            },
            index=[f"{method}_{i}" for i in range(n * len(nt.task.targets))],
        ),
        var=new.var[[]],
        uns={"pdae": {"method": method}},
    )


def score(nt: NewCellsTask, pred: ad.AnnData, seed: int) -> pd.DataFrame:
    """:func:`pdae_sc.tl.evaluate` against the true cells, control mean from the new cells."""
    truth = nt.task.test
    if pred.uns["pdae"]["method"] == "oracle_half":
        truth = truth[pred.uns["pdae"]["oracle_reference_cells"]]
    return pdae.tl.evaluate(pred, truth, adata_control=nt.new, metrics=METRICS, seed=seed)


def run_task(name: str, seeds: list[int], out_dir: Path | None = None) -> pd.DataFrame:
    nt = TASKS[name]()
    n = nt.new.n_obs
    print(
        f"{name}: {nt.task.train.n_obs} training cells, {n} new cells, "
        f"{len(nt.task.targets)} targets; every method predicts {n} cells per target",
        flush=True,
    )
    rows = []

    measured = set(nt.task.train.obs["perturbation"].astype(str))

    def add(method, pred, seed, **extra):
        s = score(nt, pred, seed)
        s["method"], s["seed"] = method, seed
        s["kind"] = np.where(s["condition"].isin(measured), "measured", "unmeasured")
        for k, v in extra.items():
            s[k] = v
        rows.append(s)
        return s

    for seed in seeds:
        for method in ("unchanged", "mean_shift"):
            add(method, shifted_new_cells(nt, method), seed)
        oracle = pdae.tl.predict_baseline(
            nt.task.train,
            nt.task.targets,
            method="oracle_half",
            adata_true=nt.task.test,
            seed=seed,
        )
        add("oracle_half", oracle, seed)
        pooled = pdae.tl.predict_baseline(
            nt.task.train, nt.task.targets, method="pooled", n_cells=n, seed=seed
        )
        add("pooled", pooled, seed)  # registered perturbed cells, not the new ones
        model, fit_s = fit_pdae(nt.task, seed)
        kw = {"n_cells": n, "seed": seed, "adata": nt.new}
        auto = model.predict(nt.task.targets, **kw)
        shifted_by = auto.uns["pdae"]["extrapolation"]["new_cells_shift"]
        n_net = int((shifted_by == "pdae").sum())  # never-measured targets the network moved
        chosen = auto.uns["pdae"]["method"] + (f" + network x{n_net}" if n_net else "")
        registered = getattr(model, "prediction_method_", "pdae")
        s = add("pdae", auto, seed, chosen=chosen, chosen_registered=registered, fit_s=fit_s)
        net = add("pdae_network", model.predict(nt.task.targets, method="pdae", **kw), seed)
        for method in ("linear", "additive", "mean_response"):
            add(method, model.predict(nt.task.targets, method=method, **kw), seed)
        held = getattr(model, "held_out_scores_", None)
        if held is not None and not held.empty:
            means = held[["pdae", "linear", "additive", "mean_response", "control"]].mean()
            print(f"{name} seed {seed} held-out means: " + means.round(4).to_json(), flush=True)
            if out_dir is not None:  # the choice can be re-made from these
                held.assign(task=name, seed=seed).to_csv(
                    out_dir / f"new_cells_held_out_{name}_{seed}.csv", index=False
                )
        if out_dir is not None:  # what is done so far, in case the run is stopped
            pd.concat(rows, ignore_index=True).assign(task=name, covered=nt.covered).to_csv(
                out_dir / f"new_cells_partial_{name}.csv", index=False
            )
        print(
            f"{name} seed {seed}: pdae {s['energy_distance'].mean():.4f} (chose {chosen} for "
            f"new cells, {registered} for registered ones; network "
            f"{net['energy_distance'].mean():.4f}) in {fit_s:.0f} s",
            flush=True,
        )
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "task", name)
    out["covered"] = nt.covered
    return out


def markdown(table: pd.DataFrame) -> str:
    kind = table["kind"] if "kind" in table else pd.Series("measured", index=table.index)
    unmeasured = kind.eq("unmeasured")  # targets never measured: a row of their own
    table = table.assign(task=table["task"].where(~unmeasured, table["task"] + " (unmeasured)"))
    per_seed = table.groupby(["task", "method", "seed"])[METRICS].mean()
    mean = per_seed.groupby(["task", "method"]).mean()
    sd = per_seed.groupby(["task", "method"]).std()
    ed = per_seed["energy_distance"].unstack("method")
    head = ["task", "covered", "targets", "new cells", *ORDER[:2], "chosen (per seed)"]
    head += [*ORDER[2:], "PDAE - mean shift", "network - mean shift"]
    lines = [
        "## Energy distance to the held-out context's perturbed cells",
        "",
        "Mean over targets, mean ± sd over training seeds; the differences per seed, then",
        "mean ± sd. `chosen`: the method `predict(adata=new)` used (`method='auto'`), per",
        "seed. The acceptance asks for `pdae` no worse than `mean_shift`.",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for task in dict.fromkeys(table["task"]):
        part = ed.loc[task]
        sub = table[table["task"] == task]
        picks = sub[sub["method"] == "pdae"].groupby("seed")["chosen"].first()
        ed_mean, ed_sd = mean["energy_distance"], sd["energy_distance"]
        cells = [f"{ed_mean.loc[(task, m)]:.4f} ± {ed_sd.loc[(task, m)]:.4f}" for m in ORDER]
        n_new = int(sub[sub["method"] == "unchanged"]["n_pred"].iloc[0])
        diffs = [part[m] - part["mean_shift"] for m in ("pdae", "pdae_network")]
        row = [task, sub["covered"].iloc[0], str(sub["condition"].nunique()), str(n_new)]
        row += [*cells[:2], ", ".join(map(str, picks)), *cells[2:]]
        row += [f"{d.mean():+.4f} ± {d.std():.4f}" for d in diffs]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Every metric, per task", ""]
    for task in dict.fromkeys(table["task"]):
        lines += [f"### {task}", "", "| method | " + " | ".join(METRICS) + " |"]
        lines.append("|---" * (len(METRICS) + 1) + "|")
        for m in ORDER:
            vals = [f"{mean.loc[(task, m), k]:.4f} ± {sd.loc[(task, m), k]:.4f}" for k in METRICS]
            lines.append(f"| {m} | " + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--suffix", default="", help="suffix of the result files")
    parser.add_argument(
        "--summarise", nargs="+", default=None, help="only rewrite the tables from these csv"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.summarise:
        table = pd.concat([pd.read_csv(f) for f in args.summarise], ignore_index=True)
    else:
        out_dir = None if args.out is None else Path(args.out)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        runs = [run_task(t, args.seeds, out_dir) for t in args.tasks]
        table = pd.concat(runs, ignore_index=True)
    text = markdown(table)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if not args.summarise:
            table.to_csv(out / f"new_cells{args.suffix}.csv", index=False)
        (out / f"new_cells{args.suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
