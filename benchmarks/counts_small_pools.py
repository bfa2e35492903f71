"""Count noise from small source pools, and the cost of drawing counts (no model).

    python benchmarks/counts_small_pools.py [--halves 50] [--seeds 0 1 2]

1. Diagnostic for ``results/counts_dispersion.md``: on Datlinger knockout + stimulation, each
   held-out condition's measured mean shift (log1p scale) is added to a random half of the
   control cells (about 30 cells, the size of a new-cells pool), and the counts are put back
   two ways: drawn as ``predict(scale="counts")`` does (``model/_counts_scale.py``) and
   rounded (``rint(expm1(x) * s)``, the earlier way). Printed per half: the median over
   conditions of the size-matched per-gene VMR ratio (``counts_dispersion.figure``), and the
   same for the whole control pool. Also for the control cells of each new-cells model of
   ``counts_dispersion.py`` (``benchmark half, seed k``: the cells its models move), with
   a variant tried and not kept: each gene's dispersion taken from the cells that model is
   trained on (pooled over their conditions, each with its own mean) instead of from the
   pool itself. Beside each pool: its largest cell's total count (over the compared genes)
   and the median over those genes of the pool's own per-gene VMR, which says how much of
   the figure the pool's cells bring with them (library sizes included) before any move.
   Then a summary over the random halves: how many fall within 25% of the measured count
   noise, below and above it, with the median and range. The measured shifts are the best
   any method that keeps each predicted cell on its source cell's counts can do, so this is
   how often such a method can meet the goal from a pool of that size.
2. Speed: seconds of ``gene_count_noise`` (20,000 source cells x 2,000 genes, 100
   conditions) and of ``resampled_counts`` (4,096 cells x 2,000 genes), best of 3.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _tasks import TASKS, dense
from counts_dispersion import _half_split, _vmr, compared_genes, figure

from pdae_sc.model._counts_scale import gene_count_noise, resampled_counts
from pdae_sc.pp._counts import size_factors

warnings.filterwarnings("ignore")


def pool_figures(task, genes, x0, c0, s, rows, phi=None) -> tuple[float, ...]:
    """Median over held-out conditions of the VMR figure, drawn and rounded, from ``rows``.

    ``phi``: each gene's inverse dispersion to draw with as well (a third figure).
    """
    x, c, f = x0[rows], c0[rows], s[rows]
    nu, own = gene_count_noise(lambda r: c[r], np.arange(len(c)), f, 4096)
    variants = [own[0]] + ([] if phi is None else [phi])
    figures = [[] for _ in range(len(variants) + 1)]
    for i, cond in enumerate(task.targets):
        held = task.test[task.test.obs["perturbation"] == cond]
        obs = dense(held.layers["counts"])
        moved = x + (dense(held.X).mean(0) - x0.mean(0))
        n = min(len(obs), len(moved))
        for k, p in enumerate(variants):
            out = resampled_counts(moved, c, f, nu[0], p, np.random.default_rng(i))
            figures[k].append(figure(out[:n], obs, genes, 0)["vmr_ratio_matched"])
        kept = np.rint(np.clip(np.expm1(moved), 0, None) * f[:, None])
        figures[-1].append(figure(kept[:n], obs, genes, 0)["vmr_ratio_matched"])
    return tuple(float(np.median(v)) for v in figures)


def pool_spread(counts: np.ndarray, genes: np.ndarray) -> str:
    """Largest total count over ``genes`` and median per-gene VMR of a pool, as table cells."""
    c = counts[:, genes]
    return f"{c.sum(axis=1).max():.0f} | {np.median(_vmr(c)):.2f}"


def pooled_dispersion(adata) -> np.ndarray:
    """Each gene's inverse dispersion over the cells of ``adata``, one mean per condition."""
    x, c = dense(adata.X), dense(adata.layers["counts"])
    f = size_factors(x, c)
    ok = np.isfinite(f)
    codes = np.unique(adata.obs["perturbation"].astype(str), return_inverse=True)[1][ok]
    c, f = c[ok].astype(np.float64), f[ok][:, None]
    nu, _ = gene_count_noise(lambda r: c[r], np.arange(len(c)), f[:, 0], 4096, codes)
    mu = f * nu[codes]
    excess = ((c - mu) ** 2 - mu).sum(axis=0)
    den = (mu**2).sum(axis=0)
    return np.clip(np.divide(excess, den, out=np.zeros_like(den), where=den > 0), 0.0, None)


def within_goal(figures: np.ndarray, tolerance: float = 0.25) -> str:
    """How many figures lie within ``tolerance`` of 1, below and above it; median, range."""
    low, high = 1 - tolerance, 1 + tolerance
    return (
        f"{np.sum((figures >= low) & (figures <= high))} within {low:.2f}-{high:.2f}, "
        f"{np.sum(figures < low)} below, {np.sum(figures > high)} above; median "
        f"{np.median(figures):.2f}, range {figures.min():.2f}-{figures.max():.2f}"
    )


def best_of(f, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halves", type=int, default=50)
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2], help="of counts_dispersion.py"
    )
    args = parser.parse_args()
    task = TASKS["datlinger_combo"]()
    genes = compared_genes(task, 0.1)
    ctrl = task.train[task.train.obs["perturbation"].astype(str) == "ctrl"]
    x0, c0 = dense(ctrl.X), dense(ctrl.layers["counts"])
    s = size_factors(x0, c0)
    ok = np.isfinite(s)
    x0, c0, s = x0[ok], c0[ok], s[ok]
    print(
        "| control cells | largest total | pool VMR | drawn | rounded "
        "| drawn, dispersion of the model's cells |"
    )
    print("|---|---|---|---|---|---|")
    drawn, rounded = pool_figures(task, genes, x0, c0, s, np.arange(len(c0)))
    print(f"| all {len(c0)} | {pool_spread(c0, genes)} | {drawn:.2f} | {rounded:.2f} | - |")
    halves = []
    for half in range(args.halves):
        rows = np.random.default_rng(100 + half).permutation(len(c0))[: len(c0) // 2]
        drawn, rounded = pool_figures(task, genes, x0, c0, s, rows)
        halves.append((drawn, rounded))
        spread = pool_spread(c0[rows], genes)
        print(f"| random half {half} ({len(rows)}) | {spread} | {drawn:.2f} | {rounded:.2f} | - |")
    names = ctrl.obs_names[ok]
    for seed in args.seeds:
        fitted, new = _half_split(task, seed)
        rows = np.flatnonzero(names.isin(new.obs_names))
        drawn, borrowed, rounded = pool_figures(
            task, genes, x0, c0, s, rows, pooled_dispersion(fitted.train)
        )
        print(
            f"| benchmark half, seed {seed} ({len(rows)}) | {pool_spread(c0[rows], genes)} "
            f"| {drawn:.2f} | {rounded:.2f} "
            f"| {borrowed:.2f} |"
        )
    held = [
        pool_spread(dense(task.test[task.test.obs["perturbation"] == t].layers["counts"]), genes)
        for t in task.targets
    ]
    print(f"\nheld-out conditions (largest total | VMR): {'; '.join(held)}")
    print(f"\n{len(halves)} random halves, figure against the 25% goal:")
    for name, values in zip(("drawn", "rounded"), np.asarray(halves).T, strict=True):
        print(f"  {name}: {within_goal(values)}")

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
