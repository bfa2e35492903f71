"""Where ``model.predict`` spends its time: a cProfile breakdown of one large call.

    python benchmarks/profile_predict.py [--genes 2000] [--cells 40000]

Trains a model for two steps (speed does not depend on training) on
``simulate(n_perturbations=4, n_genes=..., n_cells_per_condition=300)``, warms up, then
profiles ``model.predict(["P0+P1"], n_cells=...)`` and prints the wall time, the cells per
second and the functions that take the most time (network matmuls, noise draws, copies).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import time
import warnings

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=40000)
    parser.add_argument("--top", type=int, default=12, help="functions to list")
    args = parser.parse_args()
    adata = pdae.data.simulate(
        n_perturbations=4, n_genes=args.genes, n_cells_per_condition=300, seed=0
    )
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata)
    model.train(max_epochs=1, max_steps=2, enable_progress_bar=False, check_fit=False)
    model.predict(["P0+P1"], n_cells=1000, seed=0)  # warm-up
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    pred = model.predict(["P0+P1"], n_cells=args.cells, seed=0)
    profile.disable()
    dt = time.perf_counter() - t0
    print(
        f"predict: {pred.n_obs:,} cells x {args.genes} genes in {dt:.2f} s "
        f"({pred.n_obs / dt:,.0f} cells/s, profiler on)"
    )
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
