"""Leave genes out: perturbations never measured, predicted through a perturbation embedding.

    python benchmarks/unmeasured_genes.py [--tasks papalexi datlinger] [--seeds 0 1 2]
                                          [--out benchmarks/results]

On each development screen, the knockouts whose target gene is among the measured genes
are split in two: every second one (in alphabetical order) is held out of training
entirely (every replicate, every state), the others stay. The model is set up with the
built-in embedding (``setup_anndata(perturbation_embedding="expression")``: each gene's
loadings in a PCA of the training cells) and predicts the held-out knockouts, which it
never saw; the data identify nothing about them, so every prediction is flagged as
outside the guarantee.

- ``papalexi``: Papalexi 2021 ECCITE-seq, replicate as context; the held-out knockouts are
  predicted in ``rep_3`` from its control cells and scored against their cells there.
- ``datlinger``: Datlinger 2017 CROP-seq, 500 highly variable genes plus the knockout
  targets; the held-out knockouts are predicted alone and with TCR stimulation
  (``"GENE"`` and ``"GENE+stim"``), from the control cells.

Methods, every one predicting the same number of distinct cells per target, none twice
(the control cells of the target context; on Datlinger the 60 unstimulated control cells):

- ``pdae``: ``predict(method="pdae")``, the network with the new knockout placed by the
  embedding; ``pdae_auto``: the model's default (``method="auto"``): a target with a
  never-measured knockout gets the linear model with embeddings, its weights applied to
  the responses measured in the target context (``placed_effects="context"`` of
  ``tl.predict_baseline``; the same as ``linear_embedding`` without a context);
- ``linear_embedding``: the linear model with embeddings
  (``tl.predict_baseline(method="linear", perturbation_embedding="expression")``);
- ``linear``: the linear baseline, which cannot place the new gene: it predicts the rest
  of the target (``"stim"`` for ``"GENE+stim"``, the control cells for ``"GENE"``);
- ``mean_response`` (the mean change of the training perturbations), ``control``,
  ``pooled`` and the oracle half (the noise floor); ``additive`` needs the single
  perturbation measured and does not apply.

Writes ``unmeasured_genes.csv`` (one row per task, seed, method, target) and
``unmeasured_genes.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scvi
import torch
from _tasks import SHARED, Task, _split, labelled_score, papalexi, protocol_cells

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

EMBEDDING = {"perturbation_embedding": "expression"}
ORDER = [
    "oracle_half",
    "pdae",
    "pdae_auto",
    "linear_embedding",
    "linear",
    "mean_response",
    "control",
    "pooled",
]
SIMPLE = ["linear_embedding", "linear", "mean_response", "control", "pooled"]


def _held_genes(adata, key: str) -> list[str]:
    genes = sorted(
        t for t in set(adata.obs[key].astype(str)) if t != "ctrl" and t in adata.var_names
    )
    return genes[1::2]


def papalexi_task(context: str = "rep_3") -> Task:
    adata = papalexi()
    held = _held_genes(adata, "perturbation")
    train, _ = _split(adata, held)
    in_ctx = (adata.obs["rep"] == context).to_numpy()
    test = adata[in_ctx & adata.obs["perturbation"].isin(held).to_numpy()].copy()
    setup = {"counts_layer": "counts", "context_keys": ["rep"], **EMBEDDING}
    return Task("papalexi", train, test, held, "rep", context, setup=setup)


def datlinger_task(n_top: int = 500) -> Task:
    adata = pdae.datasets.datlinger2017()
    pdae.pp.normalize_counts(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat")
    targets = set(adata.obs["target"].astype(str))
    keep = adata.var["highly_variable"].to_numpy() | adata.var_names.isin(list(targets))
    adata = adata[:, keep].copy()
    held = _held_genes(adata, "target")
    mask = adata.obs["target"].astype(str).isin(held).to_numpy()
    train, test = adata[~mask].copy(), adata[mask].copy()
    targets = [t for g in held for t in (g, f"{g}+stim")]
    return Task("datlinger", train, test, targets, setup={"counts_layer": "counts", **EMBEDDING})


TASKS = {"papalexi": papalexi_task, "datlinger": datlinger_task}


def _without_new(task: Task, target: str) -> str:
    """``target`` without its never-measured genes (what the linear baseline can predict)."""
    measured = set(task.train.obs["perturbation"].astype(str).str.split("+").explode())
    kept = [t for t in target.split("+") if t in measured]
    return "+".join(kept) or "ctrl"


def baselines(task: Task, seed: int, n_cells: int) -> dict:
    ctx = {"context_key": task.context_key, "context": task.context} if task.context_key else {}
    out = {}
    for method in ("mean_response", "control", "pooled"):
        out[method] = pdae.tl.predict_baseline(
            task.train, task.targets, method=method, n_cells=n_cells, seed=seed, **ctx
        )
    out["linear_embedding"] = pdae.tl.predict_baseline(
        task.train,
        task.targets,
        method="linear",
        n_cells=n_cells,
        seed=seed,
        perturbation_embedding="expression",
        **ctx,
    )
    reduced = [_without_new(task, t) for t in task.targets]
    linear = pdae.tl.predict_baseline(
        task.train, reduced, method="linear", n_cells=n_cells, seed=seed, **ctx
    )
    # label each block of cells with the target it stands for
    linear.obs["perturbation"] = np.repeat(task.targets, n_cells)
    out["linear"] = linear
    out["oracle_half"] = pdae.tl.predict_baseline(
        task.train, task.targets, method="oracle_half", adata_true=task.test, seed=seed
    )
    return out


def run_task(name: str, seeds: list[int]) -> pd.DataFrame:
    task = TASKS[name]()
    n_cells = protocol_cells(task)
    print(f"{name}: held out {task.targets}; every method predicts {n_cells} distinct cells")
    rows = []
    for seed in seeds:
        for method, pred in baselines(task, seed, n_cells).items():
            rows.append(labelled_score(task, pred, seed, method, fit_s=float("nan")))
        scvi.settings.seed = seed
        train = task.train.copy()
        pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl", **task.setup)
        model = pdae.model.PDAE(train)
        t0 = time.perf_counter()
        model.train(enable_progress_bar=False)
        fit_s = time.perf_counter() - t0
        table = model.check_extrapolation(task.targets, context=task.context)
        emap = model.registration.embedding_map
        for method, kwargs in (("pdae", {"method": "pdae"}), ("pdae_auto", {})):
            pred = model.predict(
                task.targets, n_cells=n_cells, context=task.context, seed=seed, **kwargs
            )
            s = labelled_score(task, pred, seed, method, fit_s=fit_s)
            s["chosen"] = _predicted_by(model, pred, s["condition"])
            s["flagged"] = bool((table["status"].str.startswith("from the embedding")).all())
            s["penalty"] = emap.penalty
            rows.append(s)
        print(
            f"{name} seed {seed}: pdae {rows[-2]['energy_distance'].mean():.4f}, auto "
            f"({rows[-1]['chosen'].iloc[0]}) {rows[-1]['energy_distance'].mean():.4f}; "
            f"map from {emap.names}, penalty {emap.penalty}; fit {fit_s:.0f} s",
            flush=True,
        )
    out = pd.concat(rows, ignore_index=True)
    out.insert(0, "task", name)
    return out


def _predicted_by(model, pred, conditions: pd.Series) -> pd.Series:
    """Per scored condition, the method that predicted it (``predicted_by`` when mixed)."""
    table = pred.uns["pdae"]["extrapolation"]
    chosen = getattr(model, "prediction_method_", "pdae")
    if "predicted_by" not in table.columns:
        return pd.Series(chosen, index=conditions.index)
    names = pred.obs[model.registration.perturbation_key].astype(str).unique()
    by = dict(zip(names, table["predicted_by"], strict=True))
    return conditions.astype(str).map(by).fillna(chosen)


def markdown(table: pd.DataFrame) -> str:
    per_seed = table.groupby(["task", "method", "seed"])["energy_distance"].mean()
    per_seed = per_seed.unstack("method")
    lines = [
        "| task | " + " | ".join(ORDER) + " | best of control, mean_response | flagged |",
        "|---" * (len(ORDER) + 3) + "|",
    ]
    for task in dict.fromkeys(table["task"]):
        part = per_seed.loc[task]
        cells = []
        for m in ORDER:
            sd = f" ± {part[m].std():.4f}" if m.startswith("pdae") else ""
            cells.append(f"{part[m].mean():.4f}{sd}")
        best = min(("control", "mean_response"), key=lambda m: part[m].mean())
        flagged = table[(table["task"] == task) & (table["method"] == "pdae")]["flagged"].all()
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {best} | {flagged} |")
    per_target = (
        table.groupby(["task", "condition", "method"])["energy_distance"].mean().unstack("method")
    )
    lines += ["", "Per held-out target (mean over seeds):", ""]
    lines.append("| task | target | " + " | ".join(ORDER) + " |")
    lines.append("|---" * (len(ORDER) + 2) + "|")
    for (task, target), row in per_target.iterrows():
        lines.append(f"| {task} | {target} | " + " | ".join(f"{row[m]:.4f}" for m in ORDER) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--report",
        nargs="+",
        type=Path,
        default=None,
        help="only write the report from these CSVs of earlier runs (e.g. one per task)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.report is not None:
        table = pd.concat([pd.read_csv(p) for p in args.report], ignore_index=True)
        args.seeds = sorted(int(s) for s in table["seed"].unique())
    else:
        if not SHARED.exists() and "papalexi" in args.tasks:
            raise SystemExit(f"The Papalexi data are not at {SHARED}; use --tasks datlinger.")
        table = pd.concat([run_task(t, args.seeds) for t in args.tasks], ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "unmeasured_genes.csv", index=False)
    text = markdown(table)
    (args.out / "unmeasured_genes.md").write_text(
        "# Leave genes out: never-measured knockouts through the expression embedding\n\n"
        f"`python benchmarks/unmeasured_genes.py --seeds {' '.join(map(str, args.seeds))}`; "
        "energy distance, mean over held-out targets (mean ± sd over training seeds for "
        "PDAE); see the script's docstring for the protocol.\n\n" + text + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
