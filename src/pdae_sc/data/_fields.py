"""scvi-tools registry field holding the perturbation vocabulary and the training conditions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import rich.pretty  # scvi-tools 1.4 view_registry uses rich.pretty without importing it
import rich.table
from anndata import AnnData
from scvi.data.fields import BaseAnnDataField

from ._labels import EncodedConditions, encode_conditions
from ._perturbation_embedding import EMBEDDING_FROM_EXPRESSION, expression_embedding
from ._validation import MatrixStats, get_matrix

__all__ = [
    "FORMAT_VERSION",
    "PERTURBATION_REGISTRY_KEY",
    "PerturbationField",
    "context_codes",
    "context_labels",
]

PERTURBATION_REGISTRY_KEY = "perturbation"
#: Version of the state registry this field writes (saved with every model). 1: pdae-sc
#: 0.1.0, which recorded no version and lacked the per-context condition counts, the label
#: fingerprint, the counts layer, the data range and the decoder option; 2: those recorded.
#: A registry of an older version is brought up to date when a model is loaded
#: (:meth:`PerturbationField.transfer_field`); a newer one is refused.
FORMAT_VERSION = 2
_CONTEXT_SEP = " | "


def context_labels(obs: pd.DataFrame, context_keys: Sequence[str] | None) -> np.ndarray:
    """One context name per cell: the values of ``context_keys`` joined (``"all"`` if none)."""
    codes, names = context_codes(obs, context_keys)
    return np.asarray(names, dtype=object)[codes]


def context_codes(
    obs: pd.DataFrame, context_keys: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """Context code of every cell and the context names, in order of first appearance.

    A context name is the values of ``context_keys`` as strings, joined by ``" | "``
    (``"all"`` without context keys). With several keys, a value containing ``" | "``
    raises ``ValueError`` (it would make two contexts print alike). Only integer codes are
    built per cell, so this stays cheap for millions of cells.
    """
    if not context_keys:
        return np.zeros(len(obs), dtype=np.int64), ["all"]
    codes = np.zeros(len(obs), dtype=np.int64)
    names = [""]
    for i, key in enumerate(context_keys):
        key_codes, uniques = pd.factorize(obs[key], use_na_sentinel=False)
        if len(context_keys) > 1:
            clash = [str(u) for u in uniques if _CONTEXT_SEP in str(u)]
            if clash:
                raise ValueError(
                    f"context_keys column adata.obs[{key!r}] has values that contain the "
                    f"context joiner {_CONTEXT_SEP!r} (e.g. {clash[0]!r}); with several "
                    f"context_keys {list(context_keys)} such values would merge different "
                    "contexts. Replace the joiner in those values, e.g. "
                    f"adata.obs[{key!r}] = adata.obs[{key!r}].astype(str).str.replace("
                    f"{_CONTEXT_SEP!r}, '/', regex=False)."
                )
        combined, first = pd.factorize(codes * max(1, len(uniques)) + key_codes)
        sep = "" if i == 0 else _CONTEXT_SEP
        names = [
            names[c // max(1, len(uniques))] + sep + str(uniques[c % max(1, len(uniques))])
            for c in first
        ]
        codes = combined.astype(np.int64)
    # values that differ but print alike (1 and "1") share a name: merge them
    name_codes, merged = pd.factorize(pd.Index(names, dtype=object))
    if len(merged) < len(names):
        codes = name_codes[codes]
    return codes, [str(n) for n in merged]


class PerturbationField(BaseAnnDataField):
    """Parse ``adata.obs[perturbation_key]`` (and doses, contexts) into the model's registry.

    The state registry keeps the vocabulary of elementary perturbations, the training
    conditions with their label matrix and cell counts, the contexts with the cells of each
    condition in each context, the layer holding raw counts (if any) and the range of the
    registered expression. It is saved with the model, so a loaded model knows what it was
    trained on. Nothing is written to ``adata``.
    """

    def __init__(
        self,
        perturbation_key: str,
        *,
        control_group: str,
        delimiter: str,
        dosage_key: str | None,
        context_keys: Sequence[str] | None,
        min_cells_per_condition: int,
        counts_layer: str | None = None,
        matrix_stats: MatrixStats | None = None,
        expression_embedding_layer: str | bool | None = False,
    ):
        super().__init__()
        if not isinstance(delimiter, str) or delimiter.strip() == "":
            raise ValueError(
                f"delimiter={delimiter!r}; use a non-blank string that separates combined "
                "perturbations, e.g. '+'."
            )
        if control_group.strip() == "" or delimiter in control_group:
            raise ValueError(
                f"control_group={control_group!r} is empty or contains the delimiter "
                f"{delimiter!r}, so it cannot be told apart from a combination; rename the "
                "control label (e.g. to 'ctrl') or pass another delimiter."
            )
        if not isinstance(min_cells_per_condition, int) or min_cells_per_condition < 1:
            raise ValueError(
                f"min_cells_per_condition={min_cells_per_condition!r}; use a positive integer."
            )
        self._attr_key = perturbation_key
        self.control_group = control_group
        self.delimiter = delimiter
        self.dosage_key = dosage_key
        self.context_keys = list(context_keys or [])
        self.min_cells_per_condition = min_cells_per_condition
        self.counts_layer = counts_layer
        self.matrix_stats = matrix_stats
        # the layer whose PCA embeds the target genes (None: X); False: no such embedding
        self.expression_embedding_layer = expression_embedding_layer

    registry_key = PERTURBATION_REGISTRY_KEY
    attr_name = "obs"

    @property
    def attr_key(self) -> str:
        """The perturbation column of ``adata.obs``."""
        return self._attr_key

    @property
    def is_empty(self) -> bool:
        """Never empty."""
        return False

    def validate_field(self, adata: AnnData) -> None:
        """Check that every column (and the counts layer) the field reads exists."""
        for role, key in [
            ("perturbation_key", self._attr_key),
            ("dosage_key", self.dosage_key),
        ] + [("context_keys", k) for k in self.context_keys]:
            if key is not None and key not in adata.obs.columns:
                raise KeyError(
                    f"{role}={key!r} is not a column of adata.obs; available columns: "
                    f"{list(adata.obs.columns)[:20]}."
                )
        if self.counts_layer is not None and self.counts_layer not in adata.layers:
            raise KeyError(
                f"counts_layer={self.counts_layer!r} is not in adata.layers; available layers: "
                f"{list(adata.layers)}. pdae.pp.normalize_counts(adata) keeps the counts in "
                "adata.layers['counts']."
            )

    def _label_columns(self) -> list[str]:
        return [c for c in (self._attr_key, self.dosage_key, *self.context_keys) if c is not None]

    def labels_fingerprint(self, adata: AnnData) -> str:
        """Hash of the label, dose and context columns of ``adata.obs``, cell by cell."""
        columns = [c for c in self._label_columns() if c in adata.obs.columns]
        hashed = pd.util.hash_pandas_object(adata.obs[columns], index=False).to_numpy()
        return hashlib.sha1(hashed.tobytes()).hexdigest()

    def check_unchanged(self, adata: AnnData, state_registry: dict) -> None:
        """Raise ``ValueError`` if the label columns of ``adata`` changed since registration."""
        if state_registry["labels_fingerprint"] != self.labels_fingerprint(adata):
            raise ValueError(
                f"adata.obs columns {self._label_columns()} changed after setup_anndata: the "
                "model was set up on other labels, doses or contexts, and would mix the two. "
                "Restore the columns, or run PDAE.setup_anndata(adata, ...) again and build "
                "and train a new model."
            )

    def encode(self, adata: AnnData, vocabulary: Sequence[str] | None = None) -> EncodedConditions:
        """Encode the conditions of ``adata`` (over ``vocabulary`` if given)."""
        dosages = adata.obs[self.dosage_key] if self.dosage_key is not None else None
        return encode_conditions(
            adata.obs[self._attr_key],
            control_group=self.control_group,
            delimiter=self.delimiter,
            dosages=dosages,
            vocabulary=vocabulary,
            name=self._attr_key,
        )

    def register_field(self, adata: AnnData) -> dict:
        """Parse the labels, check the control and the condition sizes, return the state."""
        self.validate_field(adata)
        column = adata.obs[self._attr_key]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            raise TypeError(
                f"adata.obs[{self._attr_key!r}] is numeric ({column.dtype}); perturbation labels "
                "must be strings such as 'A' or 'A+B'. If these are codes, map them to names "
                f"first, e.g. adata.obs[{self._attr_key!r}] = adata.obs[...].astype(str)."
            )
        enc = self.encode(adata)
        control = np.flatnonzero(enc.label_rows.getnnz(axis=1) == 0)
        if not len(control):
            values = column.astype(str).value_counts().index[:10].tolist()
            raise ValueError(
                f"control_group={self.control_group!r} does not occur in "
                f"adata.obs[{self._attr_key!r}]; most frequent labels: {values}. Pass the label "
                "of the unperturbed cells as control_group (the model needs control cells "
                "and perturbed cells)."
            )
        if enc.n_conditions < 2:
            raise ValueError(
                f"adata.obs[{self._attr_key!r}] holds only the control {self.control_group!r}; "
                "the model needs perturbed cells to learn perturbation shifts."
            )
        for key in self.context_keys:
            n_missing = int(adata.obs[key].isna().sum())
            if n_missing:
                raise ValueError(
                    f"context_keys column adata.obs[{key!r}] has {n_missing} missing values; "
                    "fill them (e.g. with 'unknown') or remove those cells before setup."
                )
        counts = enc.counts()
        small = [
            (c, int(n))
            for c, n in zip(enc.conditions, counts, strict=True)
            if n < self.min_cells_per_condition
        ]
        if small:
            raise ValueError(
                f"{len(small)} conditions have fewer than min_cells_per_condition="
                f"{self.min_cells_per_condition} cells: {small[:10]}. Remove them (e.g. "
                f"adata = adata[~adata.obs[{self._attr_key!r}].isin([...])].copy()) or lower "
                "min_cells_per_condition."
            )
        ctx_codes, contexts = context_codes(adata.obs, self.context_keys)
        context_counts = np.zeros((len(contexts), enc.n_conditions), dtype=np.int64)
        np.add.at(context_counts, (ctx_codes, enc.codes), 1)
        stats = self.matrix_stats
        return {
            "format_version": FORMAT_VERSION,
            "vocabulary": enc.vocabulary,
            "conditions": enc.conditions,
            "dosages": enc.dosages,
            "label_matrix": enc.label_rows,  # sparse CSR (dense in models saved before)
            "condition_counts": counts,
            "control_group": self.control_group,
            "delimiter": self.delimiter,
            "dosage_key": self.dosage_key,
            "context_keys": self.context_keys,
            "contexts": list(contexts),
            # cells of every training condition in every context, (n_contexts, n_conditions)
            "context_condition_counts": context_counts,
            "counts_layer": self.counts_layer,
            "labels_fingerprint": self.labels_fingerprint(adata),
            "matrix_stats": None
            if stats is None
            else {"min": stats.min, "max": stats.max, "all_integer": stats.all_integer},
            "expression_embedding": self._expression_embedding(adata),
        }

    def _expression_embedding(self, adata: AnnData) -> dict | None:
        """Gene loadings of a PCA of the cells, for ``perturbation_embedding="expression"``."""
        if self.expression_embedding_layer is False:
            return None
        table = expression_embedding(
            get_matrix(adata, self.expression_embedding_layer), list(map(str, adata.var_names))
        )
        return {
            "source": EMBEDDING_FROM_EXPRESSION,
            "names": table.index.tolist(),
            "vectors": table.to_numpy(dtype=np.float32),
        }

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs) -> dict:
        """Check ``adata_target``'s labels against the training vocabulary; keep the state.

        Any combination of known perturbations is accepted; an unknown perturbation raises
        ``KeyError``. The returned state is the training state (vocabulary, conditions),
        with the fingerprint of ``adata_target``'s label columns. A state of an older
        :data:`FORMAT_VERSION` (a model saved by pdae-sc 0.1.0) is brought up to date, its
        per-context condition counts counted on ``adata_target`` (the data the model is
        loaded with); a newer one raises ``ValueError``.
        """
        version = int(state_registry.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise ValueError(
                f"The model was saved by a newer pdae-sc (registry format {version}; this "
                f"version reads up to {FORMAT_VERSION}); upgrade pdae-sc to load it."
            )
        self.validate_field(adata_target)
        enc = self.encode(adata_target, vocabulary=state_registry["vocabulary"])
        state = dict(state_registry)
        if version < 2:
            state.update(
                format_version=FORMAT_VERSION,
                context_condition_counts=self._count_training_conditions(state, enc, adata_target),
                counts_layer=None,
                matrix_stats=None,  # the model scans the matrix once when built
            )
        state["labels_fingerprint"] = self.labels_fingerprint(adata_target)
        return state

    def _count_training_conditions(
        self, state: dict, enc: EncodedConditions, adata: AnnData
    ) -> np.ndarray:
        """Cells of each training condition in each training context, ``(n_ctx, n_cond)``."""
        rows = {tuple(r): i for i, r in enumerate(np.asarray(state["label_matrix"]))}
        cond = np.array([rows.get(tuple(r), -1) for r in enc.labels], dtype=np.int64)[enc.codes]
        ctx_codes, names = context_codes(adata.obs, state["context_keys"])
        known = {name: i for i, name in enumerate(state["contexts"])}
        ctx = np.array([known.get(n, -1) for n in names], dtype=np.int64)[ctx_codes]
        counts = np.zeros((len(state["contexts"]), len(state["conditions"])), dtype=np.int64)
        ok = (cond >= 0) & (ctx >= 0)
        np.add.at(counts, (ctx[ok], cond[ok]), 1)
        return counts

    def get_summary_stats(self, state_registry: dict) -> dict:
        """Numbers of perturbations, conditions and contexts."""
        return {
            "n_perturbations": len(state_registry["vocabulary"]),
            "n_conditions": len(state_registry["conditions"]),
            "n_contexts": len(state_registry["contexts"]),
        }

    def view_state_registry(self, state_registry: dict) -> rich.table.Table:
        """A table of the control, the vocabulary and the training conditions.

        Shown by ``model.view_anndata_setup()`` (scvi-tools' registry view).
        """
        table = rich.table.Table(title=f"{self.registry_key} State Registry")
        table.add_column("Property", justify="left", style="dodger_blue1", no_wrap=True)
        table.add_column("Value", justify="left", style="green", overflow="fold")
        vocabulary = list(state_registry["vocabulary"])
        counts = np.asarray(state_registry["condition_counts"])
        dosage_key = state_registry.get("dosage_key")
        rows = [
            ("Source location", f"adata.obs['{self._attr_key}']"),
            ("Control group", repr(state_registry["control_group"])),
            ("Delimiter", repr(state_registry["delimiter"])),
            ("Dose column", "none" if dosage_key is None else f"adata.obs['{dosage_key}']"),
            (f"Perturbations ({len(vocabulary)})", ", ".join(map(str, vocabulary))),
            (
                f"Training conditions ({len(counts)})",
                f"{int(counts.sum())} cells, {int(counts.min())} to {int(counts.max())} "
                "per condition",
            ),
        ]
        keys = list(state_registry.get("context_keys") or [])
        if keys:
            contexts = list(state_registry.get("contexts") or [])
            rows.append((f"Contexts ({', '.join(keys)})", ", ".join(map(str, contexts))))
        if state_registry.get("counts_layer") is not None:
            rows.append(("Counts layer", f"adata.layers['{state_registry['counts_layer']}']"))
        for name, value in rows:
            table.add_row(name, value)
        return table
