"""The prediction path of a PDAE, as plain functions: sources, moves, latents, the fit check.

Every query of :class:`pdae_sc.model.PDAE` that produces cells or latents runs here:
``predict`` (:func:`predict_cells`, or :func:`predict_with_baseline` when a simple
baseline was chosen), ``get_counterfactual`` (:func:`counterfactual`),
``get_latent_representation`` (:func:`latents`) and ``check_fit`` (:func:`fit_check`). Cells
are read ``batch_size`` rows at a time (:func:`map_rows`) and moved by the module
(:func:`move_sources`), so a backed or sparse matrix is never densified as a whole.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from pdae_sc.data._labels import label_vector, match_labels
from pdae_sc.data._prediction_adata import (
    SIZE_FACTOR_KEY,
    SOURCE_CELL_KEY,
    UNS_CHOSEN,
    UNS_EXTRAPOLATION,
    UNS_METHOD,
    obs_names_of,
    prediction_adata,
)
from pdae_sc.data._sampler import RowGatherer
from pdae_sc.data._validation import get_matrix
from pdae_sc.tl._baselines import predict_baseline
from pdae_sc.tl._metrics import energy_distance

from ._counts_scale import count_scale
from ._noise import BlockNoise, draw_sources, make_generator
from ._registration import RegisteredCells, Registration, Targets

__all__ = [
    "baseline_applies",
    "baseline_prediction_available",
    "check_prediction_memory",
    "count_scale",
    "counterfactual",
    "embedding_argument",
    "fit_check",
    "label_batch",
    "latents",
    "map_rows",
    "move_sources",
    "move_to_targets",
    "predict_cells",
    "predict_with_baseline",
    "registered_baseline",
    "source_cells",
]

#: With more perturbations, batches carry sparse label rows.
_SPARSE_LABELS = 1024


def label_batch(label_rows, codes: np.ndarray, device) -> torch.Tensor:
    """Label vectors of conditions ``codes`` as one tensor on ``device``.

    Dense up to ``_SPARSE_LABELS`` perturbations; above, a sparse COO tensor, so a batch of a
    genome-wide screen costs its nonzeros, not ``len(codes) * K`` (the module's shifts take
    either).
    """
    rows = label_rows[np.asarray(codes)]
    if rows.shape[1] <= _SPARSE_LABELS:
        return torch.from_numpy(rows.toarray().astype(np.float32, copy=False)).to(device)
    coo = rows.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32, copy=False))
    return torch.sparse_coo_tensor(index, values, rows.shape, check_invariants=False).to(device)


@torch.inference_mode()
def map_rows(fn, x_rows, idx: np.ndarray, batch_size: int, device, out=None) -> np.ndarray:
    """``fn(x, start)`` on rows ``idx``, ``batch_size`` at a time, written into one array."""
    for start in range(0, len(idx), batch_size):
        x = torch.from_numpy(x_rows(idx[start : start + batch_size])).to(device)
        y = fn(x, start).cpu().numpy()
        if out is None:
            out = np.empty((len(idx), y.shape[1]), dtype=y.dtype)
        out[start : start + len(y)] = y
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def check_prediction_memory(n_cells: int, n_targets: int, n_genes: int, limit: int) -> None:
    """Refuse a prediction whose float32 matrix would exceed ``limit`` bytes, with the estimate."""
    need = int(n_cells) * int(n_targets) * int(n_genes) * 4
    if need > limit:
        per_call = max(1, limit // max(1, int(n_genes) * 4))
        raise ValueError(
            f"predict would build a {int(n_cells) * int(n_targets):,} cells x {n_genes:,} genes "
            f"float32 matrix, about {need / 2**30:.1f} GiB (n_cells={n_cells} for each of "
            f"{n_targets} targets), above PDAE.max_prediction_bytes = {limit / 2**30:.1f} GiB. "
            f"Predict in chunks of at most {per_call:,} cells (e.g. one target or a smaller "
            "n_cells per call, each with its own seed) and join them with anndata.concat, or "
            "raise the limit (PDAE.max_prediction_bytes = 16 * 2**30) if the memory is there."
        )


def move_sources(
    module, device, target, src_idx, cells: RegisteredCells, gather, rng, gen, batch_size, *, out
) -> np.ndarray:
    """Draw ``len(out)`` of the cells ``src_idx`` and move them to ``target`` into ``out``.

    ``cells``: the registered cells' conditions; ``gather``: the registered matrix's rows.
    The draw is stratified by condition and context (:func:`draw_sources`). Each distinct
    source is encoded once (a source is drawn many times when more cells are predicted than
    there are sources; the encoder is deterministic). Returns the drawn rows.
    """
    groups = cells.codes[src_idx] * len(cells.context_names) + cells.context_codes[src_idx]
    picks = draw_sources(src_idx, len(out), rng, groups)
    target_t = torch.as_tensor(target, dtype=torch.float32, device=device)
    picked = cells.codes[picks]
    label_rows = cells.float_label_rows
    module.eval()
    uniq, where = np.unique(picks, return_inverse=True)
    encoded = map_rows(lambda x, _: module.encode(x), gather, uniq, batch_size, device)
    encoded = torch.from_numpy(encoded).to(device)
    where = torch.from_numpy(where.ravel()).to(device)
    noise = BlockNoise(module, len(picks), encoded, gen)

    def fn(x, start):
        lab = label_batch(label_rows, picked[start : start + len(x)], device)
        z = encoded[where[start : start + len(x)]]
        return module.move(x, lab, target_t, encoded=z, noise=noise.take(start, len(x)))

    map_rows(fn, gather, picks, batch_size, device, out=out)
    return picks


def latents(module, device, matrix, idx, batch_size, cells: RegisteredCells | None = None):
    """Latent ``g(x)`` of rows ``idx`` of ``matrix``; basal ``g(x) - W l`` with ``cells``."""
    module.eval()

    def fn(x, start):
        z = module.encode(x)
        if cells is not None:
            codes = cells.codes[idx[start : start + len(x)]]
            lab = label_batch(cells.float_label_rows, codes, device)
            z = z - module._map_labels(module.shift, lab)
        return z

    return map_rows(fn, RowGatherer(matrix), idx, batch_size, device)


def counterfactual(module, device, matrix, cells: RegisteredCells, target, seed, batch_size):
    """Every cell of ``matrix`` (conditions ``cells``) moved to the label vector ``target``."""
    target_t = torch.as_tensor(target, dtype=torch.float32, device=device)
    gen = make_generator(np.random.default_rng(seed), device)
    n = len(cells.codes)
    noise = BlockNoise(module, n, target_t, gen)
    module.eval()

    def fn(x, start):
        lab = label_batch(cells.float_label_rows, cells.codes[start : start + len(x)], device)
        return module.move(x, lab, target_t, noise=noise.take(start, len(x)))

    return map_rows(fn, RowGatherer(matrix), np.arange(n), batch_size, device)


def source_cells(
    registration: Registration,
    cells: RegisteredCells,
    source: str | None,
    context: str | None,
    default_source,
) -> np.ndarray:
    """Rows of the registered cells (``cells``) a prediction moves (``source``, ``context``).

    ``None``: the model's ``default_source`` (every cell when that is ``None``, as for models
    saved before it existed), with every cell of the context when the chosen source has none
    there. ``"all"`` is every cell, unless a perturbation is called ``"all"``.
    """
    enc = cells.encoded
    if source is not None and not isinstance(source, str):
        raise TypeError(
            f"source={source!r} has type {type(source).__name__}; use None (the model's "
            "default_source_), 'all', the control label or a training condition."
        )
    chosen = source is None and default_source is not None
    if chosen:
        source = default_source
    every_cell = source is None or (
        source == "all" and (chosen or "all" not in registration.vocabulary)
    )
    mask = np.ones(len(enc.codes), dtype=bool)
    if not every_cell:
        mask &= np.isin(enc.codes, _source_conditions(registration, enc, source))
    in_context = None
    if context is not None:
        in_context = cells.context_codes == _context_code(cells, context)
        mask &= in_context
    idx = np.flatnonzero(mask)
    if len(idx) == 0 and chosen and in_context is not None:
        idx = np.flatnonzero(in_context)
    if len(idx) == 0:
        raise ValueError(f"No source cells for source={source!r} in context={context!r}.")
    return idx


def _context_code(cells: RegisteredCells, context: str) -> int:
    if context not in cells.context_names:
        raise ValueError(f"context={context!r} is unknown; known contexts: {cells.context_names}.")
    return cells.context_names.index(context)


def _source_conditions(registration: Registration, enc, source: str) -> np.ndarray:
    """Condition codes of the registered cells whose label is that of ``source``."""
    vec = label_vector(registration._parse(source), registration.vocabulary)
    hits = match_labels(vec, enc.label_rows).indices
    if len(hits) == 0 and match_labels(vec, registration.label_matrix).nnz:
        present = sorted(set(enc.conditions))[:10]
        raise ValueError(
            f"source={source!r} is a training condition, but the AnnData the model "
            f"holds now has no cells of it (it has {present}). Pass an AnnData with "
            "those cells (e.g. PDAE.load(path, adata) with the training data), use "
            "source='all' for every cell, or one of the conditions it has."
        )
    if len(hits) == 0:
        raise ValueError(
            f"source={source!r} is not a condition of the registered data; use None, "
            f"the control {registration.control_group!r} or one of {enc.conditions[:10]}."
        )
    return hits


def predict_cells(
    module,
    device,
    registration: Registration,
    cells: RegisteredCells,
    targets: Targets,
    src_idx,
    *,
    n_cells,
    seed,
    batch_size,
    scale,
    sparse,
    max_bytes,
) -> AnnData:
    """``n_cells`` cells per target, moved by ``module`` from the registered cells ``src_idx``.

    ``cells``: the registered cells' conditions (``registration.cells``). The decoder noise
    and the source draws come from ``seed``; with ``scale="counts"`` the moved cells also get
    their source cells' count scale (``layers["counts"]``). A prediction larger than
    ``max_bytes`` raises ``ValueError`` with the estimate.
    """
    gather = RowGatherer(registration.matrix)
    x_out, picks, sizes = move_to_targets(
        module,
        device,
        cells,
        gather,
        targets.labels,
        src_idx,
        n_cells,
        seed,
        batch_size,
        max_bytes,
    )
    layers, values = None, None
    if scale == "counts":
        count_rows = RowGatherer(get_matrix(registration.adata, registration.counts_layer))
        groups = cells.codes[picks]
        layers, values = count_scale(x_out, gather, count_rows, picks, groups, batch_size, seed)
    adata = registration.adata
    return prediction_adata(
        x_out,
        adata.var,
        perturbation_key=registration.perturbation_key,
        targets=targets.names,
        sizes=sizes,
        source_conditions=np.asarray(cells.encoded.conditions, dtype=object)[cells.codes[picks]],
        source_cells=adata.obs_names.to_numpy()[picks],
        obs_names=obs_names_of(targets.names, targets.dosages, sizes, seed),
        uns={UNS_METHOD: "pdae", UNS_EXTRAPOLATION: targets.table.reset_index()},
        dosage_key=registration.dosage_key,
        dosages=targets.dosages,
        label_columns={k: adata.obs[k].to_numpy()[picks] for k in registration.context_keys},
        value_columns=values,
        layers=layers,
        sparse=sparse,
    )


def move_to_targets(
    module,
    device,
    cells: RegisteredCells,
    gather,
    labels,
    src_idx,
    n_cells,
    seed,
    batch_size,
    max_bytes,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Move ``n_cells`` of the cells ``src_idx`` to each target label vector of ``labels``.

    ``cells``: the conditions of the rows ``gather`` reads (registered or new cells). Returns
    the moved cells ``(n_targets * n, n_genes)`` (float32, target by target), the source row
    of each and the number of cells per target; ``n`` is ``n_cells``, or ``len(src_idx)``
    for ``None``. Refuses a prediction above ``max_bytes`` (:func:`check_prediction_memory`).
    """
    n_genes = module.n_input
    n = len(src_idx) if n_cells is None else int(n_cells)
    check_prediction_memory(n, len(labels), n_genes, max_bytes)
    rng = np.random.default_rng(seed)
    gen = make_generator(rng, device)
    x_out = np.empty((n * len(labels), n_genes), dtype=np.float32)
    rows = [
        move_sources(
            module,
            device,
            target,
            src_idx,
            cells,
            gather,
            rng,
            gen,
            batch_size,
            out=x_out[t * n : (t + 1) * n],
        )
        for t, target in enumerate(labels)
    ]
    return x_out, np.concatenate(rows), [len(r) for r in rows]


def registered_baseline(
    registration: Registration, adata, targets, method, n_cells, seed, context
):
    """:func:`~pdae_sc.tl.predict_baseline` on ``adata`` as registered.

    It uses the registered label column, control, delimiter and layer and, with ``context``,
    the one context key.
    """
    ctx = embedding_argument(registration, method)
    if context is not None:
        ctx.update({"context_key": registration.context_keys[0], "context": context})
    return predict_baseline(
        adata,
        list(targets),
        method=method,
        perturbation_key=registration.perturbation_key,
        control_group=registration.control_group,
        delimiter=registration.delimiter,
        layer=registration.layer,
        n_cells=n_cells,
        seed=seed,
        **ctx,
    )


def embedding_argument(registration: Registration, method: str) -> dict:
    """``perturbation_embedding=`` of a baseline: the model's embedding for ``linear``.

    The linear model with embeddings (:func:`~pdae_sc.tl.predict_baseline`), its weights
    applied to the effects measured in the target context (``placed_effects="context"``):
    on the leave-genes-out benchmark the responses of ``rep_3`` of Papalexi were stronger
    than the effects fitted over every replicate (``benchmarks/results/unmeasured_genes.md``).
    Nothing for the other baselines or a model without an embedding.
    """
    embedding = registration.perturbation_embedding
    if embedding is None or method != "linear":
        return {}
    return {"perturbation_embedding": embedding.to_frame(), "placed_effects": "context"}


def baseline_prediction_available(registration: Registration) -> bool:
    """Whether :func:`predict_with_baseline` serves this model.

    It does not for a model with doses or several ``context_keys``.
    """
    return registration.dosage_key is None and len(registration.context_keys) <= 1


def baseline_applies(cells: RegisteredCells, method: str, context: str | None) -> bool:
    """Whether ``method`` can predict in ``context`` (the shifting ones need its controls)."""
    if method == "pooled" or context is None:
        return True
    return bool((cells.is_control & (cells.context_codes == _context_code(cells, context))).any())


def predict_with_baseline(
    registration: Registration,
    method,
    targets: Targets,
    *,
    n_cells,
    seed,
    scale,
    sparse,
    batch_size,
    chosen_method,
) -> AnnData:
    """``predict`` by a simple baseline fitted on the registered cells, in predict's format.

    ``chosen_method``: the method the model chose on its held-out conditions (recorded in
    ``uns["pdae"]``).
    """
    if not baseline_prediction_available(registration):
        raise ValueError(
            f"method={method!r}: a baseline prediction is not available for a model with "
            "doses or several context_keys; use method='pdae', or "
            "pdae.tl.predict_baseline on the data."
        )
    adata = registration.adata
    pred = registered_baseline(
        registration, adata, targets.names, method, n_cells, seed, targets.context
    )
    seen: dict[str, int] = {}
    names = []
    for t in pred.obs[registration.perturbation_key].astype(str):
        names.append(f"{t}_{seed}_{seen.setdefault(t, 0)}")
        seen[t] += 1
    pred.obs_names = names
    pred.uns["pdae"].update(
        {
            UNS_CHOSEN: method == chosen_method,
            UNS_EXTRAPOLATION: targets.table,
        }
    )
    if scale == "counts":  # on the count scale of each source cell, as predict does
        rows = adata.obs_names.get_indexer(pred.obs[SOURCE_CELL_KEY])
        count_rows = RowGatherer(get_matrix(adata, registration.counts_layer))
        gather = RowGatherer(registration.matrix)
        x_pred, groups = np.asarray(pred.X), registration.cells.codes[rows]
        layers, values = count_scale(x_pred, gather, count_rows, rows, groups, batch_size, seed)
        pred.layers["counts"] = layers["counts"]
        pred.obs[SIZE_FACTOR_KEY] = values[SIZE_FACTOR_KEY]
    if sparse:
        pred.X = sp.csr_matrix(pred.X)
    return pred


def fit_check(
    module, device, registration: Registration, *, n_conditions, n_cells, seed, batch_size
) -> pd.DataFrame:
    """The table of :meth:`pdae_sc.model.PDAE.check_fit` (see there)."""
    cells = registration.cells
    enc, ctx_codes = cells.encoded, cells.context_codes
    pairs = _largest_perturbed_groups(cells, n_conditions)
    rng = np.random.default_rng(seed)
    rows = RowGatherer(registration.matrix)
    gen = make_generator(rng, device)
    out = []
    for c, k in pairs:
        in_ctx = ctx_codes == k
        obs_idx = np.flatnonzero((enc.codes == c) & in_ctx)
        ctrl_idx = np.flatnonzero(cells.is_control & in_ctx)
        other_idx = np.flatnonzero((enc.codes != c) & in_ctx)
        obs_idx = np.sort(rng.choice(obs_idx, min(n_cells, len(obs_idx)), replace=False))
        x_obs = rows(obs_idx).astype(np.float64)
        # every prediction uses the same number of distinct cells, none twice
        n_src = min(n_cells, len(ctrl_idx), len(other_idx))
        moved = {}
        for name, src in (("pdae", ctrl_idx), ("pdae_all", other_idx)):
            pred = np.empty((n_src, x_obs.shape[1]), dtype=np.float32)
            target = cells.float_label_rows[c].toarray().ravel()
            move_sources(module, device, target, src, cells, rows, rng, gen, batch_size, out=pred)
            moved[name] = energy_distance(pred, x_obs)
        ctrl_idx = np.sort(rng.choice(ctrl_idx, n_src, replace=False))
        control = energy_distance(rows(ctrl_idx), x_obs)
        out.append(
            [enc.conditions[c], cells.context_names[k], len(obs_idx), *moved.values(), control]
        )
    columns = ["condition", "context", "n_cells", "energy_distance_pdae"]
    columns += ["energy_distance_pdae_all", "energy_distance_control"]
    table = pd.DataFrame(out, columns=columns)
    best = table[["energy_distance_pdae", "energy_distance_pdae_all"]].min(axis=1)
    table["pdae_better"] = best < table["energy_distance_control"]
    return table


def _largest_perturbed_groups(cells: RegisteredCells, n: int) -> list[tuple[int, int]]:
    """The ``n`` largest (perturbed condition, context) groups whose context has controls."""
    enc, ctx_codes = cells.encoded, cells.context_codes
    is_ctrl = enc.label_rows.getnnz(axis=1) == 0
    counts = pd.crosstab(enc.codes, ctx_codes)
    pairs = [
        (int(c), int(k), int(counts.loc[c, k]))
        for c in counts.index
        for k in counts.columns
        if not is_ctrl[c]
        and counts.loc[c, k] >= 2
        and counts.loc[np.flatnonzero(is_ctrl), k].sum() >= 2
    ]
    return [(c, k) for c, k, _ in sorted(pairs, key=lambda p: -p[2])[:n]]
