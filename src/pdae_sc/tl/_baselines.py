"""Reference predictions (control, pooled, additive, linear, oracle) in the model's format."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData

from pdae_sc.data._labels import (
    EncodedConditions,
    closest_names,
    encode_conditions,
    format_condition,
    label_vector,
    match_labels,
    parse_condition,
)
from pdae_sc.data._least_squares import linear_effects
from pdae_sc.data._perturbation_embedding import (
    EMBEDDING_FROM_EXPRESSION,
    PerturbationEmbedding,
    check_embedding_table,
    embedding_label_rows,
    expression_embedding,
    fit_embedding_map,
)
from pdae_sc.data._prediction_adata import (
    UNS_METHOD,
    UNS_ORACLE_REFERENCE,
    prediction_adata,
)
from pdae_sc.data._span import extrapolation_table
from pdae_sc.data._validation import check_positive_int

from ._common import dense_rows as _dense
from ._common import layer_matrix as _matrix

__all__ = ["BASELINES", "predict_baseline"]

BASELINES = ("control", "pooled", "additive", "linear", "mean_response", "oracle_half")
#: ``predict_baseline(placed_effects=)``: what a never-measured perturbation's weights apply to.
PLACED_EFFECTS = ("linear", "context")


def _canonical_names(targets, parsed, enc, control_group, delimiter) -> list[str]:
    """Targets spelled as :meth:`pdae_sc.model.PDAE.predict` spells them.

    A target with the label vector of a condition of ``adata`` gets that condition's name
    (``"P1+P0"`` is written ``"P0+P1"`` if the data say so); any other target of known
    perturbations lists them in vocabulary order; a target with unknown perturbations
    (e.g. for ``oracle_half``) keeps the given spelling.
    """
    out = []
    for target, lab in zip(targets, parsed, strict=True):
        if not all(k in enc.vocabulary for k in lab):
            out.append(target)
            continue
        hits = match_labels(label_vector(lab, enc.vocabulary), enc.label_rows).indices
        if len(hits):
            out.append(enc.conditions[int(hits[0])])
        else:
            ordered = {k: lab[k] for k in enc.vocabulary if k in lab}
            out.append(
                format_condition(ordered, control_group=control_group, delimiter=delimiter)[0]
            )
    return out


def _encode(adata: AnnData, key: str, control_group, delimiter, dosage_key, name):
    for col in (key, dosage_key):
        if col is not None and col not in adata.obs:
            raise KeyError(f"{col!r} is not a column of {name}.obs ({list(adata.obs.columns)}).")
    return encode_conditions(
        adata.obs[key],
        control_group=control_group,
        delimiter=delimiter,
        dosages=None if dosage_key is None else adata.obs[dosage_key],
        name=key,
    )


def _group_means(mat, enc: EncodedConditions) -> np.ndarray:
    """Mean profile of each condition, shape ``(n_conditions, n_genes)``."""
    return np.vstack(
        [
            np.asarray(mat[np.flatnonzero(enc.codes == c)].mean(axis=0, dtype=np.float64))
            for c in range(enc.n_conditions)
        ]
    )


class _Contexts(NamedTuple):
    codes: np.ndarray  # context code of each cell
    names: list[str]
    target: int  # code of the context predicted in


def _contexts(adata: AnnData, context_key: str | None, context: object) -> _Contexts:
    """Context code of each cell, the context names and the code of ``context``."""
    if context_key is None or context is None:
        raise ValueError(
            "Give both context_key (a column of adata.obs) and context (the value to predict "
            f"in); got context_key={context_key!r}, context={context!r}."
        )
    if context_key not in adata.obs:
        raise KeyError(f"context_key={context_key!r} is not a column of adata.obs.")
    values = adata.obs[context_key].astype(str).to_numpy()
    names = sorted(set(values))
    if str(context) not in names:
        raise ValueError(f"context={context!r} is not in adata.obs[{context_key!r}]: {names}.")
    codes = np.searchsorted(np.asarray(names, dtype=object), values)
    return _Contexts(codes, names, names.index(str(context)))


def _resample(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(pool, n, replace=n > len(pool))


def _context_means(mat, enc: EncodedConditions, ctx_codes: np.ndarray, n_ctx: int) -> np.ndarray:
    """Mean of each condition in each context, ``(n_ctx, n_conditions, n_genes)``; NaN: absent."""
    out = np.full((n_ctx, enc.n_conditions, mat.shape[1]), np.nan)
    for c in range(n_ctx):
        for k in range(enc.n_conditions):
            idx = np.flatnonzero((ctx_codes == c) & (enc.codes == k))
            if len(idx):
                out[c, k] = np.asarray(mat[idx].mean(axis=0, dtype=np.float64)).ravel()
    return out


def _context_single_effects(enc, ctx_means, ctrl: int, target_ctx: int, token: str, dose):
    """Single effect of ``token`` in the target context, else averaged over the others."""
    order = [target_ctx] + [c for c in range(len(ctx_means)) if c != target_ctx]
    found = []
    for c in order:
        present = ~np.isnan(ctx_means[c, :, 0])
        if not present[ctrl]:
            continue
        try:
            found.append(_single_effects(enc, ctx_means[c], ctrl, token, dose, present))
        except ValueError:
            continue
        if c == target_ctx:
            return found[0]
    if not found:
        raise ValueError(
            f"The additive baseline needs the single perturbation {token!r} and control cells "
            "in one context at least; use method='linear' instead."
        )
    return np.mean(found, axis=0)


def _mean_response(means: np.ndarray, enc: EncodedConditions, ctrl: int) -> np.ndarray:
    """Mean over the perturbed conditions (equal weights) of their mean change vs control."""
    perturbed = np.flatnonzero(enc.labels.any(axis=1) & ~np.isnan(means[:, 0]))
    if len(perturbed) == 0 or np.isnan(means[ctrl, 0]):
        raise ValueError(
            "method='mean_response' needs control cells and at least one perturbed condition "
            "(in the target context, or in another context with its own control cells)."
        )
    return (means[perturbed] - means[ctrl]).mean(axis=0)


def _context_mean_response(enc, ctx_means, ctrl: int, target_ctx: int) -> np.ndarray:
    """The mean response in the target context, else averaged over the other contexts."""
    try:
        return _mean_response(ctx_means[target_ctx], enc, ctrl)
    except ValueError:
        pass
    found = []
    for c in range(len(ctx_means)):
        try:
            found.append(_mean_response(ctx_means[c], enc, ctrl))
        except ValueError:
            continue
    if not found:
        raise ValueError(
            "method='mean_response' needs a context with both control cells and perturbed "
            "cells; adata has none."
        )
    return np.mean(found, axis=0)


def _single_effects(
    enc: EncodedConditions,
    means: np.ndarray,
    ctrl: int,
    token: str,
    dose,
    present: np.ndarray | None = None,
):
    """Mean change of ``token`` at ``dose`` from its single-perturbation conditions."""
    k = enc.vocabulary.index(token)
    single = np.flatnonzero((enc.labels != 0).sum(1) == 1)
    single = single[enc.labels[single, k] != 0]
    if present is not None:
        single = single[present[single]]
    if len(single) == 0:
        combos = [c for c, lab in zip(enc.conditions, enc.labels, strict=True) if lab[k] != 0]
        raise ValueError(
            f"The additive baseline needs the single perturbation {token!r} in training, but "
            f"it was only seen in combinations {combos[:5]}; use method='linear' instead."
        )
    doses = enc.labels[single, k]
    deltas = means[single] - means[ctrl]
    exact = np.flatnonzero(doses == dose)
    if len(exact):
        return deltas[exact[0]]
    # Per-unit effect, least squares through the origin over the trained doses.
    return dose * (doses @ deltas) / (doses @ doses)


def predict_baseline(
    adata: AnnData,
    perturbations: Sequence[str] | str,
    *,
    method: str,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    delimiter: str = "+",
    dosage_key: str | None = None,
    dosages: Sequence[object] | None = None,
    n_cells: int | None = None,
    adata_true: AnnData | None = None,
    layer: str | None = None,
    context_key: str | None = None,
    context: str | None = None,
    seed: int = 0,
    perturbation_embedding: pd.DataFrame | Mapping | str | None = None,
    placed_effects: str = "linear",
) -> AnnData:
    """Predict cells of target conditions with a simple baseline.

    Methods (``ctrl`` = the control cells of ``adata``, ``l*`` = label vector of a target):

    - ``control``: control cells, resampled.
    - ``pooled``: all training cells, resampled.
    - ``additive``: control cells shifted by the sum over the target's perturbations of
      their single-perturbation mean change versus control. A single trained at the target
      dose is used as is; otherwise its per-unit effect (least squares through the origin
      over its trained doses, i.e. change / dose for one dose) is scaled by the target dose.
    - ``linear``: least squares ``mean_c - mean_ctrl = l_c β`` over the training conditions,
      each with equal weight (minimum-norm solution), control cells shifted by ``l* β``. The
      fit is anchored at the measured control mean, not a fitted intercept; it is also the
      start of PDAE's residual gene shift. Warns when ``l*`` is outside the span of the training
      labels (the unidentified part of the shift is then zero).
    - ``mean_response``: control cells shifted by the mean response of the training
      perturbations, the average over the perturbed training conditions (each with equal
      weight) of their mean change versus control; the same shift for every target. This
      is the reference of the Virtual Cell Challenge scorer: a method that cannot beat it
      has not learnt what is specific to a perturbation.
    - ``oracle_half``: the noise floor. The cells of each target in ``adata_true`` are split
      in two random halves; the first half is returned and the obs_names of the second half
      are stored in ``uns["pdae"]["oracle_reference_cells"]``. Evaluate against those only:
      ``evaluate(pred, adata_true[pred.uns["pdae"]["oracle_reference_cells"]])``.

    With ``context_key`` and ``context`` (e.g. a cell line) every method predicts in that
    context: ``control`` and ``pooled`` draw from its cells, ``additive`` and ``linear``
    shift its control cells. ``additive`` takes each single effect in the target context
    when it was measured there, else the mean of its effects in the other contexts
    (control + the mean shift from the other contexts); ``linear`` fits
    ``mean = a_context + l beta`` over all (condition, context) groups (a fitted intercept
    per context) and shifts by ``l* beta``; ``mean_response`` averages the responses
    measured in the target context (against its control cells), else those of every other
    context.

    With ``perturbation_embedding``, ``linear`` also predicts perturbations that were never
    measured (the linear model with embeddings): the effects ``beta`` of the measured
    perturbations that have an embedding are regressed on their embeddings (ridge, with an
    unpenalised intercept, the penalty chosen by leave-one-perturbation-out error), and a
    new perturbation's effect is that regression at its embedding: ``b + M (e - e_mean)``,
    a linear map from the perturbation embedding to the mean change, written as a weighted
    sum of the measured effects (weights summing to one). The mean effect of every
    measured perturbation is used instead unless the regression's leave-one-out error is
    more than one standard error below it. The same map places new perturbations in
    :meth:`pdae_sc.model.PDAE.predict` (``setup_anndata(perturbation_embedding=...)``).
    With a context and ``placed_effects="context"``, those weights apply to each measured
    perturbation's mean change measured in the target context (against its control cells)
    instead of its linear effect ``beta``, where it was measured alone there; with the
    weights of the mean this is the ``mean_response`` of that context. The linear model
    fits one effect per perturbation over every context; where the responses in the target
    context are stronger or weaker than elsewhere, the effects measured there carry that
    difference to the new perturbation. The measured perturbations keep ``beta``.

    Cells are drawn without replacement when ``n_cells`` does not exceed the pool, with
    replacement otherwise, from ``np.random.default_rng(seed)``. Targets only need known
    perturbations for ``additive`` and ``linear``.

    Parameters
    ----------
    adata
        Training cells (observed conditions, with the control).
    perturbations
        Target conditions, e.g. ``["A+B"]``.
    method
        One of ``control``, ``pooled``, ``additive``, ``linear``, ``mean_response``,
        ``oracle_half``.
    perturbation_key
        Condition column of ``obs``.
    control_group
        Label of the control condition.
    delimiter
        Separator between combined perturbations.
    dosage_key
        Dose column of ``obs`` (also written to the output when given).
    dosages
        Doses of the targets, parallel to ``perturbations``.
    n_cells
        Cells per target (default: the number of control cells; for ``oracle_half`` the size
        of the first half).
    adata_true
        Held-out observed cells, required by ``oracle_half``.
    layer
        Layer to use instead of ``X``.
    context_key
        Column of ``obs`` with the context of each cell (e.g. cell line).
    context
        Context to predict in (a value of ``obs[context_key]``); needed with ``context_key``.
    seed
        Seed of the resampling.
    perturbation_embedding
        For ``linear``: a prior embedding of the perturbations (a DataFrame indexed by
        perturbation name, or a mapping ``{name: vector}``), or ``"expression"``: each
        perturbation named like a gene of ``adata`` is embedded by that gene's loadings in a
        PCA of ``adata`` (10 components). Other methods ignore it.
    placed_effects
        With ``perturbation_embedding`` and a context: what the weights of a never-measured
        perturbation apply to, ``"linear"`` (the linear effects ``beta``: the linear model
        with embeddings) or ``"context"`` (the mean changes measured in the target context,
        ``beta`` for a perturbation not measured alone there). Without a context both are
        the same.

    Returns
    -------
    AnnData with dense float32 ``X`` ``(n_targets * n_cells, n_genes)``, ``var`` of ``adata``,
    ``obs[perturbation_key]`` (target, categorical), ``obs["pdae_source"]`` (condition of the
    source cell), ``obs["pdae_source_cell"]`` (its obs name), ``obs[dosage_key]`` when
    ``dosage_key`` is given, and ``uns["pdae"] = {"method": method}``. ``adata`` is unchanged.

    Examples
    --------
    >>> import pandas as pd
    >>> labels = ["ctrl"] * 4 + ["A"] * 2 + ["B"] * 2
    >>> obs = pd.DataFrame({"perturbation": labels}, index=[f"c{i}" for i in range(8)])
    >>> x = np.zeros((8, 2))
    >>> x[4:6, 0], x[6:, 1] = 1.0, 2.0
    >>> pred = predict_baseline(AnnData(x, obs=obs), ["A+B"], method="additive")
    >>> pred.X.mean(0)
    array([1., 2.], dtype=float32)
    """
    targets, doses = _check_request(method, perturbations, n_cells, dosages, placed_effects)
    parsed = [
        parse_condition(t, control_group=control_group, delimiter=delimiter, dosage=d)
        for t, d in zip(targets, doses, strict=True)
    ]
    enc = _encode(adata, perturbation_key, control_group, delimiter, dosage_key, "adata")
    mat = _matrix(adata, layer, "adata")
    ctrl_codes = np.flatnonzero(~enc.labels.any(axis=1))
    ctrl_cells, in_ctx, ctx = _control_cells(
        adata, enc, ctrl_codes, method, perturbation_key, control_group, context_key, context
    )
    rng = np.random.default_rng(seed)
    labels_out = _canonical_names(targets, parsed, enc, control_group, delimiter)
    label_kw = {"perturbation_key": perturbation_key, "dosage_key": dosage_key, "doses": doses}
    if method == "oracle_half":
        return _oracle_half(
            adata,
            adata_true,
            targets,
            parsed,
            labels_out,
            n_cells,
            rng,
            layer,
            control_group,
            delimiter,
            label_kw,
        )
    embedding = _embedding(perturbation_embedding, mat, adata) if method == "linear" else None
    ctrl = int(ctrl_codes[0]) if len(ctrl_codes) else 0
    shifts = _shifts(method, mat, enc, parsed, targets, ctrl, ctx, embedding, placed_effects)
    pool = np.flatnonzero(in_ctx) if method == "pooled" else ctrl_cells
    n_default = len(ctrl_cells) if len(ctrl_cells) else adata.n_obs
    n = n_default if n_cells is None else n_cells
    picks = [_resample(pool, n, rng) for _ in targets]
    blocks = []
    for i, idx in enumerate(picks):
        x = _dense(mat, idx)
        blocks.append((x if shifts is None else x + shifts[i]).astype(np.float32))
    rows = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    columns = None
    if context_key is not None:
        columns = {context_key: np.full(len(rows), str(context), dtype=object)}
    return _output(
        adata,
        blocks,
        labels_out,
        [len(r) for r in picks],
        np.asarray(enc.conditions, dtype=object)[enc.codes[rows]],
        np.asarray(adata.obs_names, dtype=object)[rows],
        {UNS_METHOD: method},
        label_kw,
        columns,
    )


_SHIFTING = ("control", "additive", "linear", "mean_response")


def _control_cells(adata, enc, ctrl_codes, method, key, control_group, context_key, context):
    """Control cells (of the context, if given), each cell's context mask, the contexts."""
    ctrl_cells = np.flatnonzero(np.isin(enc.codes, ctrl_codes))
    if len(ctrl_cells) == 0 and method in _SHIFTING:
        raise ValueError(
            f"method={method!r} needs control cells but adata has no {control_group!r} cells "
            f"in obs[{key!r}]."
        )
    in_ctx, ctx = np.ones(adata.n_obs, dtype=bool), None
    if context_key is not None or context is not None:
        ctx = _contexts(adata, context_key, context)
        in_ctx = ctx.codes == ctx.target
        ctrl_cells = ctrl_cells[in_ctx[ctrl_cells]]
        if len(ctrl_cells) == 0 and method in _SHIFTING:
            raise ValueError(
                f"method={method!r} needs control cells in context {context!r}, but adata has "
                f"no {control_group!r} cells there."
            )
    return ctrl_cells, in_ctx, ctx


def _check_request(
    method, perturbations, n_cells, dosages, placed_effects="linear"
) -> tuple[list[str], list]:
    """The targets as a list and one dose per target (``None``: dose 1), checked."""
    if method not in BASELINES:
        raise ValueError(f"Unknown method={method!r}; valid methods are {list(BASELINES)}.")
    if placed_effects not in PLACED_EFFECTS:
        raise ValueError(f"placed_effects={placed_effects!r}; use one of {PLACED_EFFECTS}.")
    targets = [perturbations] if isinstance(perturbations, str) else list(perturbations)
    if not targets:
        raise ValueError("perturbations is empty; give at least one target condition.")
    if n_cells is not None:
        check_positive_int(n_cells, "n_cells")
    if isinstance(dosages, str | bytes | int | float | np.number):
        raise TypeError(
            f"dosages={dosages!r} must be a list with one dose per target, e.g. [0.5]; got a "
            f"{type(dosages).__name__}."
        )
    if dosages is not None and len(dosages) != len(targets):
        raise ValueError(f"Got {len(dosages)} dosages for {len(targets)} perturbations.")
    return targets, [None] * len(targets) if dosages is None else list(dosages)


def _embedding(given, mat, adata: AnnData) -> PerturbationEmbedding | None:
    """``perturbation_embedding`` of :func:`predict_baseline` as a checked embedding."""
    if given is None:
        return None
    if isinstance(given, str):
        if given != EMBEDDING_FROM_EXPRESSION:
            raise ValueError(
                f"perturbation_embedding={given!r}; use {EMBEDDING_FROM_EXPRESSION!r}, a "
                "pandas.DataFrame indexed by perturbation name, or None."
            )
        table = expression_embedding(mat, list(map(str, adata.var_names)))
        source = EMBEDDING_FROM_EXPRESSION
    else:
        table, source = check_embedding_table(given), "table"
    return PerturbationEmbedding(table.index.tolist(), table.to_numpy(), source)


def _shifts(
    method, mat, enc, parsed, targets, ctrl: int, ctx, embedding=None, placed_effects="linear"
) -> list | None:
    """The mean shift each target adds to the control cells (``None``: no shift)."""
    if method == "mean_response":
        if ctx is not None:
            ctx_means = _context_means(mat, enc, ctx.codes, len(ctx.names))
            shift = _context_mean_response(enc, ctx_means, ctrl, ctx.target)
        else:
            shift = _mean_response(_group_means(mat, enc), enc, ctrl)
        return [shift] * len(targets)
    if method not in ("additive", "linear"):
        return None
    if method == "linear" and embedding is not None:
        in_context = placed_effects == "context" and ctx is not None
        return _embedded_linear_shifts(
            mat, enc, parsed, targets, ctx, embedding, ctrl if in_context else None
        )
    # unknown perturbations raise KeyError with the closest names
    vectors = np.vstack([label_vector(p, enc.vocabulary) for p in parsed])
    if method == "linear":
        return _linear_shifts(mat, enc, vectors, targets, ctx)
    if ctx is not None:
        ctx_means = _context_means(mat, enc, ctx.codes, len(ctx.names))

        def effect(tok, d):
            return _context_single_effects(enc, ctx_means, ctrl, ctx.target, tok, d)

    else:
        means = _group_means(mat, enc)

        def effect(tok, d):
            return _single_effects(enc, means, ctrl, tok, d)

    return [sum((effect(tok, d) for tok, d in p.items()), np.zeros(mat.shape[1])) for p in parsed]


def _linear_shifts(mat, enc, vectors, targets, ctx) -> list:
    """``l* beta`` for each target, ``beta`` the fit of :func:`linear_effects`."""
    ctx_codes = np.zeros(len(enc.codes), dtype=np.int64) if ctx is None else ctx.codes
    beta = linear_effects(mat, enc.codes, ctx_codes, enc.label_rows)
    span = extrapolation_table(enc.labels, vectors, names=targets)
    outside = [t for t, ok in zip(targets, span["in_span"], strict=True) if not ok]
    if outside:
        warnings.warn(
            f"Targets {outside} are outside the span of the training labels; the "
            "linear baseline sets their unidentified shift component to zero.",
            UserWarning,
            stacklevel=4,
        )
    return list(vectors @ beta)


def _embedded_linear_shifts(mat, enc, parsed, targets, ctx, embedding, ctrl=None) -> list:
    """``l* beta`` with never-measured perturbations placed by the embedding.

    ``ctrl`` (the control condition's code, with a context): the placed part of a target
    applies its weights to :func:`_measured_in_context` instead of ``beta``.
    """
    known = set(enc.vocabulary)
    if all(t in known for lab in parsed for t in lab):
        vectors = np.vstack([label_vector(p, enc.vocabulary) for p in parsed])
        return _linear_shifts(mat, enc, vectors, targets, ctx)
    ctx_codes = np.zeros(len(enc.codes), dtype=np.int64) if ctx is None else ctx.codes
    beta = linear_effects(mat, enc.codes, ctx_codes, enc.label_rows)
    emap = fit_embedding_map(embedding, enc.vocabulary, beta)
    vectors, placed = embedding_label_rows(parsed, enc.vocabulary, embedding, emap)
    new = [t for t, p in zip(targets, placed, strict=True) if p]
    warnings.warn(
        f"Targets {new} hold perturbations that were never measured; the linear baseline "
        "estimates them from the perturbation embedding (outside what the data identify).",
        UserWarning,
        stacklevel=4,
    )
    if ctrl is None:
        return list(vectors @ beta)
    measured = [{t: d for t, d in lab.items() if t in known} for lab in parsed]
    direct = np.vstack([label_vector(p, enc.vocabulary) for p in measured])
    effects = _measured_in_context(mat, enc, ctx, ctrl, beta)
    return list(direct @ beta + (vectors - direct) @ effects)


def _measured_in_context(mat, enc: EncodedConditions, ctx, ctrl: int, beta) -> np.ndarray:
    """Per-unit effect of each perturbation measured alone in the target context, ``(K, g)``.

    The mean change of its single-perturbation conditions against the control cells there
    (:func:`_single_effects`); ``beta``'s row for a perturbation not measured alone there,
    or for every one when the context has no control cells.
    """
    in_target = np.where(ctx.codes == ctx.target, 0, -1)  # the target context's cells only
    ctx_means = _context_means(mat, enc, in_target, 1)[0]
    present = ~np.isnan(ctx_means[:, 0])
    out = np.array(beta, dtype=np.float64, copy=True)
    if not present[ctrl]:
        return out
    for k, token in enumerate(enc.vocabulary):
        try:
            out[k] = _single_effects(enc, ctx_means, ctrl, token, 1.0, present)
        except ValueError:
            continue
    return out


def _oracle_half(
    adata, adata_true, targets, parsed, labels_out, n_cells, rng, layer, ctrl, delim, label_kw
) -> AnnData:
    """The noise floor: the first half of each target's true cells (see ``predict_baseline``)."""
    if adata_true is None:
        raise ValueError("method='oracle_half' needs the held-out cells as adata_true.")
    if not adata_true.var_names.equals(adata.var_names):
        raise ValueError("adata_true must have the same var_names as adata, in order.")
    key, dosage_key = label_kw["perturbation_key"], label_kw["dosage_key"]
    enc_true = _encode(adata_true, key, ctrl, delim, dosage_key, "adata_true")
    mat_true = _matrix(adata_true, layer, "adata_true")
    true_names = np.asarray(adata_true.obs_names, dtype=object)
    keys = {
        tuple(sorted((enc_true.vocabulary[k], v) for k, v in enumerate(lab) if v != 0)): c
        for c, lab in enumerate(enc_true.labels)
    }
    blocks, picks, reference = [], [], []
    for target, lab in zip(targets, parsed, strict=True):
        c = keys.get(tuple(sorted(lab.items())))
        if c is None:
            close = closest_names(target, enc_true.conditions)
            raise KeyError(f"{target!r} is not a condition of adata_true; closest: {close}.")
        cells = rng.permutation(np.flatnonzero(enc_true.codes == c))
        half = len(cells) // 2
        if half == 0:
            raise ValueError(f"oracle_half needs at least 2 true cells of {target!r}.")
        reference.extend(true_names[cells[half:]])
        idx = _resample(cells[:half], half if n_cells is None else n_cells, rng)
        blocks.append(_dense(mat_true, idx).astype(np.float32))
        picks.append(idx)
    sizes = [len(i) for i in picks]
    rows = np.concatenate(picks)
    uns = {UNS_METHOD: "oracle_half", UNS_ORACLE_REFERENCE: [str(r) for r in reference]}
    sources = np.repeat(np.asarray(targets, dtype=object), sizes)
    return _output(adata, blocks, labels_out, sizes, sources, true_names[rows], uns, label_kw)


def _output(adata, blocks, labels_out, sizes, sources, source_cells, uns, label_kw, columns=None):
    """The predicted cells in the format of :meth:`pdae_sc.model.PDAE.predict`."""
    x = np.vstack(blocks) if blocks else np.zeros((0, adata.n_vars), np.float32)
    method = uns[UNS_METHOD]
    return prediction_adata(
        x,
        adata.var,
        perturbation_key=label_kw["perturbation_key"],
        targets=labels_out,
        sizes=sizes,
        source_conditions=sources,
        source_cells=source_cells,
        obs_names=[f"{method}_{i}" for i in range(len(x))],
        uns=uns,
        dosage_key=label_kw["dosage_key"],
        dosages=label_kw["doses"],
        label_columns=columns,
    )
