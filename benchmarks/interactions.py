"""Genetic interaction scores: does PDAE rank unmeasured pairs by their true non-additivity?

1. Simulation (``pdae.data.simulate``, 10 perturbations, all 45 doubles): the true scores of
   every double come from a large sample of the simulator (same seed, so the same ``W`` and
   decoder, ``--n-truth`` cells per condition). ``--n-holdout`` doubles are held out, PDAE
   is trained with its default settings on the rest (100 cells per condition), and the
   predicted scores of the held-out pairs are rank-correlated (Spearman) with the true
   ones: energy-distance departure from the additive expectation, and magnitude. The
   additive baseline predicts no interaction at all (departure 0, ``c_A = c_B = 1``) for
   every pair, so its rank correlation is undefined. As a ceiling, the same scores measured
   on the held-out doubles' own 100 cells are correlated with the truth too.
2. Speed: scoring 1,000 predicted pairs (default ``n_cells=200``) on 100 and on 1,000
   genes, the latter on the default path (every unmeasured pair of 50 perturbations).
3. Real data (Datlinger 2017, bundled): knockout × stimulation. Each ``KO+stim`` is a
   pair of the knockout (unstimulated) and the stimulation (control guides); its scores
   say whether the knockout changes the response to stimulation.

    python benchmarks/interactions.py [--seeds 0 1 2] [--out benchmarks/results]

Writes the per-pair scores (truth, PDAE, measured) to ``interactions.csv`` under ``--out``
(``interactions_counts.csv`` with ``--counts``) and prints the tables that
``results/interactions.md`` reports.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings

import numpy as np
import pandas as pd
import scvi
from scipy.stats import spearmanr

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

SCORES = ("energy_distance", "magnitude", "additive_l2", "model_fit")


def _spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant prediction has no ranking
    return float(spearmanr(a, b).statistic)


def simulation(seed: int, args) -> tuple[list[dict], pd.DataFrame]:
    kw = {"n_perturbations": 10, "n_genes": 100, "seed": seed, "counts": args.counts}
    adata = pdae.data.simulate(n_cells_per_condition=args.n_cells, **kw)
    truth_cells = pdae.data.simulate(n_cells_per_condition=args.n_truth, **kw)
    truth = pdae.tl.interaction_scores(truth_cells, max_cells=args.n_truth).set_index("pair")
    split = pdae.data.split_perturbations(
        adata, holdout="doubles", n_holdout=args.n_holdout, seed=seed
    )
    train, test = adata[split == "train"].copy(), adata[split == "test"]
    held = sorted(set(test.obs["perturbation"].astype(str)))

    pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
    scvi.settings.seed = seed
    model = pdae.model.PDAE(train)
    t0 = time.perf_counter()
    model.train(enable_progress_bar=False)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = pdae.tl.predicted_interaction_scores(model, held, n_cells=args.n_pred, seed=seed)
    pred_s = time.perf_counter() - t0
    # the ceiling: the same scores measured on the held-out doubles' own cells
    measured = pdae.tl.interaction_scores(adata, pairs=held, seed=seed)
    rows = []
    tables = []
    for name, table in (("pdae", pred), ("measured_100_cells", measured)):
        t = table.set_index("pair").loc[held]
        row = {"seed": seed, "method": name, "n_pairs": len(held)}
        for s in SCORES:
            row[f"spearman_{s}"] = _spearman(t[s], truth.loc[held, s])
        rows.append(row)
        tables.append(t.assign(method=name, seed=seed))
    additive = {"seed": seed, "method": "additive", "n_pairs": len(held)}
    additive.update({f"spearman_{s}": float("nan") for s in SCORES})
    rows.append(additive)
    tables.append(truth.loc[held].assign(method="truth", seed=seed))
    rows[0]["train_s"], rows[0]["score_s"] = train_s, pred_s
    return rows, pd.concat(tables).reset_index()


def speed(seed: int) -> list[dict]:
    out = []
    # 100 genes: 1,000 pairs of a 10-perturbation model (pairs repeat)
    adata = pdae.data.simulate(n_perturbations=10, n_cells_per_condition=50, seed=seed)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata)
    model.train(max_epochs=1, enable_progress_bar=False)
    pairs = [f"P{a}+P{b}" for a in range(10) for b in range(a + 1, 10)]
    pairs = (pairs * 23)[:1000]
    t0 = time.perf_counter()
    pdae.tl.predicted_interaction_scores(model, pairs, seed=seed)
    out.append({"n_genes": 100, "n_pairs": 1000, "seconds": time.perf_counter() - t0})
    # 1,000 genes, default pairs: all unmeasured pairs of 50 perturbations (singles measured)
    adata = pdae.data.simulate(
        n_perturbations=50, n_genes=1000, n_cells_per_condition=20, conditions="singles"
    )
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata)
    model.train(max_epochs=1, enable_progress_bar=False)
    t0 = time.perf_counter()
    table = pdae.tl.predicted_interaction_scores(model, seed=seed)
    out.append({"n_genes": 1000, "n_pairs": len(table), "seconds": time.perf_counter() - t0})
    for row in out:
        row["pairs_per_second"] = row["n_pairs"] / row["seconds"]
    return out


def datlinger() -> pd.DataFrame:
    adata = pdae.datasets.datlinger2017()
    pdae.pp.normalize_counts(adata)
    scores = pdae.tl.interaction_scores(adata, perturbation_key="perturbation", seed=0)
    stim_first = scores["perturbation_a"] == "stim"
    scores["knockout"] = np.where(stim_first, scores["perturbation_b"], scores["perturbation_a"])
    scores["coef_knockout"] = np.where(stim_first, scores["coef_b"], scores["coef_a"])
    scores["coef_stim"] = np.where(stim_first, scores["coef_a"], scores["coef_b"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-cells", type=int, default=100, help="training cells per condition")
    parser.add_argument("--n-truth", type=int, default=2000, help="truth cells per condition")
    parser.add_argument("--n-holdout", type=int, default=15)
    parser.add_argument("--n-pred", type=int, default=1000, help="predicted cells per double")
    parser.add_argument("--counts", action="store_true", help="negative-binomial counts")
    parser.add_argument("--skip-simulation", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-datlinger", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    pd.set_option("display.width", 200)

    rows, tables = [], []
    for seed in [] if args.skip_simulation else args.seeds:
        r, t = simulation(seed, args)
        rows += r
        tables.append(t)
        print(pd.DataFrame(r).round(3).to_string(index=False), flush=True)
    if rows:
        summary = pd.DataFrame(rows)
        name = "interactions_counts.csv" if args.counts else "interactions.csv"
        pd.concat(tables).to_csv(os.path.join(args.out, name), index=False)
        print(summary.groupby("method").mean(numeric_only=True).round(3).to_string())
    if not args.skip_speed:
        print(pd.DataFrame(speed(args.seeds[0])).round(2).to_string(index=False), flush=True)
    if not args.skip_datlinger:
        cols = ["knockout", "coef_knockout", "coef_stim", "model_fit", "corr_additive"]
        cols += ["additive_l2", "additive_l2_noise", "energy_distance", "energy_distance_floor"]
        cols += ["energy_distance_null", "n_cells"]
        print(datlinger()[cols].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
