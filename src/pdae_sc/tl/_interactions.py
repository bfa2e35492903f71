"""Genetic interactions: how far a double perturbation departs from the sum of its singles."""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from pdae_sc.data._labels import encode_conditions, parse_condition
from pdae_sc.data._validation import BLOCK_VALUES, check_positive_int

from ._common import dense_rows as _dense
from ._common import layer_matrix as _matrix
from ._common import pearson as _pearson
from ._common import r2 as _r2
from ._metrics import energy_distance

__all__ = ["interaction_scores", "predicted_interaction_scores"]

logger = logging.getLogger(__name__)

#: Columns of every interaction table, in order.
COLUMNS = [
    "pair",
    "perturbation_a",
    "perturbation_b",
    "origin",
    "n_cells",
    "coef_a",
    "coef_b",
    "magnitude",
    "dominance",
    "model_fit",
    "fit_r2",
    "corr_additive",
    "additive_l2",
    "additive_l2_noise",
    "energy_distance",
    "energy_distance_floor",
    "energy_distance_null",
]


def _coefficients(d_a: np.ndarray, d_b: np.ndarray, d_ab: np.ndarray) -> np.ndarray:
    design = np.column_stack([d_a, d_b])
    coef, _, rank, _ = np.linalg.lstsq(design, d_ab, rcond=None)
    return coef if rank == 2 else np.full(2, np.nan)


def _centred_distances(v: np.ndarray) -> tuple[np.ndarray, float]:
    """Row means of ``|v_i - v_j|`` (via sorting, ``O(n log n)``) and their grand mean."""
    n = len(v)
    order = np.argsort(v, kind="stable")
    s = v[order]
    below = np.concatenate([[0.0], np.cumsum(s)[:-1]])  # sum of the smaller values
    k = np.arange(n)
    sums = s * k - below + (s.sum() - below - s) - s * (n - 1 - k)
    means = np.empty(n)
    means[order] = sums / n
    return means, float(means.mean())


def _distance_covariance(x: np.ndarray, y: np.ndarray, rx, ry) -> float:
    """V-statistic ``dCov²``: ``mean(a_ij b_ij) - 2 mean(ā_i b̄_i) + ā b̄`` (blocked)."""
    n = len(x)
    cross = 0.0
    step = max(1, BLOCK_VALUES // max(n, 1))
    for start in range(0, n, step):
        a = np.abs(x[start : start + step, None] - x[None, :])
        b = np.abs(y[start : start + step, None] - y[None, :])
        cross += float((a * b).sum())
    return cross / n**2 - 2.0 * float(rx[0] @ ry[0]) / n + rx[1] * ry[1]


def _distance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rx, ry = _centred_distances(x), _centred_distances(y)
    var_x = _distance_covariance(x, x, rx, rx)
    var_y = _distance_covariance(y, y, ry, ry)
    if var_x <= 0 or var_y <= 0:
        return float("nan")
    dcov = max(_distance_covariance(x, y, rx, ry), 0.0)
    return float(np.sqrt(dcov / np.sqrt(var_x * var_y)))


def _summary(x, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean profile and squared standard error of the mean per gene of ``x[rows]``."""
    sub = x if rows is None else x[rows]
    n = sub.shape[0]
    mean = np.asarray(sub.mean(axis=0, dtype=np.float64)).ravel()
    sq = sub.multiply(sub) if sparse.issparse(sub) else np.square(sub, dtype=np.float64)
    var = np.maximum(np.asarray(sq.mean(axis=0, dtype=np.float64)).ravel() - mean**2, 0.0)
    return mean, var / max(n - 1, 1)


def _score_pair(
    ctrl: tuple[np.ndarray, np.ndarray],
    single_a: tuple[np.ndarray, np.ndarray],
    single_b: tuple[np.ndarray, np.ndarray],
    double: tuple[np.ndarray, np.ndarray],
    x_ab: np.ndarray,
    x_ctrl: np.ndarray,
    rng: np.random.Generator,
    sources_ab: np.ndarray | None = None,
    sources_ctrl: np.ndarray | None = None,
) -> dict[str, float]:
    """All scores of one pair from the four ``(mean, sem²)`` summaries and two cell samples.

    ``sources_ab`` / ``sources_ctrl``: the source cell of each row of a prediction (copies
    of one source are not paired in the energy distance, and the floor's halves split the
    sources, not the rows); ``None`` for measured cells.
    """
    mean_ctrl, mean_a, mean_b, mean_ab = ctrl[0], single_a[0], single_b[0], double[0]
    noise = ctrl[1] + single_a[1] + single_b[1] + double[1]
    # the energy distance's U-statistic already allows for the sampling noise of the two
    # samples it compares (the double's and the control's cells); the singles' means enter
    # the expectation as constants, so their error is what the null adds
    singles_noise = single_a[1] + single_b[1]
    d_a, d_b, d_ab = mean_a - mean_ctrl, mean_b - mean_ctrl, mean_ab - mean_ctrl
    c_a, c_b = _coefficients(d_a, d_b, d_ab)
    fitted = c_a * d_a + c_b * d_b
    ok = bool(np.isfinite(c_a))
    additive = d_a + d_b
    row = {
        "coef_a": c_a,
        "coef_b": c_b,
        "magnitude": float(np.hypot(c_a, c_b)),
        "dominance": float(np.log10(c_a / c_b)) if ok and c_a > 0 and c_b > 0 else np.nan,
        "model_fit": _distance_correlation(fitted, d_ab) if ok else np.nan,
        "fit_r2": _r2(d_ab, fitted) if ok else np.nan,
        "corr_additive": _pearson(d_ab, additive),
        "additive_l2": float(np.linalg.norm(d_ab - additive)),
        "additive_l2_noise": float(np.sqrt(noise.sum())),
        "energy_distance": np.nan,
        "energy_distance_floor": np.nan,
        "energy_distance_null": np.nan,
    }
    # codes in order of first appearance: distinct sources give 0..n-1, as measured cells
    src_ab = np.arange(len(x_ab)) if sources_ab is None else pd.factorize(sources_ab)[0]
    n_src = len(np.unique(src_ab))
    if n_src >= 2 and len(x_ctrl) >= 2:
        row["energy_distance"] = energy_distance(
            x_ab, x_ctrl + additive, groups_x=src_ab, groups_y=sources_ctrl
        )
    if n_src >= 4:
        uniq = rng.permutation(np.unique(src_ab))
        first = np.isin(src_ab, uniq[: (len(uniq) + 1) // 2])
        halves = [x_ab[first], x_ab[~first]]
        groups = [src_ab[first], src_ab[~first]]
        row["energy_distance_floor"] = energy_distance(
            halves[0], halves[1], groups_x=groups[0], groups_y=groups[1]
        )
        shift = rng.normal(0.0, np.sqrt(singles_noise))  # an error of δ_A + δ_B, as sampled
        row["energy_distance_null"] = energy_distance(
            halves[0] + shift, halves[1], groups_x=groups[0], groups_y=groups[1]
        )
    return row


def _source_cells(pred) -> np.ndarray:
    """The source cell of each predicted cell; each cell its own where none is recorded."""
    if "pdae_source_cell" in pred.obs:
        return pred.obs["pdae_source_cell"].astype(str).to_numpy()
    return np.asarray(pred.obs_names, dtype=str)


def _as_pairs(pairs, control_group: str, delimiter: str, name: str) -> list[tuple[str, str]]:
    """``pairs`` (``"A+B"`` strings or ``(A, B)`` tuples) as a list of ``(A, B)``."""
    if isinstance(pairs, str):
        pairs = [pairs]
    out = []
    for p in pairs:
        if isinstance(p, str):
            tokens = list(parse_condition(p, control_group=control_group, delimiter=delimiter))
        elif isinstance(p, tuple | list) and all(isinstance(t, str) for t in p):
            tokens = [t for t in p if t != control_group]
        else:
            raise TypeError(
                f"{name} entry {p!r}: give each pair as a label {'A' + delimiter + 'B'!r} or "
                "a tuple ('A', 'B')."
            )
        if len(tokens) != 2 or tokens[0] == tokens[1]:
            raise ValueError(
                f"{name} entry {p!r} is not a pair of two different perturbations; give "
                f"labels such as {'A' + delimiter + 'B'!r}."
            )
        out.append((tokens[0], tokens[1]))
    if not out:
        raise ValueError(f"{name} is empty; give at least one pair such as ('A', 'B').")
    return out


def _subsample(idx: np.ndarray, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_cells is None or len(idx) <= max_cells:
        return idx
    return np.sort(rng.choice(idx, max_cells, replace=False))


def _check_max_cells(max_cells: object) -> None:
    if max_cells is not None and (
        isinstance(max_cells, bool) or not isinstance(max_cells, int | np.integer) or max_cells < 4
    ):
        raise ValueError(f"max_cells={max_cells!r}; use None (all cells) or an integer >= 4.")


def interaction_scores(
    adata: AnnData,
    *,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    pairs: Sequence[str] | Sequence[tuple[str, str]] | None = None,
    delimiter: str = "+",
    layer: str | None = None,
    max_cells: int | None = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Score how far each measured double perturbation departs from additivity.

    One row per double ``A+B`` measured together with both singles ``A`` and ``B`` and the
    control. The mean-based scores are those of Norman et al. 2019 (Science 365:786); the
    energy distance to the additive expectation scores the whole distribution of cells.

    With ``δ_X = mean(X cells) - mean(control cells)`` (a vector over genes) for the double
    ``AB`` and its singles ``A`` and ``B``:

    - ``coef_a``, ``coef_b``: least squares ``δ_AB ≈ c_A δ_A + c_B δ_B`` over genes (no
      intercept; Norman et al. 2019 used a robust fit of the same model). NaN when
      ``δ_A`` and ``δ_B`` are collinear (the fit is not identified).
    - ``magnitude``: ``sqrt(c_A² + c_B²)``; an additive pair (``c_A = c_B = 1``) has
      ``sqrt(2) ≈ 1.41``. Larger: synergy; smaller: buffering or suppression.
    - ``dominance``: ``log10(c_A / c_B)``; positive when ``A`` dominates. NaN unless both
      coefficients are positive (the log-ratio has no meaning for a sign change).
    - ``model_fit``: distance correlation (Székely's V-statistic, in ``[0, 1]``) between the
      fitted ``c_A δ_A + c_B δ_B`` and ``δ_AB`` over genes, as in Norman et al.; low values
      mean the double is not any combination of its singles (neomorphic).
    - ``fit_r2``: ``1 - ||δ_AB - fitted||² / ||δ_AB - mean(δ_AB)||²`` over genes.
    - ``corr_additive``: Pearson correlation of ``δ_AB`` with the additive expectation
      ``δ_A + δ_B`` over genes.
    - ``additive_l2``: ``||δ_AB - (δ_A + δ_B)||``, the departure of the mean.
    - ``additive_l2_noise``: its sampling noise, ``sqrt(Σ_genes Σ_X s²_X / n_X)`` over the
      four conditions ``X`` (``s²_X`` the per-gene variance, ``n_X`` the cells): about the
      ``additive_l2`` of an additive pair measured with these cells. It also counts the
      noise of the control mean, which enters the additive expectation and is not in the
      half-vs-half floor below; with few control cells and many genes it can dominate.
    - ``energy_distance``: the distributional departure,
      :func:`~pdae_sc.tl.energy_distance` between the cells of ``AB`` and the additive
      expectation (the control cells shifted by ``δ_A + δ_B``); 0 when the double is the
      control shifted by the sum of the single effects, whatever the law of the cells.
    - ``energy_distance_floor``: the noise floor, :func:`~pdae_sc.tl.energy_distance`
      between two random halves of the cells of ``AB``. The estimates are unbiased, so
      both scatter around 0 for an additive pair; a departure well above the floor is
      real, one at the floor is not distinguishable from sampling noise (the floor
      compares half as many cells, so it is a generous yardstick).
    - ``energy_distance_null``: what an additive pair would score given the sampling noise
      of the expectation too: the same two halves, the first shifted by a draw ``e ~ N(0,
      diag(s²_A / n_A + s²_B / n_B))``. The energy distance's unbiased estimate already
      allows for the noise of the cells it compares (the double's, and the control's, whose
      mean error the shifted control cells carry as a fresh sample would), but the single
      means enter the expectation as constants: their error is a shift the floor does not
      see. With few cells per single and many genes it dominates; a departure is credible
      when it clears this null too.

    Means use all cells of a condition; the energy distances use at most ``max_cells``
    cells of the double and of the control, drawn without replacement with
    ``np.random.default_rng(seed)`` (which also draws the halves of the floor). Labels are
    parsed as everywhere in the package (``"B+A"`` is ``"A+B"``); doses are not read
    (every perturbation counts as present). For several contexts (cell lines), score each
    context's cells on their own. ``adata`` is not modified.

    Parameters
    ----------
    adata
        Cells of the control, the singles and the doubles (e.g. log-normalised expression).
    perturbation_key
        Condition column of ``obs``.
    control_group
        Label of the control condition.
    pairs
        Pairs to score, as labels (``"A+B"``) or tuples (``("A", "B")``); each needs cells of
        the double and of both singles. ``None``: every measured double whose singles were
        measured (doubles without them are skipped, with a warning).
    delimiter
        Separator between combined perturbations.
    layer
        Layer to use instead of ``X``.
    max_cells
        Cells per side for the energy distances (``None``: all).
    seed
        Seed of the subsampling and of the halves of the noise floor.

    Returns
    -------
    DataFrame with one row per pair and columns ``pair`` (the double's label),
    ``perturbation_a``, ``perturbation_b``, ``origin`` (``"measured"``), ``n_cells`` (cells
    of the double), ``coef_a``, ``coef_b``, ``magnitude``, ``dominance``, ``model_fit``,
    ``fit_r2``, ``corr_additive``, ``additive_l2``, ``additive_l2_noise``,
    ``energy_distance``, ``energy_distance_floor`` and ``energy_distance_null``, largest
    ``energy_distance`` first.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_genes=20, seed=0)
    >>> scores = pdae.tl.interaction_scores(adata, perturbation_key="perturbation")
    >>> sorted(scores["pair"])
    ['P0+P1', 'P0+P2', 'P1+P2']
    >>> bool((scores["magnitude"] > 0).all())
    True
    """
    _check_max_cells(max_cells)
    if perturbation_key not in adata.obs:
        raise KeyError(
            f"perturbation_key={perturbation_key!r} is not a column of adata.obs "
            f"({list(adata.obs.columns)})."
        )
    enc = encode_conditions(
        adata.obs[perturbation_key],
        control_group=control_group,
        delimiter=delimiter,
        name=perturbation_key,
    )
    mat = _matrix(adata, layer, "adata")
    n_tokens = (enc.labels != 0).sum(1)
    ctrl_codes = np.flatnonzero(n_tokens == 0)
    if len(ctrl_codes) == 0:
        raise ValueError(
            f"adata has no {control_group!r} cells in obs[{perturbation_key!r}]; the scores "
            "are changes against the control (set control_group to its label)."
        )
    vocab = enc.vocabulary
    single = {
        vocab[int(np.flatnonzero(enc.labels[c])[0])]: c for c in np.flatnonzero(n_tokens == 1)
    }
    double = {}
    for c in np.flatnonzero(n_tokens == 2):
        a, b = (vocab[k] for k in np.flatnonzero(enc.labels[c]))
        double[frozenset((a, b))] = (c, a, b)
    if pairs is None:
        wanted = list(double.values())
        skipped = [enc.conditions[c] for c, a, b in wanted if a not in single or b not in single]
        wanted = [w for w in wanted if w[1] in single and w[2] in single]
        if skipped:
            warnings.warn(
                f"Skipped {len(skipped)} doubles whose singles were not both measured: "
                f"{skipped[:5]}.",
                UserWarning,
                stacklevel=2,
            )
        if not wanted:
            raise ValueError(
                f"adata has no double perturbation (label with two perturbations joined by "
                f"{delimiter!r}) whose singles were measured; nothing to score."
            )
    else:
        wanted = []
        for a, b in _as_pairs(pairs, control_group, delimiter, "pairs"):
            missing = [
                lab
                for lab, ok in (
                    (f"{a}{delimiter}{b}", frozenset((a, b)) in double),
                    (a, a in single),
                    (b, b in single),
                )
                if not ok
            ]
            if missing:
                raise ValueError(
                    f"Pair ({a!r}, {b!r}) needs cells of {missing} in "
                    f"obs[{perturbation_key!r}]; score measured pairs only (for unmeasured "
                    "ones use predicted_interaction_scores with a trained model)."
                )
            c, _, _ = double[frozenset((a, b))]
            wanted.append((c, a, b))

    rng = np.random.default_rng(seed)
    codes = enc.codes
    summaries = {}

    def summary(cond_codes) -> tuple[np.ndarray, np.ndarray]:
        key = tuple(np.atleast_1d(cond_codes).tolist())
        if key not in summaries:
            summaries[key] = _summary(mat, np.flatnonzero(np.isin(codes, key)))
        return summaries[key]

    ctrl_rows = np.flatnonzero(np.isin(codes, ctrl_codes))
    x_ctrl = _dense(mat, _subsample(ctrl_rows, max_cells, rng))
    ctrl = summary(ctrl_codes)
    rows = []
    for c, a, b in wanted:
        idx = np.flatnonzero(codes == c)
        x_ab = _dense(mat, _subsample(idx, max_cells, rng))
        scores = _score_pair(
            ctrl,
            summary(single[a]),
            summary(single[b]),
            summary(c),
            x_ab,
            x_ctrl,
            rng,
        )
        head = {"pair": enc.conditions[c], "perturbation_a": a, "perturbation_b": b}
        rows.append({**head, "origin": "measured", "n_cells": len(idx), **scores})
    return _table(rows)


def _table(rows: list[dict], extra: Sequence[str] = ()) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    out = out.sort_values("energy_distance", ascending=False, kind="stable", na_position="last")
    return out.reset_index(drop=True)


def _check_count(value: object, name: str, minimum: int) -> int:
    return check_positive_int(value, name, minimum=minimum)


def _default_pairs(model, context) -> list[tuple[str, str]]:
    """Unmeasured pairs of the model's perturbations whose double and singles are in span."""
    delimiter = model.registration.delimiter
    vocab = list(model.perturbations)
    singles = model.check_extrapolation(vocab, context=context)
    ok = set(np.asarray(vocab, dtype=object)[singles["in_span"].to_numpy()])
    candidates = [(a, b) for a, b in itertools.combinations(vocab, 2) if a in ok and b in ok]
    if not candidates:
        raise ValueError(
            "The model knows fewer than two perturbations whose single effect is in the span "
            "of its training labels; there is no pair to predict."
        )
    labels = [f"{a}{delimiter}{b}" for a, b in candidates]
    table = model.check_extrapolation(labels, context=context)
    keep = (table["in_span"] & ~table["seen"]).to_numpy()
    if not keep.any():
        raise ValueError(
            "Every pair of the model's perturbations was measured in training (or lies "
            "outside the span); pass pairs=... to predict measured pairs."
        )
    return [p for p, k in zip(candidates, keep, strict=True) if k]


def predicted_interaction_scores(
    model,
    pairs: Sequence[str] | Sequence[tuple[str, str]] | None = None,
    *,
    n_cells: int = 200,
    n_cells_reference: int = 1000,
    source: str | None = None,
    context: str | tuple | None = None,
    chunk_size: int = 128,
    seed: int = 0,
) -> pd.DataFrame:
    """Predict doubles and their singles with a trained model and score their interaction.

    The scores, their formulas and the columns are those of :func:`interaction_scores`,
    computed on predicted cells instead of measured ones: the control and every single
    needed are predicted with ``n_cells_reference`` cells each (their means give
    ``δ_A``, ``δ_B``; ``n_cells`` of the predicted control cells, shifted by
    ``δ_A + δ_B``, are the additive expectation), and each double with ``n_cells`` cells.
    The expectation is built from the model's own control and singles, so a pair scores as
    non-additive only when the model's prediction of the double departs from the sum of its
    predicted singles (the decoder is nonlinear), not because of the model's error on the
    control. Doubles are predicted ``chunk_size`` at a time with one call of
    ``model.predict`` (seed ``seed + 1 + chunk``) and scored as they come, so memory stays
    at about ``chunk_size * n_cells`` predicted cells (the control and singles are predicted
    in chunks of the same size). The speed (pairs per second) is logged at INFO level
    and stored in ``attrs["pairs_per_second"]`` of the result.

    A predicted interaction can be trusted only as far as the prediction of the double: its
    target must be in the span of the training labels (``status`` says so; see
    :meth:`pdae_sc.model.PDAE.check_extrapolation`), and :func:`cross_validate` tells
    whether the model beats the additive baseline on held-out measured doubles of these
    data. Join the table with the measured one: ``pd.concat([interaction_scores(adata,
    ...), predicted_interaction_scores(model)])``.

    Parameters
    ----------
    model
        A trained :class:`pdae_sc.model.PDAE`.
    pairs
        Pairs of the model's perturbations, as labels (``"A+B"``) or tuples (``("A",
        "B")``). ``None``: every pair not measured in training whose double and singles
        lie in the span of the training labels.
    n_cells
        Predicted cells per double (and cells of the additive expectation).
    n_cells_reference
        Predicted cells of the control and of each single (for their means).
    source
        Source cells to move (see :meth:`pdae_sc.model.PDAE.predict`).
    context
        Context to predict in (see :meth:`pdae_sc.model.PDAE.predict`).
    chunk_size
        Doubles per call of ``model.predict``.
    seed
        Seed of the predictions and of the halves of the noise floor.

    Returns
    -------
    DataFrame with the columns of :func:`interaction_scores` (``origin`` is
    ``"predicted"``, ``n_cells`` the predicted cells per double) and ``status`` (of
    :meth:`pdae_sc.model.PDAE.check_extrapolation`), largest ``energy_distance`` first.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_genes=20, seed=0)
    >>> train = adata[~adata.obs["perturbation"].isin(["P0+P1", "P2+P3"])].copy()
    >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(train, n_latent=4, n_hidden=(32,))
    >>> model.train(max_epochs=2, enable_progress_bar=False)
    >>> scores = pdae.tl.predicted_interaction_scores(model, n_cells=100)
    >>> sorted(scores["pair"])
    ['P0+P1', 'P2+P3']
    >>> scores["status"].unique().tolist()
    ['in span, in range']
    """
    registration = getattr(model, "registration", None)
    if registration is None or not hasattr(model, "predict"):
        raise TypeError(
            f"model must be a trained pdae_sc.model.PDAE, got {type(model).__name__}; for "
            "measured cells use interaction_scores(adata, ...)."
        )
    n_cells = _check_count(n_cells, "n_cells", 4)
    n_ref = _check_count(n_cells_reference, "n_cells_reference", 2)
    chunk_size = _check_count(chunk_size, "chunk_size", 1)
    ctrl, delimiter = registration.control_group, registration.delimiter
    if pairs is None:
        pairs = _default_pairs(model, context)
    else:
        pairs = _as_pairs(pairs, ctrl, delimiter, "pairs")
        known = set(model.perturbations)
        unknown = sorted({t for p in pairs for t in p} - known)
        if unknown:
            model.target_labels(unknown[:1])  # raises KeyError with the closest names
    labels = [f"{a}{delimiter}{b}" for a, b in pairs]
    status = model.check_extrapolation(labels, context=context)["status"].to_numpy()
    kwargs = {"source": source, "context": context}
    start = time.perf_counter()

    singles = list(dict.fromkeys(t for p in pairs for t in p))
    means: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    references = [ctrl, *singles]
    ref_chunk = max(1, chunk_size * n_cells // n_ref)  # the same memory as a chunk of doubles
    for i in range(0, len(references), ref_chunk):
        chunk = references[i : i + ref_chunk]
        pred = model.predict(chunk, n_cells=n_ref, seed=seed, **kwargs)
        x = np.asarray(pred.X).reshape(len(chunk), n_ref, -1)
        for name, block in zip(chunk, x, strict=True):
            means[name] = _summary(block)
            if name == ctrl and i == 0:
                x_ctrl = block[:n_cells].astype(np.float64)
                ctrl_sources = _source_cells(pred)[:n_cells]
    rng = np.random.default_rng(seed)
    rows = []
    for j, i in enumerate(range(0, len(pairs), chunk_size)):
        chunk = labels[i : i + chunk_size]
        with warnings.catch_warnings():
            # the span was checked once above (status column); do not repeat it per chunk
            warnings.simplefilter("ignore", UserWarning)
            pred = model.predict(chunk, n_cells=n_cells, seed=seed + 1 + j, **kwargs)
        x = np.asarray(pred.X).reshape(len(chunk), n_cells, -1)
        sources = _source_cells(pred).reshape(len(chunk), n_cells)
        for k, (label, block32) in enumerate(zip(chunk, x, strict=True)):
            a, b = pairs[i + k]
            block = block32.astype(np.float64)
            scores = _score_pair(
                means[ctrl],
                means[a],
                means[b],
                _summary(block),
                block,
                x_ctrl,
                rng,
                sources_ab=sources[k],
                sources_ctrl=ctrl_sources,
            )
            head = {"pair": label, "perturbation_a": a, "perturbation_b": b}
            rows.append(
                {
                    **head,
                    "origin": "predicted",
                    "n_cells": n_cells,
                    **scores,
                    "status": status[i + k],
                }
            )
    elapsed = time.perf_counter() - start
    out = _table(rows, extra=["status"])
    out.attrs["pairs_per_second"] = len(pairs) / elapsed if elapsed > 0 else float("inf")
    logger.info(
        "Scored %d predicted pairs in %.1f s (%.1f pairs per second).",
        len(pairs),
        elapsed,
        out.attrs["pairs_per_second"],
    )
    return out
