"""Which intercept the linear model takes: the measured control mean, or a fitted one.

The ``linear`` baseline and the residual decoder's gene-shift start share one least-squares
fit (``pdae_sc.data._least_squares.linear_effects``): with one context its intercept is the
control cells' mean as measured; with several contexts each context gets a fitted intercept.
This script scores the ``linear`` baseline on every development task of ``_tasks.py`` with
both intercepts, each on its task's protocol (the same distinct control cells, each once),
beside the noise floor, so the rule is a measured choice.

    python benchmarks/linear_intercepts.py [--tasks ...] [--out benchmarks/results]

Prints the table and, with ``--out``, writes ``linear_intercepts.md``. No training: about
two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from _tasks import TASKS, protocol_cells, score

import pdae_sc as pdae
from pdae_sc.tl import _baselines

warnings.filterwarnings("ignore")


def _measured(matrix, codes, ctx_codes, labels):
    """``mean[c, ctx] - control[ctx] = l_c beta``: each context anchored at its control cells."""
    labels = np.asarray(labels.toarray() if hasattr(labels, "toarray") else labels)
    is_ctrl = ~labels.any(axis=1)
    rows, rhs = [], []
    for c in np.unique(ctx_codes):
        in_ctx = ctx_codes == c
        ctrl = in_ctx & is_ctrl[codes]
        if not ctrl.any():
            continue
        anchor = np.asarray(matrix[np.flatnonzero(ctrl)].mean(0)).ravel()
        for k in np.unique(codes[in_ctx & ~is_ctrl[codes]]):
            cells = np.flatnonzero(in_ctx & (codes == k))
            rows.append(labels[k])
            rhs.append(np.asarray(matrix[cells].mean(0)).ravel() - anchor)
    return np.linalg.lstsq(np.vstack(rows), np.vstack(rhs), rcond=None)[0]


def _fitted(matrix, codes, ctx_codes, labels):
    """One fitted intercept per context, one context included."""
    ctx_codes = np.asarray(ctx_codes)
    labels = np.asarray(labels.toarray() if hasattr(labels, "toarray") else labels)
    n_ctx = int(ctx_codes.max()) + 1
    groups = np.unique(np.c_[codes, ctx_codes], axis=0)
    means = np.vstack(
        [
            np.asarray(matrix[np.flatnonzero((codes == k) & (ctx_codes == c))].mean(0)).ravel()
            for k, c in groups
        ]
    )
    design = np.hstack([np.eye(n_ctx)[groups[:, 1]], labels[groups[:, 0]]])
    return np.linalg.lstsq(design, means, rcond=None)[0][n_ctx:]


VARIANTS = {"measured control mean": _measured, "fitted intercept": _fitted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for name in args.tasks:
        task = TASKS[name]()
        n = protocol_cells(task)
        ctx = {}
        if task.context_key:
            ctx = {"context_key": task.context_key, "context": task.context}
        row = {"task": name, "contexts": "yes" if task.context_key else "no"}
        oracle = [  # the noise floor: the mean over three random halvings, as real_data.py
            pdae.tl.predict_baseline(
                task.train, task.targets, method="oracle_half", adata_true=task.test, seed=s
            )
            for s in (0, 1, 2)
        ]
        row["oracle_half"] = np.mean(
            [score(task, o, seed=s)["energy_distance"].mean() for s, o in enumerate(oracle)]
        )
        for label, fit in VARIANTS.items():
            with mock.patch.object(_baselines, "linear_effects", fit):
                pred = pdae.tl.predict_baseline(
                    task.train, task.targets, method="linear", n_cells=n, seed=0, **ctx
                )
            row[label] = score(task, pred)["energy_distance"].mean()
        pred = pdae.tl.predict_baseline(
            task.train, task.targets, method="linear", n_cells=n, seed=0, **ctx
        )
        row["pdae-sc's linear"] = score(task, pred)["energy_distance"].mean()
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    text = (
        "# The linear model's intercept (`python benchmarks/linear_intercepts.py`)\n\n"
        "Energy distance of the `linear` baseline to the held-out cells (mean over the "
        "task's targets; the baseline does not depend on a training seed; the noise floor is "
        "the mean over three random halvings of the held-out cells, as in `real_data.md`), "
        "each "
        "task's protocol (the same distinct control cells, each once). *measured control "
        "mean*: every context anchored at its own control cells; *fitted intercept*: one "
        "least-squares intercept per context; *pdae-sc's linear*: what "
        '`tl.predict_baseline(method="linear")` and the decoder\'s start use (the measured '
        "control mean with one context, fitted intercepts with several).\n\n"
        + table.to_markdown(index=False, floatfmt=".4f")
        + "\n"
    )
    print(text)
    if args.out:
        Path(args.out, "linear_intercepts.md").write_text(text)


if __name__ == "__main__":
    main()
