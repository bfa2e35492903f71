"""Prediction throughput of ``model.predict`` (cells per second), both decoders, CPU.

A small model (one training epoch: the weights do not matter for speed) on a simulation
with ``--genes`` genes predicts ``--cells`` cells of one target, ``--repeats`` times after a
full-size warm-up; the median is printed. Run it with two code versions (e.g.
``PYTHONPATH=other/src``) one after the other on an idle machine to compare them.

    python benchmarks/predict_throughput.py [--genes 2000] [--cells 40000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def throughput(decoder: str, n_genes: int, n_cells: int, repeats: int) -> float:
    adata = pdae.data.simulate(
        n_perturbations=4, n_genes=n_genes, n_cells_per_condition=200, seed=0
    )
    adata.X = np.abs(adata.X)  # non-negative, so that both decoders apply
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, decoder=decoder)
    model.train(max_epochs=1, enable_progress_bar=False, check_fit=False)
    model.predict(["P0+P1"], n_cells=n_cells, seed=0)  # warm-up at full size
    times = []
    for rep in range(repeats):
        start = time.perf_counter()
        model.predict(["P0+P1"], n_cells=n_cells, seed=rep)
        times.append(time.perf_counter() - start)
    return n_cells / float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--cells", type=int, default=40000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"pdae_sc from {pdae.__file__}")
    for decoder in ("generative", "residual"):
        rate = throughput(decoder, args.genes, args.cells, args.repeats)
        print(f"{decoder}: {rate:,.0f} cells/s ({args.cells:,} cells x {args.genes:,} genes)")


if __name__ == "__main__":
    main()
