"""Why Datlinger's leave-genes-out scores sit below the noise floor (no model).

    python benchmarks/unmeasured_genes_floor.py [--splits 30]

``unmeasured_genes.py`` scores the linear model with embeddings (and the PDAE default,
which equals it on Datlinger) at about -0.10 on every held-out knockout, against an oracle
half of about -0.01. The energy distance of two independent samples is at least zero in
expectation, so a figure that far below says the predicted cells are not an independent
sample. They are the 60 unstimulated control cells moved by ``delta``, a shift measured
against the mean of those same 60 cells: the moved cells' mean is exactly the shift's
estimate of the target's mean (``m``, the mean of thousands of perturbed training cells;
the control mean cancels), so the sampling noise of a 60-cell mean, which every real
sample (and the oracle half) carries, is gone, and the U-statistic drops below zero.
Three checks, each ``--splits`` random splits:

1. Held-out targets. ``control`` / ``control + delta``: the 60 control cells unmoved and
   moved, against every cell of the target (the benchmark's figures). For the targets
   without stimulation, whose ``delta`` has no stimulation in it: ``half`` / ``half +
   delta``, 60 of the target's own cells unmoved and moved by the same ``delta``, against
   the rest.
2. The mechanism. The 60 control cells split in two halves of 30, ``C1`` and ``C2``;
   ``C1`` centred on ``m`` (``C1 - mean(C1) + m``, what the methods do: the shift measured
   against the cells it moves) and ``C1`` moved by a shift measured against the other
   half (``C1 - mean(C2) + m``: the noise of a 30-cell mean, twice), both against every
   cell of the target. An independent sample would lie between the two.
3. The control cells themselves. On every measured training condition: 60 of its cells
   (``A``) against the rest (``B``), the noise floor; and the 60 control cells moved by
   the mean change of ``A`` (a shift as noisy as a 60-cell mean), against ``B``. If the
   control cells are an ordinary sample, the second lies at or above the first.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _tasks import control_cells, dense
from unmeasured_genes import baselines, datlinger_task

from pdae_sc.tl import energy_distance

warnings.filterwarnings("ignore")


def rows_of(adata, target: str) -> np.ndarray:
    return dense(adata[adata.obs["perturbation"].astype(str) == target].X)


def mean_sd(values) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def split(x: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random rows of ``x`` and the rest."""
    order = rng.permutation(len(x))
    return x[order[:n]], x[order[n:]]


def held_out_targets(task, ctrl, moved, splits, rng) -> None:
    """Checks 1 and 2, one row per held-out target."""
    print(
        "| target | cells | norm of delta | control | control + delta | half | half + delta "
        "| C1 centred on m | C1 moved by m - mean(C2) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for target in task.targets:
        y = rows_of(task.test, target)
        m = rows_of(moved, target).mean(axis=0)
        delta = m - ctrl.mean(axis=0)
        halves = "- | -"
        if "stim" not in target.split("+"):
            pairs = [split(y, len(ctrl), rng) for _ in range(splits)]
            still = [energy_distance(half, rest) for half, rest in pairs]
            shifted = [energy_distance(half + delta, rest) for half, rest in pairs]
            halves = f"{mean_sd(still)} | {mean_sd(shifted)}"
        centred, other = [], []
        for _ in range(splits):
            c1, c2 = split(ctrl, len(ctrl) // 2, rng)
            centred.append(energy_distance(c1 - c1.mean(axis=0) + m, y))
            other.append(energy_distance(c1 - c2.mean(axis=0) + m, y))
        print(
            f"| {target} | {len(y)} | {np.linalg.norm(delta):.2f} "
            f"| {energy_distance(ctrl, y):.4f} | {energy_distance(ctrl + delta, y):.4f} "
            f"| {halves} | {mean_sd(centred)} | {mean_sd(other)} |"
        )


def training_conditions(task, ctrl, splits, rng) -> None:
    """Check 3, one row per measured training condition, and a summary line."""
    print("\n| training condition | cells | A vs B | control + shift(A) vs B | difference |")
    print("|---|---|---|---|---|")
    gaps = []
    for cond in sorted(set(task.train.obs["perturbation"].astype(str)) - {"ctrl"}):
        pairs = [split(rows_of(task.train, cond), len(ctrl), rng) for _ in range(splits)]
        floor = [energy_distance(a, b) for a, b in pairs]
        moved = [energy_distance(ctrl - ctrl.mean(axis=0) + a.mean(axis=0), b) for a, b in pairs]
        gaps.append(np.mean(moved) - np.mean(floor))
        n = len(pairs[0][0]) + len(pairs[0][1])
        print(f"| {cond} | {n} | {mean_sd(floor)} | {mean_sd(moved)} | {gaps[-1]:+.4f} |")
    print(
        f"\ncontrol + shift(A) minus A vs B, over {len(gaps)} conditions: mean "
        f"{np.mean(gaps):+.4f}, {np.sum(np.asarray(gaps) < 0)} of {len(gaps)} below zero"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=30)
    args = parser.parse_args()
    task = datlinger_task()
    ctrl = dense(control_cells(task).X)
    moved = baselines(task, 0, len(ctrl))["linear_embedding"]
    rng = np.random.default_rng(0)
    print(f"{len(ctrl)} control cells; energy distance, {args.splits} splits: mean ± sd\n")
    held_out_targets(task, ctrl, moved, args.splits, rng)
    training_conditions(task, ctrl, args.splits, rng)


if __name__ == "__main__":
    main()
