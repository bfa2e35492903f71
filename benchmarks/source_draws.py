"""Stratified against plain random source draws, over training and prediction seeds.

    python benchmarks/source_draws.py [--task clean] [--seeds 0 1 2] [--draws 3]
    python benchmarks/source_draws.py --speed

A prediction from every cell (``source="all"``) is a mixture of the training conditions'
cells, each moved to the target. ``predict`` draws its distinct source cells stratified by
condition and context (``model/_noise.draw_sources``: each condition its share of the cells);
a plain random draw of the same number of distinct cells adds multinomial noise to the
mixture's weights. For each training seed the default model is trained once and every
held-out target of the task (``_tasks.py``, honest protocol: as many cells per target as
the context has control cells) is predicted with ``--draws`` prediction seeds, both ways.
Prints the mean energy distance over the targets per training seed and prediction seed.
``--speed``: seconds of one draw of 5,000 cells from 1,000,000 sources in 1,000 conditions,
stratified and plain (best of 3; a prediction draws once per target).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
from _tasks import TASKS, fit_pdae, protocol_cells, score

from pdae_sc.model import _noise, _predict

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def plain(src_idx, n, rng, groups=None):
    """The draw before stratification: ``groups`` ignored."""
    return _noise.draw_sources(src_idx, n, rng)


def speed() -> None:
    """Seconds of one source draw, stratified and plain, at a million sources."""
    src = np.arange(1_000_000)
    groups = np.random.default_rng(1).integers(0, 1_000, len(src))
    for label, kwargs in (("stratified", {"groups": groups}), ("plain", {})):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            _noise.draw_sources(src, 5_000, np.random.default_rng(0), **kwargs)
            times.append(time.perf_counter() - t0)
        print(f"{label}: {min(times):.3f} s per draw of 5,000 from 1,000,000 (1,000 conditions)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="clean", choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--speed", action="store_true", help="only time the draw itself")
    args = parser.parse_args()
    if args.speed:
        speed()
        return
    task = TASKS[args.task]()
    n = protocol_cells(task)
    print("| training seed | draw | plain random | stratified (default) |\n|---|---|---|---|")
    means = {"plain": [], "stratified": []}
    for seed in args.seeds:
        model, _ = fit_pdae(task, seed)
        for draw in range(args.draws):
            row = {}
            for label, how in (("plain", plain), ("stratified", _noise.draw_sources)):
                _predict.draw_sources = how
                try:
                    pred = model.predict(
                        task.targets,
                        n_cells=n,
                        seed=100 * seed + draw,
                        method="pdae",
                        source="all",
                    )
                finally:
                    _predict.draw_sources = _noise.draw_sources
                row[label] = float(score(task, pred, seed=seed)["energy_distance"].mean())
                means[label].append(row[label])
            print(
                f"| {seed} | {draw} | {row['plain']:.4f} | {row['stratified']:.4f} |", flush=True
            )
    summary = [f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}" for v in means.values()]
    print(f"| all | mean ± sd | {summary[0]} | {summary[1]} |")


if __name__ == "__main__":
    main()
