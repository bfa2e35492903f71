"""Time per training step of ``model.train`` itself (Lightning loop included), per variant.

    python benchmarks/train_step_time.py [--genes 100 1000] [--steps 300]
        [--variants default compile reduce_overhead] [--accelerator auto]

Trains the default model on ``simulate(n_perturbations=10, n_genes=..., n_cells_per_condition
=100)`` for about ``--steps`` steps with each variant, and prints the median milliseconds
between the ends of consecutive steps (from step 20 on, so the first steps and any compile are
left out), the time to the end of the first step (compile included) and the whole ``train``
call. It measures the loop a user runs, on the device ``train`` picks (``--accelerator``),
where ``speed.py`` times the module's step alone. Variants:

- ``default``: ``model.train()`` as it ships;
- ``compile``: ``plan_kwargs={"compile": True}`` (:func:`torch.compile`, default mode);
- ``reduce_overhead``: ``plan_kwargs={"compile": {"mode": "reduce-overhead"}}`` (CUDA graphs
  on a GPU).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import lightning.pytorch as pl
import torch

import pdae_sc as pdae

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

VARIANTS = {
    "default": {},
    "compile": {"plan_kwargs": {"compile": True}},
    "reduce_overhead": {"plan_kwargs": {"compile": {"mode": "reduce-overhead"}}},
}


class StepClock(pl.Callback):
    """The wall-clock time at the end of every training step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())


def time_variant(adata, variant: str, steps: int, accelerator: str) -> dict:
    model = pdae.model.PDAE(adata)
    clock = StepClock()
    epochs = max(1, round(steps / max(1, adata.n_obs // 256)))
    t0 = time.perf_counter()
    model.train(
        max_epochs=epochs,
        accelerator=accelerator,
        enable_progress_bar=False,
        check_fit=False,
        early_stopping=False,
        callbacks=[clock],
        **VARIANTS[variant],
    )
    total = time.perf_counter() - t0
    gaps = [b - a for a, b in zip(clock.ends[20:], clock.ends[21:], strict=False)]
    return {
        "device": next(model.module.parameters()).device.type,
        "steps": len(clock.ends),
        "ms_per_step": 1000 * statistics.median(gaps) if gaps else float("nan"),
        "first_step_s": clock.ends[0] - t0 if clock.ends else float("nan"),
        "train_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--accelerator", default="auto")
    args = parser.parse_args()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads")
    print()
    print("| genes | variant | device | steps | ms/step (median) | first step s | train s |")
    print("|---|---|---|---|---|---|---|")
    for genes in args.genes:
        adata = pdae.data.simulate(
            n_perturbations=10, n_genes=genes, n_cells_per_condition=100, seed=0
        )
        pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        time_variant(adata, "default", 30, args.accelerator)  # warm-up (CUDA context, caches)
        for variant in args.variants:
            try:
                r = time_variant(adata, variant, args.steps, args.accelerator)
            except Exception as err:  # a variant that fails is reported, the rest still run
                print(f"| {genes} | {variant} | failed: {type(err).__name__}: {err} | | | | |")
                continue
            print(
                f"| {genes} | {variant} | {r['device']} | {r['steps']} | "
                f"{r['ms_per_step']:.2f} | {r['first_step_s']:.1f} | {r['train_s']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
