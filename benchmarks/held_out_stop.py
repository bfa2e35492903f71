"""When may training stop on the held-out checks? Full runs, and stop rules judged on them.

    python benchmarks/held_out_stop.py [--tasks ...] [--seeds 0 1 2] [--out benchmarks/results]
    python benchmarks/held_out_stop.py --summarise benchmarks/results/held_out_stop.csv

Each task is trained with its defaults to the end of the run (no stop), with the checks of
``train(early_stopping="held_out")``: the network scored on the held-out conditions at every
twelfth of the run, from the control cells and from every cell. The simple baselines are
scored on the same held-out conditions and cells (``score_held_out``, fitted on the
training cells). Each candidate stop rule is then replayed on those curves: where it would
have stopped, the share of the run it saves, and whether it is *safe*: the check that the
default source set would keep over the whole run is not after the stop, or the model falls
back to the same baseline either way (the best check of the whole run still clearly behind
it). Tasks: those of ``_tasks.py``, and ``laplace`` (the demo's simulation, Laplace basal
law), ``clean_data1`` (the clean simulation drawn with data seed 1), ``clean500`` (500
genes), ``clean_latent16`` (the clean task with ``PDAE(n_latent=16)``).
Writes ``held_out_stop.csv`` (one row per check, source set and held-out condition,
and one per baseline) and ``held_out_stop.md``.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from _tasks import TASKS, Task, _split, fit_pdae

import pdae_sc as pdae
from pdae_sc.model import _held_out_checkpoints
from pdae_sc.model._held_out_checkpoints import SOURCES, STOP_FROM, HeldOutCheckpoints
from pdae_sc.model._selection import SIMPLE_METHODS, clearly_positive, closest_baseline

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def _simulated(n_genes: int, basal: str, data_seed: int) -> Task:
    adata = pdae.data.simulate(
        n_perturbations=10,
        n_genes=n_genes,
        n_cells_per_condition=100,
        basal=basal,
        seed=data_seed,
    )
    split = pdae.data.split_perturbations(adata, holdout="doubles", n_holdout=10, seed=data_seed)
    held = sorted(adata.obs["perturbation"][split == "test"].astype(str).unique())
    train, test = _split(adata, held)
    return Task(f"{basal}{n_genes}", train, test, held)


EXTRA = {
    "clean_latent16": TASKS["clean"],  # the clean task with PDAE(n_latent=16)
    "laplace": lambda: _simulated(100, "laplace", 0),
    "clean_data1": lambda: _simulated(100, "gaussian", 1),
    "clean500": lambda: _simulated(500, "gaussian", 0),
}


def task_named(name: str) -> Task:
    """The task ``name`` of ``_tasks.TASKS`` or of :data:`EXTRA`."""
    return (EXTRA[name] if name in EXTRA else TASKS[name])()


#: PDAE(...) arguments of a task, where not the defaults
MODEL_KWARGS = {"clean_latent16": {"n_latent": 16}}


def run(name: str, seed: int) -> pd.DataFrame:
    """Per-condition scores of every check and of every baseline, one training run."""
    task = task_named(name)
    model, fit_s = fit_pdae(task, seed, MODEL_KWARGS.get(name))
    cb = next(c for c in model.trainer.callbacks if isinstance(c, HeldOutCheckpoints))
    rows = []
    for (step, source), values in cb._scores.items():
        for g, v in enumerate(values):
            rows.append((step, source, "network", g, float(v)))
    for source in SOURCES:
        table = cb._held_out_table(model.module, source, SIMPLE_METHODS)
        for method in SIMPLE_METHODS:
            for g, v in enumerate(table[method].to_numpy(dtype=float)):
                rows.append((-1, source, method, g, float(v)))
    out = pd.DataFrame(rows, columns=["step", "source", "method", "group", "energy_distance"])
    out.insert(0, "task", name)
    out.insert(1, "seed", seed)
    out["total_steps"] = cb.total
    out["default_source"] = "ctrl" if model.default_source_ != "all" else "all"
    out["fit_s"] = round(fit_s, 1)
    print(f"{name} seed {seed}: {fit_s:.0f} s, {model.training_stopped_}", flush=True)
    return out


# -- stop rules, replayed on the recorded checks ---------------------------------------------
def _curves(run: pd.DataFrame, source: str) -> tuple[list[int], dict, pd.DataFrame]:
    net = run[(run["source"] == source) & (run["method"] == "network")]
    per_step = {
        s: g.sort_values("group")["energy_distance"].to_numpy() for s, g in net.groupby("step")
    }
    base = run[(run["source"] == source) & (run["step"] == -1)]
    base = base.pivot(index="group", columns="method", values="energy_distance")
    return sorted(per_step), per_step, base


def _behind(best: np.ndarray, base: pd.DataFrame) -> tuple[bool, float]:
    method = closest_baseline(base)
    diff = best - base[method].to_numpy()
    return clearly_positive(diff), float(diff.mean())


def rule_behind(curves: dict, upto: int, total: int) -> bool:
    """Tried, not kept: the best check so far clearly behind the best baseline."""
    for _, curve, base in curves.values():
        seen = [s for s in curve if s <= upto]
        best = min(seen, key=lambda s: curve[s].mean())
        if not _behind(curve[best], base)[0]:
            return False
    return True


class _WholeGain(HeldOutCheckpoints):
    """The rule before 2026-12-04 afternoon: behind by more than the whole gain, stalled or not."""

    def _pace(self, curve, steps):
        return self._gain(curve, steps)


class _RecentGain(HeldOutCheckpoints):
    """Tried, not kept: behind by more than the best check improved over the second half of
    the run so far (whatever that amount), instead of only when it improved by nothing."""

    def _pace(self, curve, steps):
        return self._recent_gain(curve, steps)


def rule_default(curves: dict, upto: int, total: int, checks=HeldOutCheckpoints) -> bool:
    """The rule of ``train``: :meth:`HeldOutCheckpoints._no_use_going_on` itself."""
    n_groups = len(next(iter(curves.values()))[2])
    cb = checks(SimpleNamespace(), groups=[(g, 0) for g in range(n_groups)])
    cb.total, cb.decaying = total, True  # the runs of this script: the cosine schedule
    for source, (_, curve, base) in curves.items():
        cb._baselines[source] = base.reset_index(drop=True)
        for s, values in curve.items():
            if s <= upto:
                cb._scores[(s, source)] = values
                cb._states[s] = {}  # the checks of the run so far
    return cb._no_use_going_on(None, upto)


def rule_whole_gain(curves: dict, upto: int, total: int) -> bool:
    """The rule before: the whole run's gain when behind a baseline too."""
    return rule_default(curves, upto, total, checks=_WholeGain)


def rule_recent_gain(curves: dict, upto: int, total: int) -> bool:
    """Behind a baseline by more than the recent gain."""
    return rule_default(curves, upto, total, checks=_RecentGain)


RULES = {
    "behind (not kept)": rule_behind,
    "whole gain (before)": rule_whole_gain,
    "recent gain (not kept)": rule_recent_gain,
    "default": rule_default,
}


def replay(run: pd.DataFrame, rule) -> dict:
    """Where ``rule`` stops this run and whether it is safe."""
    total = int(run["total_steps"].iloc[0])
    curves = {src: _curves(run, src) for src in SOURCES}
    steps = sorted(set(curves["ctrl"][0]) & set(curves["all"][0]))
    src = run["default_source"].iloc[0]
    all_steps, curve, base = curves[src]
    stop = all_steps[-1]
    for s in steps:
        if s >= STOP_FROM * total and rule(curves, s, total):
            stop = s
            break
    best_all = min(all_steps, key=lambda s: curve[s].mean())
    falls_back_anyway = _behind(curve[best_all], base)[0]
    safe = best_all <= stop or falls_back_anyway
    return {
        "stop": stop,
        "saved": 1 - stop / all_steps[-1],
        "safe": safe,
        "best_step": best_all,
        "falls_back": falls_back_anyway,
    }


def summarise(table: pd.DataFrame) -> str:
    lines = [
        "| task | seed | fit s | default source | best check | falls back | "
        + " | ".join(f"{r}: stop (safe)" for r in RULES)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(RULES),
    ]
    for (task, seed), run_ in table.groupby(["task", "seed"], sort=False):
        cells = []
        for rule in RULES.values():
            r = replay(run_, rule)
            verdict = "safe" if r["safe"] else "NOT SAFE"
            cells.append(f"{r['stop']} ({verdict}, {r['saved']:.0%} saved)")
        r = replay(run_, rule_default)
        lines.append(
            f"| {task} | {seed} | {run_['fit_s'].iloc[0]:.0f} | {run_['default_source'].iloc[0]} "
            f"| {r['best_step']} | {'yes' if r['falls_back'] else 'no'} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=[*TASKS, *EXTRA])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--summarise", type=Path, default=None)
    args = parser.parse_args()
    if args.summarise is not None:
        print(summarise(pd.read_csv(args.summarise)))
        return
    _held_out_checkpoints.STOP_FROM = float("inf")  # record the whole run
    t0 = time.perf_counter()
    table = pd.concat([run(t, s) for t in args.tasks for s in args.seeds], ignore_index=True)
    print(f"{time.perf_counter() - t0:.0f} s")
    text = summarise(table)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "held_out_stop.csv", index=False)
        (args.out / "held_out_stop.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
