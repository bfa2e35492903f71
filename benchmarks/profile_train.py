"""Where a default training step spends its time: a cProfile breakdown of ``model.train``.

    python benchmarks/profile_train.py [--genes 100] [--steps 400] [--threads N]

Trains the default model (grouped estimator, 16 conditions x 16 cells + 64 sources per
step) on ``simulate(n_perturbations=10, n_genes=..., n_cells_per_condition=100)`` for about
``--steps`` steps with the progress bar off, and groups the profile into the loss forward
pass, backward, the optimiser, minibatch gathering, logging and the rest (Lightning and
scvi-tools' loop). Prints ms per step for each part.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import time
import warnings

import torch

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

# (part, substrings of "file:function" whose cumulative time counts for it)
PARTS = [
    ("loss forward (module.grouped_loss)", ["_pdae.py:", "grouped_loss"]),
    ("backward", ["_tensor.py:", "backward"]),
    ("optimiser (Adam.step, without the closure it runs)", ["adam.py:", "step"]),
    ("minibatch gathering (sampler)", ["_sampler.py:", "__iter__"]),
    ("logging (self.log)", ["module.py:", "log"]),
]


def cumulative(stats: pstats.Stats, file_part: str, func: str) -> float:
    best = 0.0
    for (filename, _, name), (_, _, _, cum, _) in stats.stats.items():
        if filename.endswith(file_part.rstrip(":")) and name == func:
            best = max(best, cum)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    adata = pdae.data.simulate(
        n_perturbations=10, n_genes=args.genes, n_cells_per_condition=100, seed=0
    )
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata)
    model.train(max_epochs=1, enable_progress_bar=False, check_fit=False)  # warm-up
    model = pdae.model.PDAE(adata)
    steps_per_epoch = max(1, adata.n_obs // 256)
    epochs = max(1, round(args.steps / steps_per_epoch))
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    model.train(max_epochs=epochs, enable_progress_bar=False, check_fit=False)
    profile.disable()
    wall = time.perf_counter() - t0
    steps = model.trainer.global_step
    stats = pstats.Stats(profile)
    total = wall
    closure = cumulative(stats, "automatic.py:", "__call__")  # forward + backward
    print(
        f"{steps} steps ({epochs} epochs) of {adata.n_obs:,} cells x {args.genes} genes: "
        f"{wall:.1f} s, {1000 * wall / steps:.1f} ms/step (profiler on)"
    )
    print("| part | ms/step | share |")
    print("|---|---|---|")
    accounted = 0.0
    for name, (file_part, func) in PARTS:
        t = cumulative(stats, file_part, func)
        if func == "step":
            t = max(0.0, t - closure)  # Lightning runs forward and backward inside step()
        accounted += t
        print(f"| {name} | {1000 * t / steps:.2f} | {t / total:.0%} |")
    rest = max(0.0, total - accounted)
    print(
        f"| the rest (Lightning/scvi-tools loop, hooks, setup) | {1000 * rest / steps:.2f} "
        f"| {rest / total:.0%} |"
    )


if __name__ == "__main__":
    main()
