"""What ``setup_anndata`` recorded, as one object: :class:`Registration` (``PDAE.registration``).

It is the only place that reads scvi-tools' registry of a PDAE (the setup arguments and the
perturbation field's state): the label column and layers, the vocabulary, the training
conditions and contexts, the per-cell condition and context codes (computed once) and the
span of the training labels (factorised once). :meth:`Registration.targets` parses prediction
targets once into everything a prediction needs (:class:`Targets`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scvi import REGISTRY_KEYS

from pdae_sc.data._fields import PERTURBATION_REGISTRY_KEY, PerturbationField, context_codes
from pdae_sc.data._labels import (
    EncodedConditions,
    as_label_rows,
    format_condition,
    label_rows,
    match_labels,
    parse_condition,
)
from pdae_sc.data._least_squares import linear_effects
from pdae_sc.data._perturbation_embedding import (
    EmbeddingMap,
    PerturbationEmbedding,
    check_embedding_table,
    embedding_label_rows,
    fit_embedding_map,
)
from pdae_sc.data._span import (
    STATUS_EMBEDDING,
    LabelSpan,
    extrapolation_table,
    training_span,
)
from pdae_sc.data._validation import (
    dosage_list,
    target_list,
)

__all__ = ["RegisteredCells", "Registration", "Targets", "setup_arguments"]


def setup_arguments(registry: Mapping) -> dict:
    """The arguments ``setup_anndata`` was called with, from a (saved or live) registry."""
    return dict(registry["setup_args"])


@dataclass(frozen=True)
class RegisteredCells:
    """Condition and context of every cell of one AnnData, over the model's vocabulary.

    Parameters
    ----------
    encoded
        The cells' condition codes, the conditions' names and label vectors.
    context_codes
        Context code of each cell, shape ``(n_cells,)``.
    context_names
        Name of each context code.
    """

    encoded: EncodedConditions
    context_codes: np.ndarray
    context_names: list[str]

    @property
    def codes(self) -> np.ndarray:
        """Condition code of each cell."""
        return self.encoded.codes

    @cached_property
    def is_control(self) -> np.ndarray:
        """Whether each cell is a control cell (its label vector is zero)."""
        return (self.encoded.label_rows.getnnz(axis=1) == 0)[self.encoded.codes]

    @cached_property
    def float_label_rows(self) -> sparse.csr_matrix:
        """Label vector of each condition as float32 CSR (the rows a batch of labels takes)."""
        return self.encoded.label_rows.astype(np.float32)


@dataclass(frozen=True)
class Targets:
    """Prediction targets, parsed once (:meth:`Registration.targets`).

    Parameters
    ----------
    labels
        Label vector of each target, ``(n_targets, K)``.
    names
        Each target as predicted cells carry it: the name of the training condition with its
        label vector, else its perturbations in vocabulary order.
    dosages
        Dose string of each target (``None`` for dose 1), parallel to ``names``.
    display
        Row names of the extrapolation table (the targets as asked, ``"A @ 0.5"`` with doses).
    context
        The context predicted in (``None``: every context).
    context_index
        Its index in :attr:`Registration.contexts` (``None``: every context).
    table
        :func:`~pdae_sc.data._span.extrapolation_table` of the targets.
    from_embedding
        Per target, the never-measured perturbations placed by the perturbation embedding
        (empty lists without such perturbations).
    """

    labels: np.ndarray
    names: list[str]
    dosages: list[str | None]
    display: list[str]
    context: str | None
    context_index: int | None
    table: pd.DataFrame = field(repr=False)
    from_embedding: list[list[str]] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Registration:
    """Everything ``setup_anndata`` recorded for a model, as named attributes.

    Built by :attr:`pdae_sc.model.PDAE.registration` from the model's scvi-tools registry;
    read-only. The per-cell codes of the registered AnnData (:attr:`cells`) and the span of
    the training labels (:attr:`span`) are computed on first use and kept.

    Parameters
    ----------
    perturbation_key, control_group, delimiter, dosage_key, layer, counts_layer
        As given to ``setup_anndata``.
    context_keys
        Context columns (empty without contexts).
    vocabulary
        The elementary perturbations (columns of the label matrix).
    conditions, dosages
        Name and dose string (``None`` for dose 1) of each training condition.
    label_matrix
        Label vector of each training condition, ``(n_conditions, K)`` (sparse CSR).
    condition_counts
        Cells of each training condition.
    contexts
        Context names.
    context_condition_counts
        Cells of each condition in each context, ``(n_contexts, n_conditions)``.
    matrix_stats
        Range of the registered expression (``min``, ``max``, ``all_integer``), or ``None``
        for a registry of pdae-sc 0.1.0.
    genes
        The registered genes (``var_names``), in order.
    setup_kwargs
        The arguments ``setup_anndata`` was called with (to register other data alike).
    expression_embedding
        The built-in embedding computed at setup (``perturbation_embedding="expression"``):
        ``{"source", "names", "vectors"}``, else ``None``.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=10, seed=0)
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> registration = pdae.model.PDAE(adata).registration
    >>> registration.control_group, registration.conditions[:3]
    ('ctrl', ['ctrl', 'P0', 'P1'])
    >>> registration.targets(["P2+P0"]).names  # as the predicted cells will be named
    ['P0+P2']
    """

    perturbation_key: str
    control_group: str
    delimiter: str
    dosage_key: str | None
    layer: str | None
    counts_layer: str | None
    context_keys: list[str]
    vocabulary: list[str]
    conditions: list[str]
    dosages: list[str | None]
    label_matrix: sparse.csr_matrix = field(repr=False)
    condition_counts: np.ndarray = field(repr=False)
    contexts: list[str] = field(repr=False)
    context_condition_counts: np.ndarray = field(repr=False)
    matrix_stats: dict | None = field(repr=False)
    genes: list[str] = field(repr=False)
    setup_kwargs: dict = field(repr=False)
    expression_embedding: dict | None = field(default=None, repr=False)
    _manager: object = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def _from_manager(cls, manager) -> Registration:
        """Read an ``AnnDataManager`` of a PDAE (what ``setup_anndata`` registered)."""
        setup = setup_arguments(manager.registry)
        state = manager.get_state_registry(PERTURBATION_REGISTRY_KEY)
        genes = manager.get_state_registry(REGISTRY_KEYS.X_KEY)["column_names"]
        registration = cls(
            perturbation_key=setup["perturbation_key"],
            control_group=state["control_group"],
            delimiter=state["delimiter"],
            dosage_key=state["dosage_key"],
            layer=setup.get("layer"),
            counts_layer=state["counts_layer"],
            context_keys=list(state["context_keys"] or []),
            vocabulary=list(state["vocabulary"]),
            conditions=list(state["conditions"]),
            dosages=list(state["dosages"]),
            label_matrix=as_label_rows(state["label_matrix"]),
            condition_counts=np.asarray(state["condition_counts"]),
            contexts=list(state["contexts"]),
            context_condition_counts=np.asarray(state["context_condition_counts"]),
            matrix_stats=state["matrix_stats"],
            genes=list(genes),
            setup_kwargs=setup,
            expression_embedding=state.get("expression_embedding"),
        )
        object.__setattr__(registration, "_manager", manager)
        return registration

    # ------------------------------------------------------------------ cells
    @property
    def adata(self) -> AnnData:
        """The registered AnnData."""
        return self._manager.adata

    @property
    def matrix(self):
        """The registered expression matrix (``X`` or the registered layer)."""
        return self._manager.get_from_registry(REGISTRY_KEYS.X_KEY)

    @cached_property
    def _cells(self) -> RegisteredCells:
        return self._encode_unchecked(self.adata, self._manager)

    @property
    def cells(self) -> RegisteredCells:
        """Condition and context codes of the registered cells (encoded once).

        Raises ``ValueError`` when the label columns changed since registration.
        """
        self._check_unchanged(self._manager)
        return self._cells

    def _encode(self, adata: AnnData, manager) -> RegisteredCells:
        """Condition and context codes of ``adata``, registered by ``manager`` (checked)."""
        if manager is self._manager:
            return self.cells
        self._check_unchanged(manager)
        return self._encode_unchecked(adata, manager)

    def _encode_unchecked(self, adata: AnnData, manager) -> RegisteredCells:
        enc = self._field(manager).encode(adata, vocabulary=self.vocabulary)
        codes, names = context_codes(adata.obs, self.context_keys)
        return RegisteredCells(enc, codes, names)

    @staticmethod
    def _field(manager) -> PerturbationField:
        return next(f for f in manager.fields if f.registry_key == PERTURBATION_REGISTRY_KEY)

    def _check_unchanged(self, manager) -> None:
        state = manager.get_state_registry(PERTURBATION_REGISTRY_KEY)
        self._field(manager).check_unchanged(manager.adata, state)

    # ------------------------------------------------------------------ labels
    @property
    def span(self) -> LabelSpan:
        """Span of the training labels (factorised once per model)."""
        return training_span(self.label_matrix)

    @cached_property
    def perturbation_embedding(self) -> PerturbationEmbedding | None:
        """The prior embedding of perturbations given to ``setup_anndata`` (``None`` if none)."""
        given = self.setup_kwargs.get("perturbation_embedding")
        if given is None:
            return None
        if isinstance(given, str):
            saved = self.expression_embedding
            return PerturbationEmbedding(
                list(saved["names"]), np.asarray(saved["vectors"]), saved["source"]
            )
        table = check_embedding_table(given)
        return PerturbationEmbedding(
            table.index.tolist(), table.to_numpy(dtype=np.float32), "table"
        )

    @cached_property
    def embedding_map(self) -> EmbeddingMap:
        """Which measured perturbations a never-measured one resembles (fitted once).

        Ridge regression of the measured perturbations' effects (the linear least-squares
        fit on the registered cells, :func:`~pdae_sc.data._least_squares.linear_effects`) on
        their embeddings; see :mod:`pdae_sc.data._perturbation_embedding`.
        """
        embedding = self.perturbation_embedding
        if embedding is None:
            raise ValueError("The model has no perturbation_embedding (see setup_anndata).")
        cells = self.cells
        effects = linear_effects(
            self.matrix, cells.codes, cells.context_codes, cells.encoded.label_rows
        )
        return fit_embedding_map(embedding, self.vocabulary, effects)

    def _label_rows(self, parsed: list[dict[str, float]]) -> tuple[np.ndarray, list[list[str]]]:
        """Label vectors of parsed targets; never-measured ones placed by the embedding."""
        known = set(self.vocabulary)
        embedding = self.perturbation_embedding
        if embedding is None or all(t in known for lab in parsed for t in lab):
            return label_rows(parsed, self.vocabulary).toarray(), [[] for _ in parsed]
        return embedding_label_rows(parsed, self.vocabulary, embedding, self.embedding_map)

    def _parse(self, condition: str, dosage: object = None, **kwargs) -> dict[str, float]:
        """``{perturbation: dose}`` of one condition, in this registration's spelling."""
        return parse_condition(
            condition,
            control_group=self.control_group,
            delimiter=self.delimiter,
            dosage=dosage,
            **kwargs,
        )

    def _context_name(self, context: object) -> str | None:
        """The context name of ``context``: a name, a value of the context column, or a tuple.

        A value as seen in ``obs`` (e.g. the integer ``1`` of an integer column) is matched by
        its string; with several ``context_keys`` a tuple of values, one per key, is joined.
        """
        if context is None or isinstance(context, str):
            return context
        keys = self.context_keys
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

    def _context_index(self, context: str) -> int:
        """Index of a known context name; an unknown one raises ``ValueError``."""
        if context not in self.contexts:
            raise ValueError(f"context={context!r} is unknown; known contexts: {self.contexts}.")
        return self.contexts.index(context)

    def targets(
        self,
        perturbations: Sequence[str] | str,
        dosages: Sequence[object] | None = None,
        context: object = None,
        *,
        warn_zero_doses: bool = False,
    ) -> Targets:
        """Parse prediction targets once: label vectors, names, context, extrapolation table.

        Parameters
        ----------
        perturbations
            Target conditions, e.g. ``["A+B", "C"]`` (a lone string is one target).
        dosages
            Optional doses, one per target (as in ``setup_anndata``; ``None`` for dose 1).
        context
            Context to predict in: a context name, a value of the context column, or a tuple
            of values with several ``context_keys``; ``None`` for every context.
        warn_zero_doses
            Warn for targets with a token at dose 0, which is dropped from their name
            (``predict`` does not call control cells ``P0``).

        Returns
        -------
        :class:`Targets`. An unknown perturbation raises ``KeyError`` listing the closest
        known names; an unknown context ``ValueError``.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=10, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> targets = pdae.model.PDAE(adata).registration.targets(["P1+P0"], dosages=[None])
        >>> targets.names, targets.labels.tolist()
        (['P0+P1'], [[1.0, 1.0, 0.0]])
        >>> targets.table["status"].tolist()
        ['seen in training']
        """
        perturbations = target_list(perturbations)
        dosages = dosage_list(dosages)
        if dosages is not None and len(dosages) != len(perturbations):
            raise ValueError(
                f"Got {len(dosages)} dosages for {len(perturbations)} perturbations; give one "
                "per target (None for dose 1)."
            )
        parsed, dropped = [], []
        for t, p in enumerate(perturbations):
            d = None if dosages is None else dosages[t]
            with_zeros = self._parse(p, d, keep_zero_doses=True)
            lab = {k: v for k, v in with_zeros.items() if v != 0.0}
            if len(lab) < len(with_zeros):
                dropped.append((p, d, t))
            parsed.append(lab)
        labels, placed = self._label_rows(parsed)
        names, doses = self._canonical(parsed, labels, placed)
        if warn_zero_doses and dropped:
            warnings.warn(
                "Targets with a dose of 0 are predicted without those perturbations: "
                + ", ".join(f"{p!r} at dose {d!r} is {names[t]!r}" for p, d, t in dropped)
                + "; the predicted cells are labelled accordingly.",
                UserWarning,
                stacklevel=3,
            )
        display = perturbations
        if dosages is not None:
            pairs = zip(perturbations, dosages, strict=True)
            display = [p if d is None else f"{p} @ {d}" for p, d in pairs]
        context = self._context_name(context)
        table = self._extrapolation(labels, display, context, placed)
        return Targets(
            labels=labels,
            names=names,
            dosages=doses,
            display=display,
            context=context,
            context_index=None if context is None else self._context_index(context),
            table=table,
            from_embedding=placed,
        )

    def _canonical(self, parsed, labels, placed) -> tuple[list[str], list[str | None]]:
        """Names and dose strings of the targets as the predicted cells carry them.

        A target with the label vector of a training condition gets that condition's name
        and doses as the registered data spell them (``"P1+P0"`` and ``"P0+ctrl"`` come back
        as ``"P0+P1"`` and ``"P0"`` if those are the training labels); any other target is
        written with its perturbations in the order of the vocabulary, control tokens dropped,
        and those placed by the embedding after them in the order given.
        """
        hits = match_labels(labels, self.label_matrix)
        names, doses = [], []
        for t, lab in enumerate(parsed):
            row = hits[t].indices
            if len(row) and not placed[t]:
                names.append(self.conditions[row[0]])
                doses.append(self.dosages[row[0]])
                continue
            ordered = {k: lab[k] for k in self.vocabulary if k in lab}
            ordered.update({k: lab[k] for k in placed[t]})
            name, dose = format_condition(
                ordered, control_group=self.control_group, delimiter=self.delimiter
            )
            names.append(name)
            doses.append(dose)
        return names, doses

    def _extrapolation(self, labels, display, context, placed) -> pd.DataFrame:
        span = self.span
        if context is None:
            table = extrapolation_table(span, labels, names=display)
        else:
            counts = self.context_condition_counts[self._context_index(context)]
            table = extrapolation_table(
                span, labels, names=display, context_train_labels=span.rows[counts > 0]
            )
            match = match_labels(labels, span.rows)
            table.insert(0, "context", context)
            table["n_cells_in_context"] = (match @ counts).astype(np.int64)
            table["n_source_cells"] = int(counts.sum())
        if self.perturbation_embedding is not None:
            # a never-measured perturbation adds a direction no training label has: outside
            # the span, whatever label vector the embedding gives it
            new = np.array([bool(p) for p in placed])
            for column in ("in_span", "in_range", "seen", "seen_in_context"):
                if column in table:
                    table.loc[new, column] = False
            table.loc[new, "span_distance"] = np.nan
            table.loc[new, "status"] = STATUS_EMBEDDING
            table["from_embedding"] = [self.delimiter.join(p) for p in placed]
        return table
