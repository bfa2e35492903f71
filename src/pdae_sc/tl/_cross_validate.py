"""Which method to trust on your data: hold out measured conditions, refit, score everything."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

from pdae_sc.data._effects import mean_shifts, rank_by_effect, spread_over_effects
from pdae_sc.data._fields import context_codes
from pdae_sc.data._labels import encode_conditions
from pdae_sc.data._span import extrapolation_table
from pdae_sc.data._validation import check_positive_int

from ._baselines import predict_baseline
from ._metrics import evaluate

__all__ = ["CrossValidation", "cross_validate"]

_BASELINES = ("control", "pooled", "additive", "linear", "mean_response")
_CTX = "_pdae_context"


@dataclass
class CrossValidation:
    """Result of :func:`cross_validate`.

    Parameters
    ----------
    scores
        One row per fold, held-out condition and method, with ``fold``, ``condition``,
        ``context``, ``kind`` (``"combination"`` or ``"context"``), ``method`` and every
        metric of :func:`pdae_sc.tl.evaluate`.
    metric
        The metric the verdict is based on (lower is better).
    verdict
        One line: does PDAE beat the best simple baseline (the one with the best mean) on
        these held-out conditions? It counts the conditions where PDAE is closer and gives
        both means; when the count and the means disagree it says the two are on a par,
        and when both favour the baseline it says to prefer it.

    Examples
    --------
    See :func:`cross_validate`.
    """

    scores: pd.DataFrame
    metric: str
    verdict: str

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation of each metric per method, best first.

        Returns
        -------
        DataFrame indexed by method with ``<metric>_mean`` and ``<metric>_sd`` columns,
        best first by the mean of :attr:`metric` (largest first for ``r2_mean`` and the
        Pearson metrics).

        Examples
        --------
        >>> import pandas as pd
        >>> import pdae_sc as pdae
        >>> scores = pd.DataFrame(
        ...     {"method": ["pdae", "pdae", "linear", "linear"], "energy_distance": [1, 2, 3, 4]}
        ... )
        >>> cv = pdae.tl.CrossValidation(scores, "energy_distance", "")
        >>> cv.summary()["energy_distance_mean"].tolist()
        [1.5, 3.5]
        """
        numeric = self.scores.select_dtypes("number").drop(
            columns=["fold", "n_pred", "n_true"], errors="ignore"
        )
        grouped = numeric.groupby(self.scores["method"])
        out = grouped.mean().add_suffix("_mean").join(grouped.std().add_suffix("_sd"))
        cols = [c for m in numeric.columns for c in (f"{m}_mean", f"{m}_sd")]
        return out[cols].sort_values(
            f"{self.metric}_mean", ascending=not _higher_is_better(self.metric)
        )

    def __repr__(self) -> str:
        return f"CrossValidation: {self.verdict}"


def _higher_is_better(metric: str) -> bool:
    return metric.startswith(("pearson", "r2"))


def _units(enc, ctx_codes, min_cells: int, matrix=None) -> pd.DataFrame:
    """Candidate held-out (condition, context) units with their kind, cell counts and effect.

    ``effect`` is the squared distance between the unit's mean and the mean of its context's
    control cells on ``matrix`` (NaN without a matrix or without control cells there).
    """
    counts = pd.crosstab(enc.codes, ctx_codes)
    n_tokens = (enc.labels != 0).sum(1)
    rows = []
    for c in counts.index:
        if n_tokens[c] == 0:
            continue
        measured = [k for k in counts.columns if counts.loc[c, k] > 0]
        for k in measured:
            if counts.loc[c, k] < min_cells:
                continue
            if n_tokens[c] >= 2:
                kind = "combination"
            elif len(measured) > 1:
                kind = "context"
            else:
                continue
            rows.append({"code": c, "ctx": k, "kind": kind, "n_cells": int(counts.loc[c, k])})
    units = pd.DataFrame(rows, columns=["code", "ctx", "kind", "n_cells"])
    units["effect"] = _effects(units, enc, ctx_codes, matrix)
    return units


def _effects(units, enc, ctx_codes, matrix) -> np.ndarray:
    """Squared mean shift of each unit from its context's control cells."""
    if matrix is None or not len(units):
        return np.full(len(units), np.nan)
    is_ctrl = (enc.label_rows.getnnz(axis=1) == 0)[enc.codes]
    groups = list(zip(units["code"], units["ctx"], strict=True))
    return mean_shifts(matrix, enc.codes, ctx_codes, is_ctrl, groups)


def _stratified_order(units, idx, n_folds, n_holdout, rng) -> list[list[int]]:
    """Per fold, the units to try first: spread over the range of effects, then the rest.

    The units are ranked by effect; the ``n_folds * n_holdout`` first choices are evenly
    spaced along that ranking (a random offset), dealt to the folds in turn, so every fold
    sees strong and weak effects alike, as a random draw of a few units often does not.
    """
    idx = np.asarray(idx)
    effect = units["effect"].to_numpy()[idx]
    picks = idx[spread_over_effects(effect, n_folds * n_holdout, rng)]
    if not len(picks):
        return [[] for _ in range(n_folds)]
    ranked = idx[rank_by_effect(effect)]
    chosen = set(picks.tolist())
    rest = [u for u in rng.permutation(ranked) if u not in chosen]
    return [list(picks[f::n_folds]) + rest for f in range(n_folds)]


def _assign_folds(units, enc, ctx_codes, n_folds, n_holdout, rng) -> list[list[int]]:
    """Greedy folds of at most ``n_holdout`` units, each still in the span of the rest.

    Combinations are held out first, then perturbations in another context; within a kind
    the units are spread over the range of effects (:func:`_stratified_order`).
    """
    preferred: list[list[int]] = [[] for _ in range(n_folds)]
    for kind in ("combination", "context"):  # combinations first
        idx = np.flatnonzero(units["kind"].to_numpy() == kind)
        for f, order in enumerate(_stratified_order(units, idx, n_folds, n_holdout, rng)):
            preferred[f].extend(order)
    pair = pd.crosstab(enc.codes, ctx_codes)
    ctrl_rows = [c for c in pair.index if not enc.labels[c].any()]
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    used: set[int] = set()
    for f in range(n_folds):
        for u in preferred[f]:
            if u in used or len(folds[f]) >= n_holdout:
                continue
            trial = folds[f] + [u]
            left = pair.copy()
            for v in trial:
                left.loc[units.at[v, "code"], units.at[v, "ctx"]] = 0
            remaining = left.sum(1) > 0
            train_labels = enc.labels[left.index[remaining.to_numpy()]]
            has_ctrl = any(~enc.labels[c].any() for c in left.index[remaining.to_numpy()])
            targets = enc.labels[[units.at[v, "code"] for v in trial]]
            ok = extrapolation_table(train_labels, targets)["in_span"].all()
            ctx_ctrl = all(left.loc[ctrl_rows, units.at[v, "ctx"]].sum() > 0 for v in trial)
            if ok and has_ctrl and ctx_ctrl:
                folds[f].append(u)
                used.add(u)
    return [f for f in folds if f]


def cross_validate(
    model,
    *,
    n_folds: int = 2,
    n_holdout: int = 8,
    baselines: Sequence[str] = _BASELINES,
    metric: str = "energy_distance",
    n_cells: int | None = None,
    min_cells: int = 20,
    train_kwargs: dict | None = None,
    seed: int = 0,
) -> CrossValidation:
    """Hold out measured conditions, refit the model, score PDAE and the baselines.

    The held-out units are measured conditions whose labels stay in the span of the rest of
    the training data, so the PDAE guarantee covers them like the unseen targets you want to
    predict: combinations first (``"A+B"`` whose parts were measured), then, with contexts
    (``context_keys``), perturbations in one context that were measured in another. Each
    fold holds out up to ``n_holdout`` units, refits a model of the same class and settings
    on the rest (``train_kwargs``), predicts the held-out conditions in their context, and
    scores the prediction and every baseline of :func:`pdae_sc.tl.predict_baseline` (in the
    same context) with :func:`pdae_sc.tl.evaluate`, against the same observed cells.

    The held-out units are spread over the range of effects: the candidates are ranked by
    the squared distance of their mean from their context's control cells, and the first
    choices are evenly spaced along that ranking and dealt to the folds in turn. A few units
    drawn at random are often all weak effects, where returning the control cells is hard
    to beat; the conditions you want to predict usually include strong ones.

    Each fold is a full training run (``n_folds`` refits; ``model`` itself is neither trained
    nor changed), so this costs ``n_folds`` times the training time. ``oracle_half`` (half
    of the held-out cells against the other half) is the noise floor of the distribution
    metrics (energy distance, MMD); for the mean metrics it compares means of half as many
    cells and is not a floor.

    Parameters
    ----------
    model
        A :class:`pdae_sc.model.PDAE` set up on your data (trained or not; it is not
        changed). Its registration and constructor settings are reused for every refit.
    n_folds
        Number of refits; the folds hold out disjoint units.
    n_holdout
        Units held out per fold (fewer where no more stay in the span of the rest).
    baselines
        Baselines to score beside PDAE (always with ``oracle_half``, the noise floor).
    metric
        Metric of the verdict (a column of :func:`~pdae_sc.tl.evaluate`; lower is better
        except for ``r2_mean`` and the Pearson metrics, which are negated for the verdict).
    n_cells
        Cells predicted per held-out condition by every method. ``None`` (default): as
        many as the context has control cells in the fold's training data, the pool of the
        control, additive, linear and mean-response baselines, so every method (PDAE and
        the pooled cells included) predicts from that many distinct cells, each drawn once.
        A larger number makes the baselines resample their pool; the scores stay unbiased
        (:func:`~pdae_sc.tl.evaluate` does not pair copies of one source cell) but noisier.
    min_cells
        Conditions with fewer cells (in their context) are not held out.
    train_kwargs
        Arguments of ``model.train`` for the refits (default: the model's default training,
        without progress bar, and ``held_out_conditions=0``: each refit trains on all of
        its fold's training conditions, and its network's own cells are scored,
        ``predict(method="pdae")``, so the folds compare the network with the baselines).
    seed
        Seed of the fold assignment, the refits (``scvi.settings.seed``), the predictions
        and the scoring.

    Returns
    -------
    :class:`CrossValidation` with the tidy ``scores`` table, ``summary()`` per method and
    the one-line ``verdict``. Raises ``ValueError`` when no measured condition can be held
    out in the span of the rest (e.g. singles only, without contexts).

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=40, seed=0)
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(adata, n_latent=8, n_hidden=(32,))
    >>> cv = pdae.tl.cross_validate(
    ...     model, n_folds=1, n_holdout=2, train_kwargs={"max_epochs": 2}
    ... )
    >>> sorted(cv.scores["method"].unique())
    ['additive', 'control', 'linear', 'mean_response', 'oracle_half', 'pdae', 'pooled']
    >>> cv.verdict  # doctest: +ELLIPSIS
    'PDAE ... of 2 held-out conditions ...'
    """
    import scvi

    check_positive_int(n_folds, "n_folds")
    check_positive_int(n_holdout, "n_holdout")
    unknown = sorted(set(baselines) - set(_BASELINES))
    if unknown:
        raise ValueError(f"baselines={list(baselines)!r}: unknown {unknown}; use {_BASELINES}.")
    registration = getattr(model, "registration", None)
    if registration is None:
        raise TypeError(
            f"model must be a PDAE set up on its data, got {type(model).__name__}; call "
            "PDAE.setup_anndata(adata, ...) and pass PDAE(adata)."
        )
    adata: AnnData = model.adata
    key, ctrl_label = registration.perturbation_key, registration.control_group
    dosage_key, layer = registration.dosage_key, registration.layer
    ctx_keys = registration.context_keys
    obs = adata.obs
    enc = encode_conditions(
        obs[key],
        control_group=ctrl_label,
        delimiter=registration.delimiter,
        dosages=None if dosage_key is None else obs[dosage_key],
        name=key,
    )
    ctx_codes, ctx_names = context_codes(obs, ctx_keys)
    units = _units(enc, ctx_codes, min_cells, adata.X if layer is None else adata.layers[layer])
    rng = np.random.default_rng(seed)
    folds = _assign_folds(units, enc, ctx_codes, n_folds, n_holdout, rng)
    if not folds:
        raise ValueError(
            "No measured condition can be held out while staying in the span of the rest: "
            "cross-validation needs combinations whose parts were measured, or perturbations "
            f"measured in several contexts (with at least min_cells={min_cells} cells)."
        )
    init = model.init_params_
    init_kwargs = {**init.get("non_kwargs", {}), **init.get("kwargs", {}).get("module_kwargs", {})}
    # each fold scores the network itself against the baselines (cross-validation is the
    # thorough form of the choice that train's held-out conditions make)
    train_kwargs = {
        "enable_progress_bar": False,
        "held_out_conditions": 0,
        **(train_kwargs or {}),
    }
    cls = type(model)
    rows = []
    for f, fold in enumerate(folds):
        held = np.zeros(adata.n_obs, dtype=bool)
        for u in fold:
            held |= (enc.codes == units.at[u, "code"]) & (ctx_codes == units.at[u, "ctx"])
        train = adata[~held].copy()
        test = adata[held]
        old_seed = scvi.settings.seed
        scvi.settings.seed = seed + f
        try:
            cls.setup_anndata(train, **registration.setup_kwargs)
            refit = cls(train, **init_kwargs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                refit.train(**train_kwargs)
        finally:
            scvi.settings.seed = old_seed
        rows += _score_fold(
            refit,
            train,
            test,
            units.loc[fold],
            enc,
            ctx_codes[~held],
            ctx_codes[held],
            ctx_names,
            registration,
            baselines,
            n_cells,
            seed,
            f,
        )
    scores = pd.concat(rows, ignore_index=True)
    return CrossValidation(scores, metric, _verdict(scores, metric))


def _score_fold(
    refit,
    train,
    test,
    fold_units,
    enc,
    train_ctx,
    test_ctx,
    ctx_names,
    registration,
    baselines,
    n_cells,
    seed,
    fold,
) -> list[pd.DataFrame]:
    key, ctrl_label = registration.perturbation_key, registration.control_group
    dosage_key, layer = registration.dosage_key, registration.layer
    has_ctx = bool(registration.context_keys)
    label_kw = {
        "perturbation_key": key,
        "control_group": ctrl_label,
        "delimiter": registration.delimiter,
        "dosage_key": dosage_key,
    }
    # AnnData views for the baselines, with one context column (the user's data stay as is)
    mat = train.X if layer is None else train.layers[layer]
    cols = [key] + ([dosage_key] if dosage_key else [])
    base_obs = train.obs[cols].copy()
    base_obs[_CTX] = np.asarray(ctx_names, dtype=object)[train_ctx]
    base = AnnData(mat, obs=base_obs, var=pd.DataFrame(index=train.var_names))
    test_obs = test.obs[cols].copy()
    test_mat = test.X if layer is None else test.layers[layer]
    truth_all = AnnData(test_mat, obs=test_obs, var=pd.DataFrame(index=test.var_names))
    out = []
    for ctx in sorted(set(fold_units["ctx"])):
        units = fold_units[fold_units["ctx"] == ctx]
        codes = units["code"].tolist()
        targets = [enc.conditions[c] for c in codes]
        dosages = None if dosage_key is None else [enc.dosages[c] for c in codes]
        ctx_name = ctx_names[ctx]
        truth = truth_all[test_ctx == ctx]
        control = base[(base.obs[_CTX] == ctx_name).to_numpy() & _is_ctrl(base, enc, key)]
        context = ctx_name if has_ctx else None
        n = control.n_obs if n_cells is None else n_cells
        preds = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds["pdae"] = refit.predict(
                targets, dosages=dosages, n_cells=n, context=context, seed=seed, method="pdae"
            )
            ctx_kw = {"context_key": _CTX, "context": ctx_name} if has_ctx else {}
            for method in baselines:
                preds[method] = predict_baseline(
                    base,
                    targets,
                    method=method,
                    dosages=dosages,
                    n_cells=n,
                    seed=seed,
                    **label_kw,
                    **ctx_kw,
                )
            preds["oracle_half"] = predict_baseline(
                base,
                targets,
                method="oracle_half",
                dosages=dosages,
                adata_true=truth,
                seed=seed,
                **label_kw,
            )
        kinds = dict(zip(targets, units["kind"], strict=True))
        for method, pred in preds.items():
            ref = truth
            if method == "oracle_half":
                ref = truth[pred.uns["pdae"]["oracle_reference_cells"]]
            scored = evaluate(pred, ref, adata_control=control, seed=seed, **label_kw)
            scored["method"] = method
            scored.insert(0, "fold", fold)
            scored.insert(2, "context", ctx_name)
            scored.insert(3, "kind", scored["condition"].map(kinds).fillna("combination"))
            out.append(scored)
    return out


def _is_ctrl(base: AnnData, enc, key: str) -> np.ndarray:
    labels = base.obs[key].astype(str).to_numpy()
    ctrl = {enc.conditions[c] for c in range(enc.n_conditions) if not enc.labels[c].any()}
    return np.isin(labels, list(ctrl))


def _verdict(scores: pd.DataFrame, metric: str) -> str:
    sign = -1.0 if _higher_is_better(metric) else 1.0
    # one row per held-out unit: a perturbation can be held out in two contexts of a fold
    index = [c for c in ("fold", "context", "condition") if c in scores.columns]
    table = scores.pivot_table(index=index, columns="method", values=metric)
    table = table * sign
    candidates = [m for m in table.columns if m not in ("pdae", "oracle_half")]
    best = min(candidates, key=lambda m: table[m].mean())
    wins = int((table["pdae"] < table[best]).sum())
    n = len(table)
    pdae_mean, best_mean = sign * table["pdae"].mean(), sign * table[best].mean()
    line = (
        f"PDAE beats {best} (the best simple baseline) on {wins} of {n} held-out "
        f"conditions ({metric} {pdae_mean:.3g} vs {best_mean:.3g}"
    )
    if "oracle_half" in table and metric in ("energy_distance", "mmd"):
        line += f"; noise floor {sign * table['oracle_half'].mean():.3g}"
    if "control" in table and best != "control":
        line += f"; control cells {sign * table['control'].mean():.3g}"
    line += ")."
    more_wins, lower_mean = wins * 2 > n, pdae_mean * sign < best_mean * sign
    if not more_wins and not lower_mean:
        line += f" On data like these, prefer {best}."
    elif more_wins != lower_mean:
        line += (
            f" PDAE and {best} are on a par here: "
            + (
                "PDAE is closer on most conditions, "
                if more_wins
                else f"{best} is closer on most conditions, "
            )
            + (f"{best} on the mean." if more_wins else "PDAE on the mean.")
        )
    return line
