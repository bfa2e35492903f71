"""The network's score on the held-out conditions during training, and on unseen targets.

    python benchmarks/held_out_checks.py [--tasks ...] [--seed 0] [--out benchmarks/results]

For each task (``_tasks.py``) one model is trained with its defaults. ``train`` scores the
network on the conditions it holds out at every twelfth of the run, from the control cells
and from every cell (``model.held_out_checks_``, :mod:`pdae_sc.model._held_out_checkpoints`).
Afterwards the weights of every check are loaded in turn and the network's predictions for
the task's unseen targets are scored (energy distance, the honest protocol of
``real_data.py``, the default source set chosen again on those weights). The table shows
whether the held-out conditions rank the weights of a run as the unseen targets do, and which
weights the default kept. Writes ``held_out_checks.csv`` and ``held_out_checks.md``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
import warnings
from pathlib import Path

import pandas as pd
from _tasks import TASKS, fit_pdae, predict_under_protocol, score

from pdae_sc.model._diagnostics import check_after_training
from pdae_sc.model._held_out_checkpoints import HeldOutCheckpoints

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def unseen_score(task, model, seed: int, method: str = "pdae") -> float:
    """Mean energy distance of the model's predictions for the task's unseen targets."""
    pred = predict_under_protocol(task, model, seed, method=method)
    return float(score(task, pred, seed=seed)["energy_distance"].mean())


def run_task(name: str, seed: int) -> tuple[pd.DataFrame, dict]:
    task = TASKS[name]()
    model, fit_s = fit_pdae(task, seed)
    kept = {
        "task": name,
        "fit_s": round(fit_s, 1),
        "stopped": model.training_stopped_,
        "default": unseen_score(task, model, seed, method="auto"),
        "chosen": model.prediction_method_,
    }
    checks = model.held_out_checks_.pivot(index="step", columns="source", values="energy_distance")
    callback = next(c for c in model.trainer.callbacks if isinstance(c, HeldOutCheckpoints))
    states = dict(callback._states)  # every check's weights; the last ones too when restored
    states.setdefault(callback.last_step, copy.deepcopy(model.module.state_dict()))
    unseen = {}
    for step, state in sorted(states.items()):
        model.module.load_state_dict(state)
        model.module.eval()
        check_after_training(model)
        unseen[step] = unseen_score(task, model, seed)
    checks["unseen targets (network)"] = checks.index.map(lambda s: unseen.get(s, float("nan")))
    checks = checks.reset_index()
    checks.insert(0, "task", name)
    print(f"{name} seed {seed}: {kept}", flush=True)
    print(checks.round(4).to_string(index=False), flush=True)
    return checks, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    t0 = time.perf_counter()
    tables, kept = zip(*(run_task(name, args.seed) for name in args.tasks), strict=True)
    table = pd.concat(tables, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "held_out_checks.csv", index=False)
    lines = [
        "# The network on the held-out conditions during training",
        "",
        f"`python benchmarks/held_out_checks.py --seed {args.seed}` "
        f"({time.perf_counter() - t0:.0f} s, alone on 2 CPU cores).",
        "Energy distance, lower is better. `all`, `ctrl`: the network's mean over the",
        "conditions `train` held out, predicted from every cell or from the control cells",
        "(`model.held_out_checks_`); `unseen targets (network)`: the task's unseen targets",
        "predicted by the network with the weights of that check (the honest protocol of",
        "`real_data.md`). The last row of each task is the last step of the run.",
        "",
        pd.DataFrame(kept).to_markdown(index=False, floatfmt=".4f"),
        "",
    ]
    for name, part in table.groupby("task", sort=False):
        lines += [
            f"## {name}",
            "",
            part.drop(columns="task").to_markdown(index=False, floatfmt=".4f"),
            "",
        ]
    (args.out / "held_out_checks.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
