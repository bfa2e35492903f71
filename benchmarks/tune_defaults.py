"""Compare PDAE decoder noise models and training lengths on the two SPEC §5 regimes.

Prints held-out energy distance (mean over held-out doubles) for each configuration next to
the additive baseline and training time. Used to choose the defaults of ``PDAE``.

    python benchmarks/tune_defaults.py [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd
import scvi

import pdae_sc as pdae

warnings.filterwarnings("ignore")


def regime(name: str, seed: int):
    if name == "clean":
        adata = pdae.data.simulate(
            n_perturbations=10, n_genes=100, n_cells_per_condition=120, basal="laplace", seed=seed
        )
    else:
        adata = pdae.data.simulate(
            n_perturbations=10, n_genes=300, n_cells_per_condition=120, counts=True, seed=seed
        )
    split = pdae.data.split_perturbations(adata, holdout="doubles", n_holdout=10, seed=seed)
    return adata[split == "train"].copy(), adata[split == "test"].copy()


def score(pred, test, train):
    ctrl = train[train.obs["perturbation"] == "ctrl"]
    df = pdae.tl.evaluate(pred, test, adata_control=ctrl, metrics=["energy_distance", "mean_l2"])
    return df["energy_distance"].mean(), df["mean_l2"].mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--regimes", default="clean,counts")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--configs", default="default,no_output_noise,no_latent_noise,lr3e-4")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    configs = {
        "default": {},
        "no_output_noise": {"output_noise": False},
        "no_latent_noise": {"n_noise": 0},
        "act_none": {"output_activation": "none"},
        "small": {"n_hidden": (128, 128), "n_latent": 16},
        "lr3e-4": {"_lr": 3e-4},
        "all_pairs": {"estimator": "all_pairs"},
    }
    rows = []
    for reg in args.regimes.split(","):
        for seed in range(args.seeds):
            train, test = regime(reg, seed)
            targets = sorted(test.obs["perturbation"].unique())
            add = pdae.tl.predict_baseline(train, targets, method="additive", seed=0)
            ed, l2 = score(add, test, train)
            rows.append(dict(regime=reg, seed=seed, method="additive", ed=ed, l2=l2, secs=0))
            for cname in args.configs.split(","):
                kw = dict(configs[cname])
                lr = kw.pop("_lr", 1e-3)
                scvi.settings.seed = seed
                pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
                model = pdae.model.PDAE(train, **kw)
                t = time.time()
                model.train(max_epochs=args.epochs, lr=lr, enable_progress_bar=False)
                secs = time.time() - t
                pred = model.predict(targets, n_cells=300, seed=0)
                ed, l2 = score(pred, test, train)
                rows.append(dict(regime=reg, seed=seed, method=cname, ed=ed, l2=l2, secs=secs))
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(df.groupby(["regime", "method"])[["ed", "l2", "secs"]].mean().round(4).to_string())


if __name__ == "__main__":
    main()
