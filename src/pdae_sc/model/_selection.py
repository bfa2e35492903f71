"""PDAE or a simple baseline: the choice made on measured conditions held out of training.

``train`` keeps a few measured conditions out of the fit (:func:`pick_held_out`): conditions
whose labels stay in the span of the rest, combinations first, then perturbations measured
in another context, so that they are predicted the way unseen targets are, and spread over
the range of effects, so that strong effects weigh in the choice as well as weak ones.
After training, :func:`score_held_out` predicts each of them with the model and with every
simple baseline fitted on the same training cells, every method from the same number of
distinct cells, and scores them by energy distance to the held-out cells.
:func:`choose_method` names the baseline with the lowest mean when it is clearly ahead of
the model, else the model; ``predict`` uses it unless told otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pdae_sc.data._effects import mean_shifts, spread_over_effects
from pdae_sc.data._sampler import RowGatherer
from pdae_sc.tl._metrics import energy_distance

from ._noise import make_generator
from ._predict import move_sources, registered_baseline
from ._warnings import BaselineFavouredWarning

__all__ = [
    "SIMPLE_METHODS",
    "choose_method",
    "choose_prediction_method",
    "clearly_closer",
    "clearly_positive",
    "closest_baseline",
    "pick_held_out",
    "score_held_out",
]

#: The simple baselines PDAE is compared with on the held-out conditions (and may fall back
#: to); see :func:`pdae_sc.tl.predict_baseline`.
SIMPLE_METHODS = ("linear", "additive", "mean_response", "pooled", "control")
#: Fewest measured cells for a condition to be held out: with fewer, the energy distance
#: is too noisy to rank the methods (the benchmarks score targets with 50 cells or more).
MIN_HELD_OUT_CELLS = 50
#: Share of the perturbed (condition, context) groups held out by ``"auto"``, and its bounds.
HELD_OUT_SHARE, MIN_HELD_OUT, MAX_HELD_OUT = 0.1, 2, 8
#: Cells of a held-out condition used for its score, at most (the cost of the distances).
MAX_SCORED_CELLS = 500
#: Largest label block (conditions x perturbations) whose span is checked densely.
MAX_SPAN_VALUES = 20_000_000


def _in_span(rows: np.ndarray, vector: np.ndarray) -> bool:
    if rows.shape[0] == 0:
        return not vector.any()
    coef = np.linalg.lstsq(rows.T, vector, rcond=None)[0]
    return bool(np.linalg.norm(rows.T @ coef - vector) <= 1e-6 * max(1.0, np.linalg.norm(vector)))


def pick_held_out(
    label_rows: sp.csr_matrix,
    codes: np.ndarray,
    contexts: np.ndarray,
    wanted: int | str,
    rng: np.random.Generator,
    matrix=None,
) -> list[tuple[int, int]]:
    """(condition code, context code) groups to hold out of training.

    Candidates are perturbed groups with at least :data:`MIN_HELD_OUT_CELLS` cells, taken
    combinations first (two or more perturbations), then perturbations also measured in
    another context, then the rest; a group is added when every chosen group's label stays
    in the span of the labels left for training, and a condition is held out in one context
    at most. Within a tier the groups still wanted are tried first evenly spread over the
    range of effects (their mean shift from the context's control cells on ``matrix``, see
    :mod:`pdae_sc.data._effects`), so that the choice is made on strong and weak effects
    alike; then the others, in random order (all in random order without ``matrix``).
    ``wanted``: a number, or ``"auto"`` (:data:`HELD_OUT_SHARE` of the perturbed groups,
    between :data:`MIN_HELD_OUT` and :data:`MAX_HELD_OUT`, and at most half of the
    candidates). Returns an empty list when none qualifies or the labels are too many to
    check.
    """
    label_rows = sp.csr_matrix(label_rows)
    perturbed = label_rows.getnnz(axis=1) > 0
    groups, sizes = np.unique(np.stack([codes, contexts], axis=1), axis=0, return_counts=True)
    groups = [tuple(int(v) for v in g) for g in groups]
    all_perturbed = [g for g in groups if perturbed[g[0]]]
    candidates = [
        g
        for g, n in zip(groups, sizes, strict=True)
        if perturbed[g[0]] and n >= MIN_HELD_OUT_CELLS
    ]
    if wanted == "auto":
        n_share = round(HELD_OUT_SHARE * len(all_perturbed))
        wanted = min(max(MIN_HELD_OUT, n_share), MAX_HELD_OUT, len(candidates) // 2)
    if wanted <= 0 or not candidates:
        return []
    codes_used = sorted({g[0] for g in all_perturbed})
    if len(codes_used) * label_rows.shape[1] > MAX_SPAN_VALUES:
        return []
    contexts_of = {}
    for c, k in all_perturbed:
        contexts_of.setdefault(c, set()).add(k)

    def tier(group):
        c = group[0]
        if label_rows[c].getnnz() >= 2:
            return 0
        return 1 if len(contexts_of[c]) > 1 else 2

    effects = None
    if matrix is not None:
        is_ctrl = (~perturbed)[codes]
        effects = dict(
            zip(candidates, mean_shifts(matrix, codes, contexts, is_ctrl, candidates), strict=True)
        )
    dense = {c: label_rows[c].toarray().ravel() for c in codes_used}
    chosen: list[tuple[int, int]] = []
    for level in (0, 1, 2):
        members = [g for g in candidates if tier(g) == level]
        for group in _try_order(members, wanted - len(chosen), effects, rng):
            if len(chosen) == wanted:
                return chosen
            if any(c == group[0] for c, _ in chosen):
                continue  # one context per condition: the others keep its effect measured
            trial = [*chosen, group]
            held = set(trial)
            left = sorted({g[0] for g in all_perturbed if g not in held})
            rows = (
                np.vstack([dense[c] for c in left]) if left else np.zeros((0, label_rows.shape[1]))
            )
            if all(_in_span(rows, dense[c]) for c, _ in trial):
                chosen = trial
    return chosen


def _try_order(members, want, effects, rng) -> list[tuple[int, int]]:
    """``members`` in the order to try.

    First ``want`` of them spread over the effects, then the rest at random (all at random
    without ``effects``).
    """
    if want <= 0 or not members:
        return []
    shuffled = [members[i] for i in rng.permutation(len(members))]
    if effects is None:
        return shuffled
    picks = [members[i] for i in spread_over_effects([effects[g] for g in members], want, rng)]
    taken = set(picks)
    return picks + [g for g in shuffled if g not in taken]


def held_out_mask(codes: np.ndarray, contexts: np.ndarray, groups) -> np.ndarray:
    """Cells of the held-out (condition code, context code) groups."""
    mask = np.zeros(len(codes), dtype=bool)
    for c, k in groups:
        mask |= (codes == c) & (contexts == k)
    return mask


def score_held_out(
    model, groups, *, seed: int = 0, methods=SIMPLE_METHODS, from_control: bool | None = None
) -> pd.DataFrame:
    """Energy distance of PDAE and each simple baseline to every held-out group's cells.

    Every method predicts ``n_cells`` distinct cells per held-out group (the fewest of the
    group's cells, its context's control cells and PDAE's source cells there, all outside
    the held-out groups, and :data:`MAX_SCORED_CELLS`), from cells it may use: PDAE moves
    its default source set (the control cells when ``from_control``, where the context has
    them), the baselines in ``methods`` are fitted on the training cells only. One row per
    group: ``condition``, ``context``, ``n_cells`` and one column per method.
    """
    registration = model.registration
    cells = registration.cells
    enc, ctx_codes, ctx_names = cells.encoded, cells.context_codes, cells.context_names
    held = held_out_mask(enc.codes, ctx_codes, groups)
    ctrl_cell = cells.is_control
    train_view = registration.adata[~held]
    gather = RowGatherer(registration.matrix)
    rng = np.random.default_rng(seed)
    gen = make_generator(rng, model.device)
    batch_size = model._batch_size(None)
    if from_control is None:
        from_control = model.default_source_ == registration.control_group
    rows = []
    for k in sorted({k for _, k in groups}):
        in_ctx = ctx_codes == k
        conds = [c for c, kk in groups if kk == k]
        truths = [np.flatnonzero((enc.codes == c) & in_ctx) for c in conds]
        ctrl = np.flatnonzero(ctrl_cell & in_ctx)
        use_ctrl = from_control and len(ctrl) > 0
        src = ctrl if use_ctrl else np.flatnonzero(in_ctx & ~held)
        # each group is predicted from as many distinct cells as it has measured (at most
        # the sources and MAX_SCORED_CELLS); the baselines draw the most any group needs
        # and each group takes the first of its cells (a random subset of distinct cells)
        n_of = [int(min(len(t), len(ctrl), len(src), MAX_SCORED_CELLS)) for t in truths]
        n = max(n_of)
        if n < 2:
            continue
        x_true = [
            gather(np.sort(rng.choice(t, min(len(t), MAX_SCORED_CELLS), replace=False)))
            for t in truths
        ]
        names = [enc.conditions[c] for c in conds]
        context = ctx_names[k] if registration.context_keys else None
        baselines = {
            method: np.asarray(
                registered_baseline(registration, train_view, names, method, n, seed, context).X
            )
            for method in methods
        }
        for i, c in enumerate(conds):
            n_i = n_of[i]
            pred = np.empty((n_i, x_true[i].shape[1]), dtype=np.float32)
            target = cells.float_label_rows[c].toarray().ravel()
            module, device = model.module, model.device
            move_sources(
                module, device, target, src, cells, gather, rng, gen, batch_size, out=pred
            )
            row = {"condition": names[i], "context": ctx_names[k], "n_cells": n_i}
            row["pdae"] = energy_distance(pred, x_true[i])
            for method, x in baselines.items():
                row[method] = energy_distance(x[i * n : i * n + n_i], x_true[i])
            rows.append(row)
    return pd.DataFrame(rows, columns=["condition", "context", "n_cells", "pdae", *methods])


def choose_prediction_method(model, held: list[tuple[int, int]]) -> None:
    """Score the held-out groups and set ``prediction_method_`` (``"pdae"`` without any)."""
    model.prediction_method_ = "pdae"
    model.held_out_scores_ = None
    if not held or not model.is_trained_:
        return
    scores = score_held_out(model, held, seed=0)
    model.held_out_scores_ = scores
    model.prediction_method_ = choose_method(scores)
    if model.prediction_method_ != "pdae":
        means = scores[["pdae", model.prediction_method_]].mean()
        warnings.warn(
            f"On {len(scores)} measured conditions held out of training, the "
            f"{model.prediction_method_!r} baseline (energy distance "
            f"{means[model.prediction_method_]:.4f}) was closer to the measured cells than "
            f"PDAE ({means['pdae']:.4f}), so predict() returns its cells "
            f"(model.prediction_method_; scores in model.held_out_scores_). Pass "
            "predict(..., method='pdae') for the model's own cells.",
            BaselineFavouredWarning,
            stacklevel=4,
        )


def choose_method(scores: pd.DataFrame) -> str:
    """PDAE, or the simple baseline that is clearly closer on the held-out groups.

    The baseline with the lowest mean energy distance replaces PDAE when its mean is lower
    by more than one standard error of the per-group differences (PDAE minus baseline): a
    win that one noisy group could give by chance keeps the model. ``"pdae"`` when nothing
    was scored.
    """
    if scores.empty:
        return "pdae"
    best = closest_baseline(scores)
    return best if clearly_closer(scores, best, than="pdae") else "pdae"


def closest_baseline(scores: pd.DataFrame) -> str:
    """The simple baseline with the lowest mean score in ``scores`` (a column per method)."""
    means = scores[list(SIMPLE_METHODS)].mean()
    return min(SIMPLE_METHODS, key=lambda m: means[m])


def clearly_closer(scores: pd.DataFrame, method: str, *, than: str) -> bool:
    """Whether ``method``'s mean score is below ``than``'s by more than one standard error.

    The standard error is that of the per-group differences (``than`` minus ``method``) of
    the held-out ``scores``, so a win that one noisy group could give by chance does not
    count.
    """
    return clearly_positive((scores[than] - scores[method]).to_numpy(dtype=float))


def clearly_positive(diff: np.ndarray) -> bool:
    """Whether the mean of per-group differences exceeds their standard error (0 for one)."""
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return bool(diff.mean() > se)


def wanted_count(value) -> int | str:
    """Check ``held_out_conditions`` of ``train``: ``"auto"``, or a count >= 0."""
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(
            f"held_out_conditions={value!r}; use 'auto', 0 (train on every condition and "
            "always predict with PDAE) or the number of measured conditions to hold out."
        )
    return int(value)
