"""The simple baselines for new cells: each target's mean shift, fitted on the registered cells.

``model.predict(..., adata=new_cells, method="linear")`` (or ``"additive"``,
``"mean_response"``, ``"control"``) adds :func:`baseline_shifts` to the new cells. The
baselines other than ``pooled`` read the registered cells only through the mean of each
(condition, context) group (:func:`_group_means`), so they are fitted on those means by
:func:`~pdae_sc.tl.predict_baseline`, with the new cells' context as an empty one.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from pdae_sc.data._labels import match_labels
from pdae_sc.data._prediction_adata import SOURCE_CELL_KEY
from pdae_sc.data._sampler import group_sums
from pdae_sc.tl._baselines import predict_baseline

from ._predict import embedding_argument
from ._registered_prediction import PLACED_BY
from ._registration import Registration, Targets

__all__ = ["SHIFT_MEASURED", "baseline_shifts"]

#: A target measured in a registered context: its mean shift measured there.
SHIFT_MEASURED = "measured in training"

#: Context of the new cells among the registered ones (suffixed until no context has it).
_NEW_CONTEXT = "new cells"
#: Context column of the group means handed to the baselines.
_CONTEXT_COLUMN = "_pdae_context"


def baseline_shifts(
    registration: Registration, method: str, targets: Targets, *, measured_first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Mean shift of each target by a simple baseline fitted on the registered cells.

    The shift that :func:`~pdae_sc.tl.predict_baseline` adds to control cells, for a context
    with no measured perturbation: ``control`` none; ``additive`` the target's mean shift
    measured in the registered contexts (its mean minus their control cells' mean, averaged
    over the contexts that measured it), and for a combination never measured the sum of its
    singles' shifts, each measured so; ``linear`` ``l* beta`` of the linear fit over every
    (condition, context) group (a fitted intercept per context with several), with the
    model's perturbation embedding for perturbations never measured (the linear model with
    embeddings); ``mean_response`` the mean response, averaged over the registered contexts.
    For a single this ``additive`` is :func:`~pdae_sc.tl.predict_baseline`'s; for a measured
    combination it is the measured shift where ``predict_baseline`` sums the singles.

    ``measured_first`` (``method="auto"``): every target measured in a registered context
    gets its measured shift, as with ``additive``; a target with a perturbation never
    measured gets the linear model with embeddings' (as ``predict`` does for registered
    cells, :mod:`~pdae_sc.model._registered_prediction`); only the others ``method``'s.

    Returns the shifts ``(n_targets, n_genes)`` (float64) and, per target, the source of its
    shift: :data:`SHIFT_MEASURED` or the baseline's name.
    """
    n = len(targets.names)
    if method == "control" and not measured_first:
        return np.zeros((n, len(registration.genes))), np.full(n, method, dtype=object)
    groups = _group_means(registration)
    if method != "additive" and not measured_first:
        shifts = _fitted_shifts(registration, groups, method, targets.names, targets.dosages)
        return shifts, np.full(n, method, dtype=object)
    shifts = _measured_shifts(registration, groups, targets.labels)
    how = np.where(np.isnan(shifts[:, 0]), method, SHIFT_MEASURED).astype(object)
    if measured_first:
        placed = np.array([bool(p) for p in targets.from_embedding], dtype=bool)
        how[placed & (how != SHIFT_MEASURED)] = PLACED_BY
    for m in set(how) - {SHIFT_MEASURED}:
        todo = np.flatnonzero(how == m)
        if m == "control":
            shifts[todo] = 0.0
            continue
        names = [targets.names[t] for t in todo]
        doses = [targets.dosages[t] for t in todo]
        shifts[todo] = _fitted_shifts(registration, groups, m, names, doses)
    return shifts, how


def _group_means(registration: Registration) -> AnnData:
    """One row per (condition, context) group of the registered cells: its mean expression.

    ``obs``: the group's condition and dose (written out, dose 1 included) and context. The
    simple baselines other than ``pooled`` read the cells only through these means.
    """
    cells = registration.cells
    enc, n_ctx = cells.encoded, len(cells.context_names)
    sums, counts = group_sums(
        registration.matrix, enc.codes * n_ctx + cells.context_codes, enc.n_conditions * n_ctx
    )
    present = np.flatnonzero(counts)
    cond, ctx = np.divmod(present, n_ctx)
    n_tokens = np.diff(enc.label_rows.indptr)  # dose 1 written out: a column has no None
    doses = [
        d if d is not None else registration.delimiter.join(["1"] * k) or "0"
        for d, k in zip(enc.dosages, n_tokens, strict=True)
    ]
    obs = pd.DataFrame(
        {
            registration.perturbation_key: np.asarray(enc.conditions, dtype=object)[cond],
            "_pdae_dose": np.asarray(doses, dtype=object)[cond],
            _CONTEXT_COLUMN: np.asarray(cells.context_names, dtype=object)[ctx],
            "_pdae_condition": cond,
        },
        index=[f"group_{i}" for i in range(len(present))],
    )
    return AnnData(sums[present] / counts[present, None], obs=obs)


def _measured_shifts(registration: Registration, groups: AnnData, labels) -> np.ndarray:
    """Each target's measured mean shift, averaged over contexts; NaN rows where never measured."""
    enc = registration.cells.encoded
    cond = groups.obs["_pdae_condition"].to_numpy()
    ctx = groups.obs[_CONTEXT_COLUMN].to_numpy()
    is_ctrl = (enc.label_rows.getnnz(axis=1) == 0)[cond]
    control_of = {c: groups.X[i] for i, c in enumerate(ctx) if is_ctrl[i]}
    hits = match_labels(labels, enc.label_rows)
    out = np.full((len(labels), groups.n_vars), np.nan)
    for t in range(len(labels)):
        rows = np.flatnonzero(np.isin(cond, hits[t].indices) & ~is_ctrl)
        deltas = [groups.X[r] - control_of[ctx[r]] for r in rows if ctx[r] in control_of]
        if deltas:
            out[t] = np.mean(deltas, axis=0)
    return out


def _fitted_shifts(registration: Registration, groups: AnnData, method, names, dosages):
    """The baseline's shift for targets ``names`` in a new context, from the group means.

    With contexts, a control row of a new, empty context is added at the origin, so that
    :func:`~pdae_sc.tl.predict_baseline` predicts there (from the other contexts' effects).
    """
    contexts = registration.cells.context_names
    new_context = None
    if len(contexts) > 1:
        new_context = _NEW_CONTEXT
        while new_context in contexts:  # a name no registered context has
            new_context += "*"
        row = {registration.perturbation_key: registration.control_group}
        row.update({"_pdae_dose": "0", _CONTEXT_COLUMN: new_context, "_pdae_condition": -1})
        origin = AnnData(np.zeros((1, groups.n_vars)), obs=pd.DataFrame([row], index=["new"]))
        groups = ad.concat([groups, origin])
    with_doses = registration.dosage_key is not None
    pred = predict_baseline(
        groups,
        list(names),
        method=method,
        perturbation_key=registration.perturbation_key,
        control_group=registration.control_group,
        delimiter=registration.delimiter,
        dosage_key="_pdae_dose" if with_doses else None,
        dosages=list(dosages) if with_doses else None,
        n_cells=1,
        context_key=None if new_context is None else _CONTEXT_COLUMN,
        context=new_context,
        seed=0,
        **embedding_argument(registration, method),
    )
    source = groups.obs_names.get_indexer(pred.obs[SOURCE_CELL_KEY])
    return np.asarray(pred.X, dtype=np.float64) - np.asarray(groups.X)[source]
