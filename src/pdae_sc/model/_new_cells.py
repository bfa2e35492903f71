"""Prediction from new cells: ``PDAE.predict(..., adata=new_cells)``, without retraining.

The user's cells (typically the control cells of a cell line or donor the model never saw)
are read by gene name. A simple baseline moves them by its mean shift, fitted on the
registered cells (:func:`~pdae_sc.model._new_cells_baselines.baseline_shifts`). That is what
``method="auto"`` does: each target measured in training gets its measured mean shift, one
with a perturbation never measured the linear model with embeddings' shift, the others (e.g.
combinations never measured) the baseline of :func:`new_cells_method`, or the network where
it was clearly closer on the model's held-out conditions (:func:`network_for_unmeasured`).
With ``method="pdae"`` the network moves every target's cells, exactly as it moves
registered cells (:func:`~pdae_sc.model._predict.move_to_targets`):
encoded, their own shift subtracted (zero for control cells), the target's added, decoded.
The user's AnnData is only read; nothing is registered on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from pdae_sc.data._labels import EncodedConditions, encode_conditions, label_vector, match_labels
from pdae_sc.data._prediction_adata import (
    UNS_CHOSEN,
    UNS_EXTRAPOLATION,
    UNS_METHOD,
    obs_names_of,
    prediction_adata,
)
from pdae_sc.data._sampler import RowGatherer
from pdae_sc.data._span import STATUS_OTHER_CONTEXT, STATUS_SEEN
from pdae_sc.data._validation import check_matrix, check_unique_names, get_matrix

from ._basal_range import UNS_BASAL_RANGE, basal_range
from ._counts_scale import count_scale
from ._new_cells_baselines import SHIFT_MEASURED, baseline_shifts
from ._noise import draw_sources, make_generator
from ._predict import check_prediction_memory, move_to_targets
from ._registration import RegisteredCells, Registration, Targets
from ._selection import clearly_closer
from ._warnings import warn_outside_basal_range, warn_outside_span

__all__ = [
    "NETWORK",
    "NEW_CONTEXT",
    "SHIFT_COLUMN",
    "SHIFT_MEASURED",
    "UNS_NEW_CELLS",
    "GeneRows",
    "NewCells",
    "match_genes",
    "network_for_unmeasured",
    "new_cells_method",
    "new_cells_table",
    "predict_new_cells",
    "read_new_cells",
]

logger = logging.getLogger(__name__)

#: Context value of new cells whose ``obs`` lacks a context column of the model.
NEW_CONTEXT = "new cells"
#: ``uns["pdae"]`` key: ``True`` when the sources were new cells (``predict(adata=...)``).
UNS_NEW_CELLS = "new_cells"
#: Column of ``uns["pdae"]["extrapolation"]`` (baselines only): what shifted each target's
#: new cells, :data:`SHIFT_MEASURED` or the baseline's name.
SHIFT_COLUMN = "new_cells_shift"
#: Value of :data:`SHIFT_COLUMN` for a target whose new cells the network moved.
NETWORK = "pdae"
#: The baselines that move new cells (``pooled`` draws registered cells instead).
_SHIFTING = ("linear", "additive", "mean_response", "control")


def match_genes(genes: list[str], adata: AnnData) -> np.ndarray | None:
    """Column of ``adata`` holding each of the model's ``genes`` (``None``: already in order).

    The same genes in another order are reordered; genes the model was not trained on are
    left out (logged); a missing gene raises ``ValueError`` naming it and the fix.
    """
    got = adata.var_names
    if len(got) == len(genes) and np.array_equal(np.asarray(got, dtype=str), genes):
        return None
    if not got.is_unique:
        dup = got[got.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"adata.var_names has duplicates (e.g. {dup}), so genes cannot be matched to the "
            "model's by name; make them unique (adata.var_names_make_unique()) or drop them."
        )
    cols = got.get_indexer(genes)
    missing = [g for g, c in zip(genes, cols, strict=True) if c < 0]
    if missing:
        raise ValueError(
            f"adata misses {len(missing)} of the {len(genes)} genes the model was trained on "
            f"(e.g. {missing[:5]}); the encoder needs every one of them, matched by name in "
            "adata.var_names. Use the new cells' full gene table (before any selection of "
            "highly variable genes) and check that the names use the same convention as "
            "model.registration.genes (gene symbols vs Ensembl IDs); if those genes were "
            "not measured, train a model on the genes both data sets share."
        )
    n_extra = adata.n_vars - len(genes)
    if n_extra:
        logger.info("adata has %d genes the model was not trained on; they are left out.", n_extra)
    return cols


class GeneRows:
    """Rows of the user's matrix as dense float32, with the model's genes in its order.

    Only the requested rows and genes are densified (the rows are read whole from a backed
    matrix); the matrix is never modified.

    Parameters
    ----------
    matrix
        ``adata.X`` or a layer (dense, sparse or backed).
    cols
        Column of each model gene (:func:`match_genes`); ``None`` when already in order.
    """

    def __init__(self, matrix, cols: np.ndarray | None):
        self.matrix, self.cols = matrix, cols
        self._rows = RowGatherer(matrix)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` as float32, shape ``(len(idx), n_model_genes)``."""
        if self.cols is None:
            return self._rows(idx)
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if isinstance(self.matrix, np.ndarray):
            return np.asarray(self.matrix[np.ix_(idx, self.cols)], dtype=np.float32)
        if sp.issparse(self.matrix):
            rows = sp.csr_matrix(self.matrix[idx])[:, self.cols]
            return np.asarray(rows.toarray(), dtype=np.float32)
        return np.ascontiguousarray(self._rows(idx)[:, self.cols])


@dataclass(frozen=True)
class NewCells:
    """The user's cells as a prediction reads them (:func:`read_new_cells`).

    Parameters
    ----------
    adata
        The user's AnnData (read only).
    rows
        Reader of its expression on the model's genes (:class:`GeneRows`).
    count_rows
        Reader of its counts on the model's genes (``scale="counts"`` only).
    cells
        Condition of each cell over the model's vocabulary (every cell the control without
        the perturbation column) and its context (context columns as in its ``obs``,
        :data:`NEW_CONTEXT` where one is missing).
    sources
        Rows that are moved.
    context_values
        Value of each context key of the model for every cell, as strings.
    context
        Context name of the sources (:data:`NEW_CONTEXT` when they span several).
    """

    adata: AnnData
    rows: GeneRows
    count_rows: GeneRows | None
    cells: RegisteredCells
    sources: np.ndarray
    context_values: dict[str, np.ndarray]
    context: str


def read_new_cells(
    registration: Registration, adata: AnnData, *, source: str | None, scale: str
) -> NewCells:
    """Check the user's cells against the model and read their genes, labels and contexts.

    Raises ``TypeError`` for a non-AnnData, ``ValueError`` for missing genes, an empty or
    non-finite matrix, duplicated cell names or missing counts (``scale="counts"``), and
    ``KeyError`` for perturbations the model does not know.
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"adata must be an AnnData of new cells, got {type(adata).__name__}.")
    if adata.n_obs == 0:
        raise ValueError("adata has no cells; pass the cells to move (e.g. control cells).")
    check_unique_names(adata)
    cols = match_genes(registration.genes, adata)
    name = "adata.X" if registration.layer is None else f"adata.layers[{registration.layer!r}]"
    matrix = get_matrix(adata, registration.layer)
    # the model's genes only (a backed matrix is checked whole, chunk by chunk)
    check_matrix(matrix if cols is None or _is_backed(matrix) else matrix[:, cols], name=name)
    rows = GeneRows(matrix, cols)
    count_rows = None
    if scale == "counts":
        layer = registration.counts_layer
        if layer not in adata.layers:
            raise ValueError(
                f"scale='counts' needs the raw counts of the new cells in "
                f"adata.layers[{layer!r}] (the model's counts_layer); adata has layers "
                f"{list(adata.layers)}. Add them (pdae.pp.normalize_counts keeps the counts "
                "there) or use scale='log1p'."
            )
        count_rows = GeneRows(adata.layers[layer], cols)
    enc = _encode_new(registration, adata)
    values = {
        key: (
            adata.obs[key].astype(str).to_numpy()
            if key in adata.obs
            else np.full(adata.n_obs, NEW_CONTEXT, dtype=object)
        )
        for key in registration.context_keys
    }
    names = pd.Series(np.full(adata.n_obs, NEW_CONTEXT, dtype=object))
    for i, v in enumerate(values.values()):  # joined as registered contexts are
        names = pd.Series(v, dtype=object) if i == 0 else names.str.cat(v, sep=" | ")
    ctx_codes, ctx_names = pd.factorize(names)
    cells = RegisteredCells(enc, ctx_codes.astype(np.int64), [str(n) for n in ctx_names])
    sources = _new_sources(registration, cells, source, registration.perturbation_key in adata.obs)
    in_sources = np.unique(cells.context_codes[sources])
    context = cells.context_names[in_sources[0]] if len(in_sources) == 1 else NEW_CONTEXT
    return NewCells(adata, rows, count_rows, cells, sources, values, context)


def _is_backed(matrix) -> bool:
    return not isinstance(matrix, np.ndarray) and not sp.issparse(matrix)


def _encode_new(registration: Registration, adata: AnnData) -> EncodedConditions:
    """The cells' conditions over the model's vocabulary; every cell the control if unlabelled."""
    key, ctrl = registration.perturbation_key, registration.control_group
    if key not in adata.obs:
        labels = pd.Series(np.full(adata.n_obs, ctrl, dtype=object))
        return encode_conditions(
            labels, control_group=ctrl, vocabulary=registration.vocabulary, name=key
        )
    dose_key = registration.dosage_key
    try:
        return encode_conditions(
            adata.obs[key],
            control_group=ctrl,
            delimiter=registration.delimiter,
            dosages=adata.obs[dose_key] if dose_key in adata.obs else None,
            vocabulary=registration.vocabulary,
            name=key,
        )
    except KeyError as err:
        raise KeyError(
            f"{err.args[0]} (in adata.obs[{key!r}] of the new cells). Cells are moved from "
            "their own condition, which must be one the model knows: pass only those cells "
            f"(e.g. the control cells, adata[adata.obs[{key!r}] == {ctrl!r}])."
        ) from err


def _new_sources(
    registration: Registration, cells: RegisteredCells, source, labelled: bool
) -> np.ndarray:
    """Rows of the new cells to move: ``None`` their control cells (all without any)."""
    every = np.arange(len(cells.codes))
    if source is not None and not isinstance(source, str):
        raise TypeError(
            f"source={source!r} has type {type(source).__name__}; use None, 'all' or a "
            "condition of the new cells."
        )
    if source is None:
        ctrl = np.flatnonzero(cells.is_control)
        return ctrl if len(ctrl) else every
    if source == "all":
        return every
    vec = label_vector(registration._parse(source), registration.vocabulary)
    hits = match_labels(vec, cells.encoded.label_rows).indices
    idx = np.flatnonzero(np.isin(cells.codes, hits))
    if len(idx) == 0:
        where = (
            f"adata.obs[{registration.perturbation_key!r}] has {cells.encoded.conditions[:10]}"
            if labelled
            else f"adata has no {registration.perturbation_key!r} column (every cell is a "
            f"control cell, {registration.control_group!r})"
        )
        raise ValueError(f"source={source!r}: no new cell has that condition; {where}.")
    return idx


def new_cells_table(registration: Registration, targets: Targets, new: NewCells) -> pd.DataFrame:
    """The extrapolation table of the targets (:meth:`Registration.targets`) for new cells.

    Adds, as for a registered context, ``context`` (that of the new cells),
    ``seen_in_context`` and ``n_cells_in_context`` (measured in a registered context of
    that name; never for a new context, whose training conditions become ``"seen in another
    context"``) and ``n_source_cells`` (the new cells moved).
    """
    counts = np.zeros(len(registration.conditions), dtype=np.int64)
    if new.context in registration.contexts:
        counts = registration.context_condition_counts[registration.contexts.index(new.context)]
    match = match_labels(targets.labels, registration.label_matrix)
    n_here = np.asarray(match.astype(np.int64) @ counts).ravel()
    table = targets.table.copy()
    table.insert(0, "context", new.context)
    table.insert(table.columns.get_loc("seen") + 1, "seen_in_context", n_here > 0)
    table.loc[(table["status"] == STATUS_SEEN) & (n_here == 0), "status"] = STATUS_OTHER_CONTEXT
    table["n_cells_in_context"] = n_here
    table["n_source_cells"] = len(new.sources)
    return table


def predict_new_cells(
    model,
    adata: AnnData,
    targets: Targets,
    *,
    method: str,
    chosen: bool,
    source: str | None,
    n_cells: int | None,
    seed: int,
    batch_size: int,
    scale: str,
    sparse: bool | None,
) -> AnnData:
    """``model.predict(..., adata=new_cells)``: the new cells moved to each target.

    ``method``: ``"pdae"`` (the model's module moves the cells) or a simple baseline (its
    mean shift, :func:`baseline_shifts`, added to them); ``chosen``: ``method="auto"`` was
    asked for, and :func:`new_cells_method` chooses. ``"pooled"``, which draws the
    registered cells, is refused.
    """
    registration = model.registration
    new = read_new_cells(registration, adata, source=source, scale=scale)
    table = new_cells_table(registration, targets, new)
    warn_outside_span(table, stacklevel=4)
    basal = basal_range(registration, new, batch_size)
    warn_outside_basal_range(basal, stacklevel=4)
    use_network = False
    if chosen:
        method = new_cells_method(model)
        use_network = network_for_unmeasured(model, method)
        logger.info(
            "predict(adata=...) adds to the new cells each target's mean shift measured in "
            "training; a target never measured is moved by %s (see new_cells_shift in the "
            "extrapolation table).",
            "the network, ahead on the held-out conditions"
            if use_network
            else f"the {method!r} baseline's shift",
        )
    elif method == "pooled":
        raise ValueError(
            "method='pooled' draws the registered cells, not the new ones; with adata= use "
            "'pdae' or a baseline that shifts the new cells ('linear', 'additive', "
            "'mean_response', or 'control' for the cells unchanged)."
        )
    n = len(new.sources) if n_cells is None else int(n_cells)
    if method == "pdae":
        x_out, picks, sizes = _network_moves(model, new, targets.labels, n, seed, batch_size)
        uns = {UNS_METHOD: "pdae"}
    else:
        n_genes = len(registration.genes)
        check_prediction_memory(n, len(targets.names), n_genes, model.max_prediction_bytes)
        shifts, how = baseline_shifts(registration, method, targets, measured_first=chosen)
        if use_network:
            how[how == method] = NETWORK
        x_out, picks = _moved(model, new, targets, shifts, how, n, seed, batch_size)
        sizes = [n] * len(targets.names)
        uns = {UNS_METHOD: method, UNS_CHOSEN: method == _chosen_method(model)}
        table[SHIFT_COLUMN] = how
    uns.update(
        {UNS_EXTRAPOLATION: table.reset_index(), UNS_NEW_CELLS: True, UNS_BASAL_RANGE: basal}
    )
    layers, values, codes = None, None, new.cells.codes[picks]
    if scale == "counts":
        layers, values = count_scale(
            x_out, new.rows, new.count_rows, picks, codes, batch_size, seed
        )
    if sparse is None:
        sparse = bool(sp.issparse(get_matrix(adata, registration.layer)))
    return prediction_adata(
        x_out,
        registration.adata.var,
        perturbation_key=registration.perturbation_key,
        targets=targets.names,
        sizes=sizes,
        source_conditions=np.asarray(new.cells.encoded.conditions, dtype=object)[codes],
        source_cells=adata.obs_names.to_numpy()[picks],
        obs_names=obs_names_of(targets.names, targets.dosages, sizes, seed),
        uns=uns,
        dosage_key=registration.dosage_key,
        dosages=targets.dosages,
        label_columns={k: v[picks] for k, v in new.context_values.items()},
        value_columns=values,
        layers=layers,
        sparse=sparse,
    )


def new_cells_method(model) -> str:
    """The baseline ``method="auto"`` moves new cells with, for targets never measured.

    A target measured in a registered context gets its measured mean shift (what a new
    context that differs only in its basal state should show). A target never measured gets
    ``additive``, the sum of its singles' measured shifts, unless another baseline that
    shifts cells (``linear``, ``mean_response``, ``control``) was clearly closer on the
    model's held-out conditions (``held_out_scores_``, targets never measured in their
    context too): its mean energy distance lower than ``additive``'s by more than one
    standard error of the per-condition differences, the rule by which the model prefers a
    baseline to the network (:func:`~pdae_sc.model._selection.clearly_closer`). The network
    takes those targets over when :func:`network_for_unmeasured` says so.
    """
    scores = getattr(model, "held_out_scores_", None)
    if scores is None or scores.empty:
        return "additive"
    best = str(scores[list(_SHIFTING)].mean().idxmin())
    return best if clearly_closer(scores, best, than="additive") else "additive"


def network_for_unmeasured(model, method: str) -> bool:
    """Whether ``method="auto"`` moves new cells to never-measured targets with the network.

    Yes when the network was clearly closer than ``method`` (the baseline of
    :func:`new_cells_method`) on the model's held-out conditions, which are combinations
    and perturbations never measured in their context: the evidence on targets like these.
    Targets measured in a registered context keep their measured mean shift, and targets
    placed by the perturbation embedding the linear model's, whatever the network did
    (``benchmarks/results/new_cells.md``: on simulated new contexts the measured shift was
    closer than the network inside the training contexts' range of basal states; the
    network was closer on never-measured combinations, inside that range and outside it).
    """
    scores = getattr(model, "held_out_scores_", None)
    if scores is None or scores.empty or "pdae" not in scores:
        return False
    return clearly_closer(scores, "pdae", than=method)


def _chosen_method(model) -> str | None:
    """The model's choice on its held-out conditions (``None`` for a model without one)."""
    return getattr(model, "prediction_method_", None)


def _shifted(new: NewCells, shifts: np.ndarray, n: int, seed: int, batch_size: int):
    """``n`` new source cells per target plus its shift: the sources the network moves."""
    rng = np.random.default_rng(seed)
    make_generator(rng, torch.device("cpu"))  # the network's draws come after its noise seed
    x_out = np.empty((n * len(shifts), shifts.shape[1]), dtype=np.float32)
    picks = []
    for t, shift in enumerate(shifts):
        rows = draw_sources(new.sources, n, rng)
        for a in range(0, n, batch_size):
            block = new.rows(rows[a : a + batch_size]).astype(np.float64) + shift
            x_out[t * n + a : t * n + a + len(block)] = block
        picks.append(rows)
    return x_out, np.concatenate(picks)


def _network_moves(model, new: NewCells, labels, n: int, seed: int, batch_size: int):
    """The new cells moved to each of ``labels`` by the network (:func:`move_to_targets`)."""
    return move_to_targets(
        model.module,
        model.device,
        new.cells,
        new.rows,
        labels,
        new.sources,
        n,
        seed,
        batch_size,
        model.max_prediction_bytes,
    )


def _moved(model, new: NewCells, targets: Targets, shifts, how, n: int, seed, batch_size):
    """``n`` new cells per target, moved by ``shifts`` or by the network.

    The network moves the targets whose ``how`` is :data:`NETWORK`. Target by target in the
    order asked; returns the cells and the source row of each.
    """
    net, rest = np.flatnonzero(how == NETWORK), np.flatnonzero(how != NETWORK)
    if not len(net):
        return _shifted(new, shifts, n, seed, batch_size)
    parts = [(net, _network_moves(model, new, targets.labels[net], n, seed, batch_size)[:2])]
    if len(rest):
        parts.insert(0, (rest, _shifted(new, shifts[rest], n, seed, batch_size)))
    x_out = np.empty((n * len(how), shifts.shape[1]), dtype=np.float32)
    picks = np.empty(n * len(how), dtype=np.int64)
    for idx, (x, rows) in parts:
        for j, t in enumerate(idx):
            x_out[t * n : (t + 1) * n] = x[j * n : (j + 1) * n]
            picks[t * n : (t + 1) * n] = rows[j * n : (j + 1) * n]
    return x_out, picks
