"""``predict`` from the registered cells: the network or a baseline, chosen per target.

With ``method="auto"`` every target is predicted by the method the model chose on its
held-out conditions, except a target that holds a perturbation never measured, placed by
the perturbation embedding: that one is predicted by the linear model with embeddings
(:data:`PLACED_BY`). The held-out conditions were all measured, so they say nothing about
how well the network places a perturbation it never saw; the one check of a placement is the
leave-one-perturbation-out error of the embedding map, fitted on the linear model's effects
(:mod:`pdae_sc.data._perturbation_embedding`), and the linear model with embeddings is the
estimate that check is about. On the leave-genes-out benchmark the network's placement was
further from the held-out knockouts on both screens (``benchmarks/results/unmeasured_genes.md``).
The extrapolation table's :data:`PREDICTED_BY` column says which method predicted each
target.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from pdae_sc.data._prediction_adata import UNS_CHOSEN, UNS_EXTRAPOLATION, UNS_KEY, UNS_METHOD

from ._predict import (
    baseline_applies,
    baseline_prediction_available,
    predict_cells,
    predict_with_baseline,
)
from ._registration import RegisteredCells, Registration, Targets

__all__ = ["PLACED_BY", "PREDICTED_BY", "predict_registered"]

#: Method of ``method="auto"`` for targets with never-measured perturbations.
PLACED_BY = "linear"
#: Column of the extrapolation table: the method that predicted each target.
PREDICTED_BY = "predicted_by"


def predict_registered(
    model,
    registration: Registration,
    cells: RegisteredCells,
    targets: Targets,
    src_idx: np.ndarray,
    *,
    method: str,
    chosen: bool,
    n_cells,
    seed,
    batch_size,
    scale,
    sparse,
) -> AnnData:
    """``model.predict`` from the registered cells ``src_idx`` (the network's sources).

    ``method``: the method asked for, or with ``chosen`` the model's choice, which targets
    with never-measured perturbations leave for :data:`PLACED_BY` (see the module).
    """
    if sparse is None:
        sparse = bool(sp.issparse(registration.matrix))

    def run(how: str, part: Targets) -> AnnData:
        if how != "pdae":
            return predict_with_baseline(
                registration,
                how,
                part,
                n_cells=n_cells,
                seed=seed,
                scale=scale,
                sparse=sparse,
                batch_size=model._batch_size(None),
                chosen_method=getattr(model, "prediction_method_", None),
            )
        return predict_cells(
            model.module,
            model.device,
            registration,
            cells,
            part,
            src_idx,
            n_cells=n_cells,
            seed=seed,
            batch_size=batch_size,
            scale=scale,
            sparse=sparse,
            max_bytes=model.max_prediction_bytes,
        )

    placed = np.array([bool(p) for p in targets.from_embedding], dtype=bool)
    if not (chosen and placed.any() and _linear_applies(registration, cells, targets)):
        return run(method, targets)
    how = np.where(placed, PLACED_BY, method)
    parts = {m: np.flatnonzero(how == m) for m in dict.fromkeys(how)}
    preds = {m: run(m, subset_targets(targets, idx)) for m, idx in parts.items()}
    return _join(preds, parts, targets, how, method)


def _linear_applies(registration: Registration, cells: RegisteredCells, targets: Targets) -> bool:
    """Whether :data:`PLACED_BY` can predict ``targets`` (else the chosen method does)."""
    return baseline_prediction_available(registration) and baseline_applies(
        cells, PLACED_BY, targets.context
    )


def subset_targets(targets: Targets, idx: np.ndarray) -> Targets:
    """The targets ``idx`` of ``targets`` (in that order)."""
    idx = [int(i) for i in idx]
    return Targets(
        labels=targets.labels[idx],
        names=[targets.names[i] for i in idx],
        dosages=[targets.dosages[i] for i in idx],
        display=[targets.display[i] for i in idx],
        context=targets.context,
        context_index=targets.context_index,
        table=targets.table.iloc[idx],
        from_embedding=[targets.from_embedding[i] for i in idx],
    )


def _join(preds, parts, targets: Targets, how, method: str) -> AnnData:
    """The per-method predictions as one, target by target in the order asked."""
    blocks: list[AnnData | None] = [None] * len(targets.names)
    for m, idx in parts.items():
        pred = preds[m]
        size = pred.n_obs // len(idx)
        for j, t in enumerate(idx):
            blocks[t] = pred[j * size : (j + 1) * size]
    out = ad.concat(blocks, merge="same")
    for col in out.obs.columns:  # categories as one prediction has them
        if any(isinstance(b.obs[col].dtype, pd.CategoricalDtype) for b in blocks if col in b.obs):
            out.obs[col] = out.obs[col].astype("category")
    table = targets.table.copy()
    table[PREDICTED_BY] = how
    out.uns[UNS_KEY] = {
        UNS_METHOD: method,
        UNS_CHOSEN: True,
        UNS_EXTRAPOLATION: table.reset_index(),
    }
    return out
