"""Adam's fused kernel against torch's default loop: fit time and the trained weights.

    python benchmarks/fused_adam.py [--tasks clean papalexi_context] [--repeats 2]

Trains the default model on tasks of ``real_data.py`` (seed 0) with
``torch.optim.Adam(fused=True)`` (the default since this change) and with torch's default
implementation, alternating the two ``--repeats`` times so that both see the same machine
load, and prints each fit's seconds (``model.train``, held-out scores included), the
median per setting, and the largest difference between the two settings' trained weights
(0 when the two give the same network).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import warnings

import torch
from _tasks import TASKS, fit_pdae

import pdae_sc.model._training_plan as training_plan

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def _fit(task, fused: bool):
    default = training_plan._fused_adam
    if not fused:
        training_plan._fused_adam = lambda module: None
    try:
        model, seconds = fit_pdae(task, 0)
    finally:
        training_plan._fused_adam = default
    return seconds, {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["clean", "papalexi_context"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.tasks:
        task = TASKS[name]()
        times = {True: [], False: []}
        weights = {}
        for _ in range(args.repeats):
            for fused in (True, False):
                seconds, weights[fused] = _fit(task, fused)
                times[fused].append(seconds)
                print(f"{name} fused={fused}: {seconds:.1f} s", flush=True)
        diff = max(
            (weights[True][k] - weights[False][k]).abs().max().item() for k in weights[True]
        )
        print(
            f"{name}: median fit {statistics.median(times[True]):.1f} s fused, "
            f"{statistics.median(times[False]):.1f} s default loop; largest weight "
            f"difference {diff:.3g}",
            flush=True,
        )


if __name__ == "__main__":
    main()
