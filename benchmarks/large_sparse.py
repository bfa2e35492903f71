"""Peak memory and time of PDAE training on a large sparse screen, backed and in memory.

Simulates ``--n-cells`` cells × ``--n-genes`` genes of log-normalised expression with about
``--density`` non-zero entries, written chunk by chunk as a CSR ``.h5ad`` (the full matrix
is never held in memory by the writer). Then, each in a fresh process so that peak resident
memory (``VmHWM``) is measured per input route:

- ``backed``: ``anndata.read_h5ad(path, backed="r")``, the matrix stays on disk;
- ``csr``: ``anndata.read_h5ad(path)``, the CSR matrix in memory;

it runs ``setup_anndata``, builds the PDAE, trains for ``--steps`` steps (``max_epochs=1``,
``limit_train_batches=steps``) and predicts ``--n-predict`` cells, and prints the time of each
stage and the peak memory. The data are random (not the paper's generator): this measures
data handling, not accuracy.

Usage::

    python benchmarks/large_sparse.py                      # 1,000,000 cells × 2,000 genes
    python benchmarks/large_sparse.py --n-cells 100000     # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def simulate_h5ad(
    path: Path,
    *,
    n_cells: int,
    n_genes: int,
    density: float,
    n_perturbations: int,
    chunk: int = 20_000,
    seed: int = 0,
) -> dict:
    """Write a random CSR screen to ``path`` in chunks; return its sizes."""
    import anndata as ad
    import h5py
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    singles = [f"P{k}" for k in range(n_perturbations)]
    doubles = [f"P{k}+P{k + 1}" for k in range(0, n_perturbations - 1, 2)]
    conditions = np.array(["ctrl", *singles, *doubles], dtype=object)
    codes = rng.integers(len(conditions), size=n_cells)
    codes[: len(conditions)] = np.arange(len(conditions))  # every condition present
    obs = pd.DataFrame(
        {"perturbation": pd.Categorical.from_codes(codes, categories=list(conditions))},
        index=pd.Index([f"cell_{i}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(index=pd.Index([f"gene_{j}" for j in range(n_genes)]))
    ad.AnnData(obs=obs, var=var).write_h5ad(path)  # skeleton without X
    gene_effect = rng.normal(0.0, 0.5, (len(conditions), n_genes)).astype(np.float32)
    nnz = 0
    with h5py.File(path, "a") as f:
        for start in range(0, n_cells, chunk):
            rows = min(chunk, n_cells - start)
            # Bernoulli(density) pattern, drawn 2,000 rows at a time (bounded temporary)
            parts = []
            for r0 in range(0, rows, 2000):
                mask = rng.random((min(2000, rows - r0), n_genes), dtype=np.float32) < density
                r, c = np.nonzero(mask)
                parts.append((r + r0, c))
            row_of = np.concatenate([p[0] for p in parts])
            cols = np.concatenate([p[1] for p in parts]).astype(np.int32)
            indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of, minlength=rows))])
            counts = rng.poisson(2.0, size=len(cols)) + 1
            shift = gene_effect[codes[start + row_of], cols]
            values = np.log1p(counts * np.exp(shift)).astype(np.float32)
            block = sp.csr_matrix((values, cols, indptr), shape=(rows, n_genes))
            if start == 0:
                ad.io.write_elem(f, "X", block)  # resizable datasets
            else:
                ad.io.sparse_dataset(f["X"]).append(block)
            nnz += block.nnz
    return {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "nnz": int(nnz),
        "csr_mb": nnz * 8 / 2**20 + (n_cells + 1) * 8 / 2**20,
        "dense_mb": n_cells * n_genes * 4 / 2**20,
        "file_mb": path.stat().st_size / 2**20,
        "n_conditions": len(conditions),
    }


def run_route(path: str, route: str, steps: int, n_predict: int, threads: int) -> dict:
    """Setup, train ``steps`` steps and predict on one input route (run in a child process)."""
    import logging

    import torch

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    import anndata as ad
    import scvi

    import pdae_sc as pdae

    scvi.settings.seed = 0
    out = {"route": route, "rss_after_import_mb": _rss_mb()}
    t = time.perf_counter()
    adata = ad.read_h5ad(path, backed="r" if route == "backed" else None)
    out["read_s"] = time.perf_counter() - t
    out["rss_after_read_mb"] = _rss_mb()
    t = time.perf_counter()
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    out["setup_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model = pdae.model.PDAE(adata)
    out["init_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model.train(
        max_epochs=1,
        limit_train_batches=steps,
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
    )
    out["train_s"] = time.perf_counter() - t
    out["steps"] = steps
    t = time.perf_counter()
    pred = model.predict(["P0+P1"], n_cells=n_predict, seed=0)
    out["predict_s"] = time.perf_counter() - t
    out["n_predict"] = pred.n_obs
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-cells", type=int, default=1_000_000)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--n-perturbations", type=int, default=50)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--n-predict", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--routes", default="backed,csr")
    parser.add_argument("--path", default=None, help="h5ad to write (default in $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the h5ad file")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "ROUTE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        res = run_route(args.child[0], args.child[1], args.steps, args.n_predict, args.threads)
        print("RESULT " + json.dumps(res), flush=True)
        return

    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    path = Path(args.path or tmp / f"pdae_large_{args.n_cells}x{args.n_genes}.h5ad")
    t = time.perf_counter()
    info = simulate_h5ad(
        path,
        n_cells=args.n_cells,
        n_genes=args.n_genes,
        density=args.density,
        n_perturbations=args.n_perturbations,
    )
    print(
        f"data: {info['n_cells']:,} cells × {info['n_genes']:,} genes, {info['nnz']:,} non-zeros "
        f"({info['nnz'] / (info['n_cells'] * info['n_genes']):.1%}), {info['n_conditions']} "
        f"conditions; CSR in memory {info['csr_mb']:,.0f} MiB, dense would be "
        f"{info['dense_mb']:,.0f} MiB; file {info['file_mb']:,.0f} MiB; written in "
        f"{time.perf_counter() - t:.0f} s",
        flush=True,
    )
    rows = []
    try:
        for route in args.routes.split(","):
            cmd = [sys.executable, __file__, "--child", str(path), route]
            cmd += ["--steps", str(args.steps), "--n-predict", str(args.n_predict)]
            cmd += ["--threads", str(args.threads)]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{route}: failed\n{proc.stderr[-3000:]}", flush=True)
                continue
            res = json.loads(lines[-1][len("RESULT ") :])
            rows.append(res)
            print(
                f"{route:>6}: peak RSS {res['peak_rss_mb']:,.0f} MiB (after imports "
                f"{res['rss_after_import_mb']:,.0f}, after read {res['rss_after_read_mb']:,.0f}); "
                f"read {res['read_s']:.1f} s, setup {res['setup_s']:.1f} s, init "
                f"{res['init_s']:.1f} s, train {res['steps']} steps {res['train_s']:.1f} s "
                f"({res['train_s'] / res['steps']:.2f} s/step), predict {res['n_predict']:,} "
                f"cells {res['predict_s']:.1f} s",
                flush=True,
            )
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    print("RESULTS " + json.dumps({"data": info, "routes": rows}))


if __name__ == "__main__":
    main()
