"""Count noise from small source pools, and the cost of drawing counts (no model).

    python benchmarks/counts_small_pools.py [--halves 6]

1. Diagnostic for ``results/counts_dispersion.md``: on Datlinger knockout + stimulation, each
   held-out condition's measured mean shift (log1p scale) is added to a random half of the
   control cells (about 30 cells, the size of a new-cells pool), and the counts are put back
   two ways: drawn as ``predict(scale="counts")`` does (``model/_counts_scale.py``) and
   rounded (``rint(expm1(x) * s)``, the earlier way). Printed per half: the median over
   conditions of the size-matched per-gene VMR ratio (``counts_dispersion.figure``), and the
   same for the whole control pool.
2. Speed: seconds of ``gene_count_noise`` (20,000 source cells x 2,000 genes, 100
   conditions) and of ``resampled_counts`` (4,096 cells x 2,000 genes), best of 3.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _tasks import TASKS, dense
from counts_dispersion import compared_genes, figure

from pdae_sc.model._counts_scale import gene_count_noise, resampled_counts
from pdae_sc.pp._counts import size_factors

warnings.filterwarnings("ignore")


def pool_figures(task, genes, x0, c0, s, rows) -> tuple[float, float]:
    """Median over held-out conditions of the VMR figure, drawn and rounded, from ``rows``."""
    x, c, f = x0[rows], c0[rows], s[rows]
    nu, phi = gene_count_noise(lambda r: c[r], np.arange(len(c)), f, 4096)
    drawn, rounded = [], []
    for i, cond in enumerate(task.targets):
        held = task.test[task.test.obs["perturbation"] == cond]
        obs = dense(held.layers["counts"])
        moved = x + (dense(held.X).mean(0) - x0.mean(0))
        n = min(len(obs), len(moved))
        out = resampled_counts(moved, c, f, nu[0], phi[0], np.random.default_rng(i))
        drawn.append(figure(out[:n], obs, genes, 0)["vmr_ratio_matched"])
        kept = np.rint(np.clip(np.expm1(moved), 0, None) * f[:, None])
        rounded.append(figure(kept[:n], obs, genes, 0)["vmr_ratio_matched"])
    return float(np.median(drawn)), float(np.median(rounded))


def best_of(f, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halves", type=int, default=6)
    args = parser.parse_args()
    task = TASKS["datlinger_combo"]()
    genes = compared_genes(task, 0.1)
    ctrl = task.train[task.train.obs["perturbation"].astype(str) == "ctrl"]
    x0, c0 = dense(ctrl.X), dense(ctrl.layers["counts"])
    s = size_factors(x0, c0)
    ok = np.isfinite(s)
    x0, c0, s = x0[ok], c0[ok], s[ok]
    print("| control cells | drawn | rounded |")
    print("|---|---|---|")
    drawn, rounded = pool_figures(task, genes, x0, c0, s, np.arange(len(c0)))
    print(f"| all {len(c0)} | {drawn:.2f} | {rounded:.2f} |")
    for half in range(args.halves):
        rows = np.random.default_rng(100 + half).permutation(len(c0))[: len(c0) // 2]
        drawn, rounded = pool_figures(task, genes, x0, c0, s, rows)
        print(f"| random half {half} ({len(rows)}) | {drawn:.2f} | {rounded:.2f} |")

    rng = np.random.default_rng(0)
    counts = rng.poisson(0.5, (20_000, 2_000)).astype(np.float32)
    groups = rng.integers(0, 100, len(counts))
    idx = np.arange(len(counts))
    fit = best_of(
        lambda: gene_count_noise(lambda r: counts[r], idx, np.ones(len(idx)), 4096, groups)
    )
    c = counts[:4096].astype(np.float64)
    f = np.full(len(c), 0.5)
    x = np.log1p(c / f[:, None]).astype(np.float32) + 0.1
    nu, phi = np.ones(c.shape[1]), np.full(c.shape[1], 0.5)
    draw = best_of(lambda: resampled_counts(x, c, f, nu, phi, np.random.default_rng(1)))
    print()
    print(f"gene_count_noise, 20,000 cells x 2,000 genes, 100 conditions: {fit:.2f} s")
    print(
        f"resampled_counts, 4,096 cells x 2,000 genes: {draw:.2f} s ({4096 / draw:,.0f} cells/s)"
    )


if __name__ == "__main__":
    main()
