"""Queries and prediction of the PDAE model class (a mixin of :class:`pdae_sc.model.PDAE`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from pdae_sc.data._fields import context_codes
from pdae_sc.data._labels import (
    format_condition,
    label_vector,
    match_labels,
    parse_condition,
)
from pdae_sc.data._sampler import RowGatherer
from pdae_sc.data._span import extrapolation_table, training_span
from pdae_sc.data._validation import (
    check_seed,
    check_var_names_match,
    get_matrix,
)

from ._core import PDAECore, label_batch
from ._mudata import is_subset_copy
from ._prediction import (
    BlockNoise,
    check_prediction_memory,
    counts_matrix,
    make_generator,
    prediction_adata,
    resolve_seed,
    source_size_factors,
    warn_outside_span,
)
from ._selection import SIMPLE_METHODS, registered_baseline

__all__ = ["InferenceMixin"]


def _check_indices(indices, n_obs: int) -> np.ndarray:
    """``indices`` as int64 positions in ``[0, n_obs)`` (a boolean mask of length ``n_obs``)."""
    if indices is None:
        return np.arange(n_obs)
    idx = np.asarray(indices)
    if idx.dtype == bool and idx.ndim == 1 and len(idx) == n_obs:
        return np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(
            f"indices must be integer positions (or a boolean mask of length {n_obs}), got "
            f"an array of dtype {idx.dtype} and shape {idx.shape}."
        )
    bad = idx[(idx < 0) | (idx >= n_obs)]
    if bad.size:
        raise IndexError(
            f"indices {bad[:5].tolist()} are outside the {n_obs} cells of adata; use "
            f"positions 0 to {n_obs - 1}."
        )
    return idx.astype(np.int64)


class InferenceMixin(PDAECore):
    """Latents, shifts, the extrapolation check and prediction of :class:`~pdae_sc.model.PDAE`."""

    #: Largest predicted expression matrix (bytes) :meth:`predict` builds at once (2 GiB);
    #: larger requests raise ``ValueError`` with the estimate. Raise it for a machine with
    #: more memory, e.g. ``PDAE.max_prediction_bytes = 16 * 2**30``.
    max_prediction_bytes: int = 2 * 2**30

    def _query_data(self, adata: AnnData | None, *, labels: bool) -> tuple[AnnData, object]:
        """The AnnData of a query and its registered expression matrix.

        ``labels=False`` (the query reads only expression): an AnnData other than the
        registered one is checked for the training genes only and read from the registered
        layer; its labels (if any) are not read, so it needs no perturbation column.
        """
        if labels or adata is None or adata is self.adata:
            adata = self._validate(adata)
            return adata, self._matrix(adata)
        if not isinstance(adata, AnnData):
            raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
        genes = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY)["column_names"]
        check_var_names_match(genes, adata)
        layer = self.adata_manager.registry["setup_args"]["layer"]
        return adata, get_matrix(adata, layer)

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        *,
        basal: bool = False,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Latent ``g(x)`` of each cell, or its basal latent ``g(x) - W l`` with ``basal=True``.

        Parameters
        ----------
        adata
            AnnData with the training genes (default: the registered one). It needs the
            perturbation column (and doses) only with ``basal=True``; new data without labels
            are read from the layer registered in :meth:`setup_anndata`.
        indices
            Rows of ``adata`` to encode (integer positions); default every cell.
        basal
            Subtract each cell's own perturbation shift.
        batch_size
            Cells per forward pass (default: 4,096 on a GPU; on the CPU fewer for many
            genes, 2,048 at 2,000 genes, so that a batch stays within 16 MB).

        Returns
        -------
        Array of shape ``(n_cells, n_latent)`` (``len(indices)`` rows with ``indices``).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> model.get_latent_representation().shape
        (200, 8)
        >>> train.obsm["X_pdae_basal"] = model.get_latent_representation(basal=True)

        New cells (here without labels) are encoded by the trained encoder:

        >>> new = adata[adata.obs["perturbation"] == "P0+P1"].copy()
        >>> del new.obs["perturbation"]
        >>> model.get_latent_representation(new, indices=[0, 1, 2]).shape
        (3, 8)
        """
        self._check_trained()
        batch_size = self._batch_size(batch_size)
        adata, matrix = self._query_data(adata, labels=basal)
        idx = _check_indices(indices, adata.n_obs)
        label_rows = codes = None
        if basal:
            enc, _, _ = self._encode(adata)
            label_rows, codes = enc.label_rows.astype(np.float32), enc.codes[idx]

        def fn(x, start):
            z = self.module.encode(x)
            if label_rows is not None:
                lab = label_batch(label_rows, codes[start : start + len(x)], self.device)
                z = z - self.module._map_labels(self.module.shift, lab)
            return z

        self.module.eval()
        return self._map(fn, RowGatherer(matrix), idx, batch_size)

    def get_perturbation_embedding(self) -> pd.DataFrame:
        """Latent shift of each elementary perturbation (columns of ``W``).

        Returns
        -------
        DataFrame, perturbations × latent dimensions (``latent_0`` ...). The shift of a
        combination is the sum of its rows (times doses).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> emb = model.get_perturbation_embedding()
        >>> emb.shape
        (4, 8)
        >>> shift_p0_p1 = emb.loc["P0"] + emb.loc["P1"]  # the shift the model adds for "P0+P1"
        """
        self._check_trained()
        w = self.module.shift_matrix.detach().cpu().numpy().T
        return pd.DataFrame(
            w,
            index=pd.Index(self.perturbations, name="perturbation"),
            columns=[f"latent_{i}" for i in range(w.shape[1])],
        )

    def _context_condition_counts(self) -> tuple[list[str], np.ndarray]:
        """Contexts and the cells of each training condition in each, ``(n_ctx, n_cond)``."""
        labels = self._labels
        return labels.contexts, labels.context_condition_counts

    def _context_name(self, context: object) -> str | None:
        """The context name of ``context``: a name, a value of the context column, or a tuple.

        A value as seen in ``obs`` (e.g. the integer ``1`` of an integer column) is matched by
        its string; with several ``context_keys`` a tuple of values, one per key, is joined.
        """
        if context is None or isinstance(context, str):
            return context
        keys = list(self._labels.context_keys)
        if isinstance(context, tuple):
            if len(context) != len(keys):
                raise ValueError(
                    f"context={context!r} has {len(context)} values but the model has "
                    f"{len(keys)} context_keys {keys}; give one value per key."
                )
            return " | ".join(str(c) for c in context)
        if isinstance(context, bool | np.bool_) or not isinstance(
            context, int | float | np.integer | np.floating
        ):
            raise TypeError(
                f"context={context!r} has type {type(context).__name__}; use a context name "
                "(a value of the context column, or a tuple of values with several "
                "context_keys)."
            )
        return str(context)

    def _check_context(self, context: str) -> int:
        contexts, _ = self._context_condition_counts()
        if context not in contexts:
            raise ValueError(f"context={context!r} is unknown; known contexts: {contexts}.")
        return contexts.index(context)

    def check_extrapolation(
        self,
        perturbations: Sequence[str],
        *,
        dosages: Sequence[object] | None = None,
        context: str | None = None,
    ) -> pd.DataFrame:
        """Tell whether predictions for these targets can be trusted.

        A target is covered by the PDAE guarantee when its label vector lies in the linear
        span of the training labels (``in_span``); inside the span it is ``in_range`` when
        every dose stays within the training range (interpolation) and out of range otherwise
        (extrapolation, less accurate). Unknown perturbation names raise ``KeyError``.

        With contexts (``context_keys``), the shift is shared by all contexts, so the span is
        that of the labels of every context: a perturbation measured in one cell line can be
        predicted in another, from that cell line's cells. ``context`` adds whether the target
        was measured in that context; if it was measured only elsewhere its status is
        ``"seen in another context"``.

        Parameters
        ----------
        perturbations
            Target conditions, e.g. ``["A+B", "C"]``.
        dosages
            Optional doses per target.
        context
            Target context: a value of the context column as in ``obs`` (e.g. ``"K562"``,
            or ``1`` for an integer column); with several ``context_keys`` a tuple of values,
            one per key, or their names joined by ``" | "``.

        Returns
        -------
        DataFrame indexed by target with ``in_span``, ``span_distance``, ``in_range``,
        ``seen``, ``rank_train`` and ``status`` (see
        :func:`pdae_sc.tl.extrapolation_table`). With ``context`` also ``context``,
        ``seen_in_context`` (the target condition was measured in this context),
        ``n_cells_in_context`` (its cells there, 0 if none) and ``n_source_cells`` (training
        cells of the context, the default sources of :meth:`predict`).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> table = model.check_extrapolation(["P0+P1", "P2+P3"])
        >>> table[["in_span", "in_range", "seen", "status"]]
                in_span  in_range   seen             status
        target
        P0+P1      True      True  False  in span, in range
        P2+P3      True      True   True   seen in training
        >>> model.check_extrapolation(["P0"], dosages=[3.0])["status"].tolist()
        ['in span, out of range']
        """
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        targets = self.target_labels(perturbations, dosages)
        perturbations, dosages = list(perturbations), self._dosage_list(dosages)
        names = perturbations
        if dosages is not None:
            names = [p if d is None else f"{p} @ {d}" for p, d in zip(names, dosages, strict=True)]
        span = training_span(self._labels.label_matrix)  # factorised once per model
        context = self._context_name(context)
        if context is None:
            return extrapolation_table(span, targets, names=names)
        i = self._check_context(context)
        counts = self._context_condition_counts()[1][i]
        table = extrapolation_table(
            span, targets, names=names, context_train_labels=span.rows[counts > 0]
        )
        match = match_labels(targets, span.rows)
        table.insert(0, "context", context)
        table["n_cells_in_context"] = (match @ counts).astype(np.int64)
        table["n_source_cells"] = int(counts.sum())
        return table

    # ------------------------------------------------------------------ prediction
    def _source_cells(self, source: str | None, context: str | None):
        adata = self.adata
        enc, ctx_codes, ctx_names = self._encode(adata)
        mask = np.ones(adata.n_obs, dtype=bool)
        if source is not None and not isinstance(source, str):
            raise TypeError(
                f"source={source!r} has type {type(source).__name__}; use None (the model's "
                "default_source_), 'all', the control label or a training condition."
            )
        # None: the source set chosen after training (default_source_); old models: every cell
        chosen = source is None and getattr(self, "default_source_", None) is not None
        if chosen:
            source = self.default_source_
        # "all" means every cell, unless a perturbation of the model is called "all" (and
        # "all" is not the chosen default, which always means every cell)
        every_cell = source is None or (
            source == "all" and (chosen or "all" not in self._labels.vocabulary)
        )
        if not every_cell:
            lab = parse_condition(
                source,
                control_group=self._labels.control_group,
                delimiter=self._labels.delimiter,
            )
            vec = label_vector(lab, self._labels.vocabulary)
            hits = match_labels(vec, enc.label_rows).indices
            trained = self._labels.label_matrix
            if len(hits) == 0 and match_labels(vec, trained).nnz:
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
                    f"the control {self._labels.control_group!r} or one of "
                    f"{enc.conditions[:10]}."
                )
            mask &= np.isin(enc.codes, hits)
        if context is not None:
            if context not in ctx_names:
                raise ValueError(f"context={context!r} is unknown; known contexts: {ctx_names}.")
            mask &= ctx_codes == ctx_names.index(context)
        idx = np.flatnonzero(mask)
        if len(idx) == 0 and chosen and context is not None:
            # the chosen source (the control) has no cells in this context: every cell there
            idx = np.flatnonzero(ctx_codes == ctx_names.index(context))
        if len(idx) == 0:
            raise ValueError(f"No source cells for source={source!r} in context={context!r}.")
        return idx, enc

    def predict(
        self,
        perturbations: Sequence[str],
        *,
        dosages: Sequence[object] | None = None,
        n_cells: int | None = None,
        source: str | None = None,
        context: str | tuple | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
        scale: Literal["log1p", "counts"] = "log1p",
        sparse: bool | None = False,
        method: str = "auto",
    ) -> AnnData:
        """Sample cells under each target condition, e.g. an unseen combination ``"A+B"``.

        Source cells are encoded, their own shift is subtracted, the target's shift is added
        and the result is decoded with fresh noise; for more cells than sources, sources are
        decoded again with new noise.

        Parameters
        ----------
        perturbations
            Target conditions (any combination of known perturbations).
        dosages
            Optional doses, a list with one per target (same forms as in
            :meth:`setup_anndata`; ``None`` for dose 1). A target whose doses are all 0 is the
            control and is labelled as the control (with a warning); a token at dose 0 is
            dropped from the label.
        n_cells
            Cells per target (default: the number of source cells). The predicted matrix
            must fit in :attr:`max_prediction_bytes` (2 GiB by default); a larger request
            raises ``ValueError`` with the estimate: predict in chunks instead.
        source
            The cells that are moved: ``"all"`` (every registered cell of the context), the
            control label, or a training condition. ``None`` (default): the source set that
            :meth:`check_fit` found closer to the model's own training conditions after
            training, :attr:`default_source_` (``"all"`` or the control label; ``"all"``
            for a model trained with ``check_fit=False``), with every cell of the context
            when the control has none there. If a perturbation is called ``"all"``,
            ``"all"`` is that condition.
        context
            Take the sources from one context (see ``context_keys``) and predict there; the
            target may have been measured only in other contexts (the shift is shared).
            A value of the context column as seen in ``obs`` (``1`` for an integer column),
            or a tuple of values with several ``context_keys``. Default: sources from all
            contexts.
        seed
            Seed of the source draw and the decoder noise; the same seed gives the same cells,
            whatever ``batch_size`` or device (the noise is drawn in fixed blocks of cells whose
            size depends only on the gene count).
            ``None``: drawn from torch's global generator, which ``scvi.settings.seed``
            seeds (a script that sets it predicts the same cells on every run).
        batch_size
            Cells per forward pass; sources are read and decoded in chunks of this size, so
            backed or sparse data are never densified as a whole (default: 4,096 on a GPU;
            on the CPU fewer for many genes, 2,048 at 2,000 genes, so that a batch stays
            within 16 MB).
        scale
            ``"log1p"``: the registered (log-normalised) expression in ``X``. ``"counts"``:
            also ``layers["counts"]``, each predicted cell put back on the count scale of its
            source cell, ``rint(expm1(x) * s)``, where ``s = total / target_sum`` is
            ``sum(counts) / sum(expm1(x))`` of the source cell over the registered genes.
            Needs ``counts_layer`` in :meth:`setup_anndata`. No noise is added: the decoder's
            samples already carry the cell-to-cell variation.
        sparse
            Return ``X`` as a CSR matrix (``True``), dense (``False``), or as the registered
            matrix is (``None``: CSR for sparse input). The residual decoders keep the zeros
            of count data, so CSR saves memory there; the prediction is computed dense first.
        method
            ``"auto"`` (default): the method chosen on the measured conditions held out of training
            (a baseline only when clearly closer), :attr:`prediction_method_` (``"pdae"`` when none
            were held out, see ``train(held_out_conditions=...)``). ``"pdae"``: the model's own
            cells. A simple baseline (``"linear"``, ``"additive"``, ``"mean_response"``,
            ``"pooled"``, ``"control"``): :func:`pdae_sc.tl.predict_baseline` on the registered
            cells (every condition, in ``context`` if given), in the same format, with
            ``uns["pdae"]["method"]`` naming it. A baseline's cells are control (or pooled) cells,
            shifted; ``source`` does not apply to them.

        Returns
        -------
        AnnData of predicted cells with the training genes and their ``var`` (gene symbols,
        ``highly_variable``, ...): ``X`` (float32, dense unless ``sparse``),
        ``obs[perturbation_key]`` (the target, named as the training condition with that
        label vector if there is one, e.g. ``"P1+P0"`` as ``"P0+P1"``; categorical),
        ``obs[dosage_key]`` (if doses are registered), ``obs["pdae_source"]`` (condition of
        the source cell, categorical), ``obs["pdae_source_cell"]`` (its obs name), the
        context columns; the cells are named ``"{target}_{seed}_{i}"``, so predictions of
        several calls (with different seeds) can be joined with :func:`anndata.concat`;
        and ``uns["pdae"]`` with ``method="pdae"`` and
        ``extrapolation`` (the :meth:`check_extrapolation` table, for ``context`` if given).
        With ``scale="counts"`` also ``layers["counts"]`` (CSR, float32 integers) and
        ``obs["pdae_size_factor"]``. Warns with :class:`ExtrapolationWarning` for targets
        outside the span of the training labels, and for targets whose doses lie outside
        the range seen in training.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> pred = model.predict(["P0+P1"], n_cells=100, seed=0)
        >>> pred
        AnnData object with n_obs × n_vars = 100 × 100
            obs: 'perturbation', 'pdae_source', 'pdae_source_cell'
            uns: 'pdae'
        >>> pred.uns["pdae"]["extrapolation"]["status"].tolist()
        ['in span, in range']

        Score the prediction against the measured cells, next to a baseline:

        >>> additive = pdae.tl.predict_baseline(train, ["P0+P1"], method="additive", seed=0)
        >>> scores = pdae.tl.evaluate(pred, adata, adata_control=train)
        >>> scores_additive = pdae.tl.evaluate(additive, adata, adata_control=train)
        """
        self._check_trained()
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        chosen = method == "auto"
        if chosen:
            method = getattr(self, "prediction_method_", None) or "pdae"
        if method not in ("pdae", *SIMPLE_METHODS):
            raise ValueError(
                f"method={method!r}; use 'auto' (model.prediction_method_), 'pdae' or a "
                f"simple baseline {list(SIMPLE_METHODS)}."
            )
        if n_cells is not None and (
            not isinstance(n_cells, int | np.integer) or isinstance(n_cells, bool) or n_cells <= 0
        ):
            raise ValueError(f"n_cells={n_cells!r}; ask for a positive number of cells.")
        batch_size = self._batch_size(batch_size)
        seed = resolve_seed(check_seed(seed))
        if sparse is not None and not isinstance(sparse, bool | np.bool_):
            raise TypeError(f"sparse={sparse!r}; use True (CSR), False (dense) or None.")
        if scale not in ("log1p", "counts"):
            raise ValueError(f"scale={scale!r}; use 'log1p' (as registered) or 'counts'.")
        counts_layer = self._labels.counts_layer
        if scale == "counts" and counts_layer is None:
            raise ValueError(
                "scale='counts' needs the raw counts of the source cells: register them with "
                "setup_anndata(..., counts_layer='counts') (pdae.pp.normalize_counts keeps "
                "the counts in adata.layers['counts'])."
            )
        context = self._context_name(context)
        table = self.check_extrapolation(perturbations, dosages=dosages, context=context)
        targets = self.target_labels(perturbations, dosages)
        perturbations, dosages = self._canonical_labels(perturbations, dosages)
        warn_outside_span(table)
        src_idx, enc = self._source_cells(source, context)
        if method != "pdae" and chosen and not self._baseline_applies(method, context, enc):
            warnings.warn(
                f"The held-out conditions chose the {method!r} baseline, but it needs control "
                f"cells in context {context!r} and there are none; predicting with PDAE.",
                UserWarning,
                stacklevel=2,
            )
            method = "pdae"
        if method != "pdae":
            return self._predict_with_baseline(
                method, perturbations, dosages, n_cells, context, seed, table, scale, sparse
            )
        n = len(src_idx) if n_cells is None else int(n_cells)
        check_prediction_memory(
            n, len(targets), self.summary_stats.n_vars, self.max_prediction_bytes
        )
        rng = np.random.default_rng(seed)
        gen = make_generator(rng, self.device)
        gather = RowGatherer(self._matrix(self.adata))
        label_rows = enc.label_rows.astype(np.float32)  # sparse: K can be genome-wide
        x_out = np.empty((n * len(targets), self.summary_stats.n_vars), dtype=np.float32)
        rows = [
            self._move_sources(
                target,
                src_idx,
                enc.codes,
                label_rows,
                gather,
                rng,
                gen,
                batch_size,
                out=x_out[t * n : (t + 1) * n],
            )
            for t, target in enumerate(targets)
        ]
        layers = obs_extra = None
        if scale == "counts":
            count_rows = RowGatherer(get_matrix(self.adata, counts_layer))
            factors = source_size_factors(gather, count_rows, np.concatenate(rows), batch_size)
            layers = {"counts": counts_matrix(x_out, factors, batch_size)}
            obs_extra = {"pdae_size_factor": factors.astype(np.float32)}
        state = self._labels
        return prediction_adata(
            self.adata,
            perturbation_key=self.adata_manager.registry["setup_args"]["perturbation_key"],
            perturbations=perturbations,
            dosages=dosages,
            dosage_key=state.dosage_key,
            context_keys=state.context_keys,
            enc=enc,
            picks=rows,
            x=x_out,
            table=table,
            layers=layers,
            obs_extra=obs_extra,
            seed=seed,
            sparse=bool(sp.issparse(self._matrix(self.adata))) if sparse is None else sparse,
        )

    def _baseline_applies(self, method: str, context: str | None, enc) -> bool:
        """Whether ``method`` can predict in ``context`` (the shifting ones need its controls)."""
        if method == "pooled" or context is None:
            return True
        ctx_codes, ctx_names = context_codes(self.adata.obs, self._labels.context_keys)
        is_ctrl = (enc.label_rows.getnnz(axis=1) == 0)[enc.codes]
        return bool((is_ctrl & (ctx_codes == ctx_names.index(context))).any())

    def _predict_with_baseline(
        self, method, perturbations, dosages, n_cells, context, seed, table, scale, sparse
    ) -> AnnData:
        """``predict`` by a simple baseline fitted on the registered cells."""
        labels = self._labels
        setup = self.adata_manager.registry["setup_args"]
        if labels.dosage_key is not None or len(labels.context_keys) > 1:
            raise ValueError(
                f"method={method!r}: a baseline prediction is not available for a model with "
                "doses or several context_keys; use method='pdae', or "
                "pdae.tl.predict_baseline on the data."
            )
        pred = registered_baseline(self, self.adata, perturbations, method, n_cells, seed, context)
        if context is not None:
            pred.obs[labels.context_keys[0]] = pd.Categorical([context] * pred.n_obs)
        seen: dict[str, int] = {}
        names = []
        for t in pred.obs[setup["perturbation_key"]].astype(str):
            names.append(f"{t}_{seed}_{seen.setdefault(t, 0)}")
            seen[t] += 1
        pred.obs_names = names
        pred.uns["pdae"] = {
            "method": method,
            "chosen_on_held_out_conditions": method == getattr(self, "prediction_method_", None),
            "extrapolation": table,
        }
        if scale == "counts":  # on the count scale of each source cell, as predict does
            batch_size = self._batch_size(None)
            rows = self.adata.obs_names.get_indexer(pred.obs["pdae_source_cell"])
            factors = source_size_factors(
                RowGatherer(self._matrix(self.adata)),
                RowGatherer(get_matrix(self.adata, labels.counts_layer)),
                rows,
                batch_size,
            )
            pred.layers["counts"] = counts_matrix(np.asarray(pred.X), factors, batch_size)
            pred.obs["pdae_size_factor"] = factors.astype(np.float32)
        if sparse:
            pred.X = sp.csr_matrix(pred.X)
        return pred

    def get_counterfactual(
        self,
        adata: AnnData | None = None,
        *,
        perturbation: str,
        dosage: object | None = None,
        layer_added: str | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Each cell's predicted expression under ``perturbation``, like scvi-tools' queries.

        Parameters
        ----------
        adata
            AnnData with the training genes and their labels (default: the registered one).
        perturbation
            Target condition, e.g. ``"A+B"`` or the control label.
        dosage
            Optional dose(s) of the target.
        layer_added
            Also write the result to ``adata.layers[layer_added]``; ``None`` (the default)
            writes nothing. A model set up with :meth:`setup_mudata` on part of the cells
            holds a copy of those cells, so with ``adata=None`` a name raises ``ValueError``
            (the layer would not show in the MuData).
        seed
            Seed of the decoder noise (``None``: follows ``scvi.settings.seed``, as in
            :meth:`predict`).
        batch_size
            Cells per forward pass (default as in :meth:`predict`).

        Returns
        -------
        Array of shape ``(n_cells, n_genes)`` (float32). With ``layer_added`` the same values
        are written to ``adata.layers[layer_added]``; nothing else is changed.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
        >>> train = adata[adata.obs["perturbation"] != "P0+P1"].copy()  # hold out a double
        >>> pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(train, n_latent=8)
        >>> model.train(max_epochs=1, enable_progress_bar=False)
        >>> x = model.get_counterfactual(perturbation="ctrl", layer_added=None, seed=0)
        >>> x.shape
        (200, 100)
        >>> _ = model.get_counterfactual(perturbation="ctrl", layer_added="unperturbed", seed=0)
        >>> train.layers["unperturbed"].shape
        (200, 100)
        """
        self._check_trained()
        batch_size = self._batch_size(batch_size)
        seed = resolve_seed(check_seed(seed))
        hidden_copy = adata is None and is_subset_copy(self.adata)
        if layer_added is not None and not isinstance(layer_added, str):
            raise TypeError(f"layer_added={layer_added!r}; use a layer name (str) or None.")
        elif layer_added is not None and hidden_copy:
            raise ValueError(
                f"layer_added={layer_added!r}: the model was set up with setup_mudata on the "
                "labelled cells only and holds a copy of them, so the layer would not appear "
                "in the MuData. Use the returned array (layer_added=None; its rows are the "
                "cells model.adata.obs_names), or pass adata=model.adata to write into the "
                "copy deliberately."
            )
        adata = self._validate(adata)
        dosages = None if dosage is None else [dosage]
        target = self.target_labels([perturbation], dosages)[0]
        warn_outside_span(self.check_extrapolation([perturbation], dosages=dosages))
        enc, _, _ = self._encode(adata)
        label_rows = enc.label_rows.astype(np.float32)
        target_t = torch.as_tensor(target, dtype=torch.float32, device=self.device)
        gen = make_generator(np.random.default_rng(seed), self.device)
        noise = BlockNoise(self.module, adata.n_obs, target_t, gen)
        self.module.eval()

        def fn(x, start):
            lab = label_batch(label_rows, enc.codes[start : start + len(x)], self.device)
            return self.module.move(x, lab, target_t, noise=noise.take(start, len(x)))

        out = self._map(fn, RowGatherer(self._matrix(adata)), np.arange(adata.n_obs), batch_size)
        if layer_added is not None:
            adata.layers[layer_added] = out
        return out

    def _canonical_labels(
        self, perturbations: list[str], dosages: list[object] | None
    ) -> tuple[list[str], list[object] | None]:
        """Labels of the targets as the predicted cells carry them.

        A target with the label vector of a training condition gets that condition's name
        and doses as the registered data spell them (``"P1+P0"`` and ``"P0+ctrl"`` come back
        as ``"P0+P1"`` and ``"P0"`` if those are the training labels); any other target is
        written with its perturbations in the order of :attr:`perturbations`, control tokens
        dropped. Tokens at dose 0 are dropped too (with a warning), so the output does not
        call control cells ``P0``.
        """
        state = self._labels
        kwargs = {"control_group": state.control_group, "delimiter": state.delimiter}
        vocabulary = list(state.vocabulary)
        train = state.label_matrix
        labels, doses, changed = [], [], []
        for t, p in enumerate(perturbations):
            d = None if dosages is None else dosages[t]
            with_dose = parse_condition(p, dosage=d, **kwargs)
            if d is not None and len(with_dose) < len(parse_condition(p, **kwargs)):
                changed.append((p, d, t))
            vec = label_vector(with_dose, vocabulary)
            hits = match_labels(vec, train).indices
            if len(hits):
                name, dose = state.conditions[hits[0]], state.dosages[hits[0]]
            else:
                ordered = {k: with_dose[k] for k in vocabulary if k in with_dose}
                name, dose = format_condition(ordered, **kwargs)
            labels.append(name)
            doses.append(dose)
        if changed:
            warnings.warn(
                "Targets with a dose of 0 are predicted without those perturbations: "
                + ", ".join(f"{p!r} at dose {d!r} is {labels[t]!r}" for p, d, t in changed)
                + "; the predicted cells are labelled accordingly.",
                UserWarning,
                stacklevel=3,
            )
        return labels, doses
