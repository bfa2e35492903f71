"""Where does PDAE lose accuracy? Error decomposition on the count simulation and real data.

For each task (see ``_tasks.py``) and decoder setting, trains one PDAE and reports, for the
held-out conditions and for the training conditions themselves (in-sample, the control cells of
the context moved to them):

- ``ed``: energy distance to the observed cells (``tl.evaluate``), next to the noise floor
  (``oracle_half``) and the linear baseline;
- ``mean_err``: L2 distance of the mean profiles;
- ``log_sd_ratio``: median over genes of ``log(sd_pred / sd_true)`` (spread; 0 is right);
- ``zero_err``: mean over genes of ``|P_pred(x = 0) - P_true(x = 0)|`` (the zeros);
- ``corr_err``: mean absolute difference of the gene-gene correlation matrices over the 50
  most variable genes (cell-to-cell correlation);
- ``floor``: the in-sample noise floor (half of a training condition's cells vs the other half);
- ``identity_ed``: for context tasks, the energy distance of the model's "no perturbation"
  prediction in the target context (its own control cells moved to the control) to those
  control cells: does a prediction keep the context's identity?

    python benchmarks/diagnose.py --tasks counts datlinger_combo --configs default residual

Prints one table per task and writes ``<out>_<task>.csv`` when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd
import scvi
from _tasks import TASKS, Task, baselines, control_cells, protocol_cells, score

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

CONFIGS = {
    "default": {},
    "generative": {"decoder": "generative"},
    "residual": {"decoder": "residual", "gene_shift": False},
    "residual_gs": {"decoder": "residual"},
    "mult": {"decoder": "multiplicative", "gene_shift": False},
    "mult_gs": {"decoder": "multiplicative"},
}


def _dense(adata) -> np.ndarray:
    x = adata.X
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def decompose(pred: np.ndarray, true: np.ndarray, top: np.ndarray) -> dict[str, float]:
    sd_p, sd_t = pred.std(0), true.std(0)
    ok = (sd_t > 1e-8) & (sd_p > 1e-8)
    cp = np.corrcoef(pred[:, top], rowvar=False)
    ct = np.corrcoef(true[:, top], rowvar=False)
    off = ~np.eye(len(top), dtype=bool)
    return {
        "mean_err": float(np.linalg.norm(pred.mean(0) - true.mean(0))),
        "log_sd_ratio": float(np.median(np.log(sd_p[ok] / sd_t[ok]))),
        "zero_err": float(np.mean(np.abs((pred <= 1e-6).mean(0) - (true <= 1e-6).mean(0)))),
        "corr_err": float(np.nanmean(np.abs(cp - ct)[off])),
    }


def by_condition(pred, truth, top) -> pd.DataFrame:
    rows = []
    lab_p = pred.obs["perturbation"].astype(str).to_numpy()
    lab_t = truth.obs["perturbation"].astype(str).to_numpy()
    xp, xt = _dense(pred), _dense(truth)
    for cond in sorted(set(lab_p) & set(lab_t)):
        rows.append({"condition": cond, **decompose(xp[lab_p == cond], xt[lab_t == cond], top)})
    return pd.DataFrame(rows)


def epochs_for(n_train: int, steps: int | None) -> int | None:
    """Epochs of about ``steps`` default grouped steps (16 x 16 observed cells a step)."""
    return None if steps is None else max(1, int(np.ceil(steps / np.ceil(n_train / 256))))


def run(task: Task, config: str, seed: int, max_epochs: int | None) -> list[dict]:
    scvi.settings.seed = seed
    train = task.train.copy()
    pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl", **task.setup)
    model = pdae.model.PDAE(train, **CONFIGS[config])
    t0 = time.perf_counter()
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    fit_s = time.perf_counter() - t0
    top = np.argsort(-_dense(train).var(0))[:50]
    out = []
    # held-out conditions
    pred = model.predict(
        task.targets, n_cells=protocol_cells(task), context=task.context, seed=seed
    )
    ed = score(task, pred)[["condition", "energy_distance"]]
    dec = by_condition(pred, task.test, top).merge(ed, on="condition")
    out.append(
        {
            "task": task.name,
            "config": config,
            "seed": seed,
            "where": "held-out",
            "fit_s": fit_s,
            **dec.drop(columns="condition").mean().to_dict(),
        }
    )
    # training conditions, in-sample (in the target context for context tasks)
    obs = train.obs
    in_ctx = np.ones(train.n_obs, dtype=bool)
    if task.context_key is not None:
        in_ctx = (obs[task.context_key].astype(str) == task.context).to_numpy()
    seen = sorted(set(obs["perturbation"].astype(str)[in_ctx]) - {"ctrl"})[:12]
    # sources: the control cells of the context, so that no cell of a condition predicts itself
    pred_in = model.predict(seen, n_cells=300, source="ctrl", context=task.context, seed=seed)
    truth_in = train[in_ctx & obs["perturbation"].astype(str).isin(seen).to_numpy()]
    ed_in = pdae.tl.evaluate(
        pred_in, truth_in, adata_control=control_cells(task), metrics=["energy_distance"]
    )
    half = pdae.tl.predict_baseline(
        train, seen, method="oracle_half", adata_true=truth_in, seed=seed
    )
    ed_half = pdae.tl.evaluate(
        half,
        truth_in[half.uns["pdae"]["oracle_reference_cells"]],
        adata_control=control_cells(task),
        metrics=["energy_distance"],
    )
    dec_in = by_condition(pred_in, truth_in, top).merge(
        ed_in[["condition", "energy_distance"]], on="condition"
    )
    out.append(
        {
            "task": task.name,
            "config": config,
            "seed": seed,
            "where": "in-sample",
            "fit_s": fit_s,
            **dec_in.drop(columns="condition").mean().to_dict(),
            "floor": float(ed_half["energy_distance"].mean()),
        }
    )
    if task.context_key is not None:
        ctrl = control_cells(task)
        pred_c = model.predict(
            ["ctrl"], n_cells=ctrl.n_obs, source="ctrl", context=task.context, seed=seed
        )
        x_ctrl = _dense(ctrl)
        out[0]["identity_ed"] = pdae.tl.energy_distance(_dense(pred_c), x_ctrl)
    return out


def baseline_rows(task: Task, seed: int) -> list[dict]:
    top = np.argsort(-_dense(task.train).var(0))[:50]
    rows = []
    for method, pred in baselines(task, seed=seed).items():
        truth = task.test
        if method == "oracle_half":
            truth = task.test[pred.uns["pdae"]["oracle_reference_cells"]]
        ed = score(task, pred)[["condition", "energy_distance"]]
        dec = by_condition(pred, truth, top).merge(ed, on="condition")
        rows.append(
            {
                "task": task.name,
                "config": method,
                "seed": seed,
                "where": "held-out",
                **dec.drop(columns="condition").mean().to_dict(),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", nargs="+", default=["counts", "datlinger_combo", "datlinger_context"]
    )
    parser.add_argument("--configs", nargs="+", default=["generative", "residual"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the model's)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    for name in args.tasks:
        task = TASKS[name]()
        rows = baseline_rows(task, 0)
        for config in args.configs:
            for seed in args.seeds:
                rows += run(task, config, seed, epochs_for(task.train.n_obs, args.steps))
        table = pd.DataFrame(rows)
        print(f"\n## {name}  (train {task.train.shape}, held-out {task.test.shape})")
        print(table.drop(columns=["task"]).round(4).to_string(index=False), flush=True)
        if args.out:  # one file per task: context tasks have an extra column
            table.to_csv(f"{args.out}_{name}.csv", index=False)


if __name__ == "__main__":
    main()
