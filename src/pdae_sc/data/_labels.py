"""Perturbation labels: parse condition strings into label vectors over elementary perturbations.

A *condition* such as ``"KLF1+MAP2K6"`` is a combination of *elementary perturbations*
(``KLF1``, ``MAP2K6``). Each condition maps to a label vector ``l ∈ R^K`` over the K known
elementary perturbations: the dose of each token (1 by default), 0 elsewhere. The control
maps to the zero vector and a combination is the sum of its parts.
"""

from __future__ import annotations

import difflib
import math
import unicodedata
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = [
    "EncodedConditions",
    "closest_names",
    "encode_conditions",
    "format_condition",
    "label_vector",
    "parse_condition",
]


def closest_names(name: str, known: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` names from ``known`` closest to ``name`` (for error messages).

    Names are ranked by :func:`difflib.get_close_matches` (similarity at least 0.5); when
    none is that similar, names that contain ``name`` or are contained in it (ignoring
    letter case) are returned instead.

    Parameters
    ----------
    name
        The name that was not found, e.g. a misspelt perturbation.
    known
        The valid names.
    n
        Maximum number of suggestions.

    Returns
    -------
    The closest known names, best first (empty when nothing is close).

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> pdae.data.closest_names("KLF", ["KLF1", "MAP2K6", "CEBPA"])
    ['KLF1']
    >>> pdae.data.closest_names("klf1_guide", ["KLF1", "MAP2K6", "CEBPA"])
    ['KLF1']
    >>> pdae.data.closest_names("XYZ", ["KLF1", "MAP2K6", "CEBPA"])
    []
    """
    known = list(known)
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.5)
    if not close:
        lower = name.lower()
        close = [k for k in known if lower in k.lower() or k.lower() in lower][:n]
    return close


def _unknown_perturbation_error(token: str, vocabulary: Sequence[str]) -> KeyError:
    close = closest_names(token, vocabulary)
    if close:
        hint = f" Closest known names: {close}."
    else:
        hint = f" Known names include: {list(vocabulary)[:10]}."
    return KeyError(
        f"Unknown perturbation {token!r}: it was not among the {len(vocabulary)} elementary "
        f"perturbations seen in training.{hint} A model can only shift cells by perturbations "
        "it was trained on."
    )


def _parse_dosage(dosage: object, n_tokens: int, condition: str, delimiter: str) -> list[float]:
    if dosage is None:
        return [1.0] * n_tokens
    if dosage is pd.NA:  # a missing dose: refused for perturbed tokens by parse_condition
        return [math.nan] * n_tokens
    if isinstance(dosage, bool | np.bool_):
        raise TypeError(
            f"Dosage {dosage!r} of condition {condition!r} is a bool; use a number or a "
            f"{delimiter!r}-delimited string such as '1.0{delimiter}0.5'."
        )
    if isinstance(dosage, int | float | np.integer | np.floating):
        return [float(dosage)] * n_tokens
    if not isinstance(dosage, str):
        raise TypeError(
            f"Dosage {dosage!r} of condition {condition!r} has type {type(dosage).__name__}; "
            f"use a number or a {delimiter!r}-delimited string such as '1.0{delimiter}0.5'."
        )
    parts = dosage.split(delimiter)
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"Dosage {dosage!r} of condition {condition!r} does not parse as numbers; use a "
            f"number or one number per perturbation joined by {delimiter!r}, e.g. "
            f"'1.0{delimiter}0.5'."
        ) from None
    if len(values) == 1:
        return values * n_tokens
    if len(values) != n_tokens:
        raise ValueError(
            f"Dosage {dosage!r} has {len(values)} values but condition {condition!r} has "
            f"{n_tokens} perturbations; give one dose per perturbation (or a single number)."
        )
    return values


def _check_visible(label: str) -> None:
    """Refuse invisible characters in a label.

    Zero-width spaces, control and format characters and spaces other than " " are refused:
    ``"P0\u200b"`` would be a perturbation that prints like ``"P0"``.
    """
    if label.isascii() and label.isprintable():
        return
    for ch in label:
        category = unicodedata.category(ch)
        if category[0] == "C" or (category[0] == "Z" and ch != " "):
            raise ValueError(
                f"Perturbation label {label!r} contains the invisible character "
                f"U+{ord(ch):04X} ({unicodedata.name(ch, category)}); it would be a separate "
                "perturbation that prints like another. Remove it, e.g. adata.obs[key] = "
                f"adata.obs[key].str.replace('\\u{ord(ch):04x}', '')."
            )


def parse_condition(
    condition: str,
    *,
    control_group: str,
    delimiter: str = "+",
    dosage: str | float | None = None,
    keep_zero_doses: bool = False,
) -> dict[str, float]:
    """Parse one condition string into ``{elementary perturbation: dose}``.

    Parameters
    ----------
    condition
        Condition label, e.g. ``"A+B"``; tokens equal to ``control_group`` are dropped
        (``"A+ctrl"`` is ``A``), and the control itself parses to ``{}``.
    control_group
        Label of the control condition.
    delimiter
        Separator between the elementary perturbations of a combination.
    dosage
        Doses in the same delimited form (``"1.0+0.5"``), one number for every token, or
        ``None`` for dose 1. A missing dose (NaN) is refused for every token except the
        control (``ValueError``).
    keep_zero_doses
        Keep tokens at dose 0 in the result (to tell which a caller drops); by default they
        are dropped, as a dose of 0 is no perturbation.

    Returns
    -------
    Mapping from each elementary perturbation to its dose (doses of 0 are dropped unless
    ``keep_zero_doses``).

    Examples
    --------
    >>> parse_condition("A+ctrl", control_group="ctrl")
    {'A': 1.0}
    >>> parse_condition("A+B", control_group="ctrl", dosage="0.5+2")
    {'A': 0.5, 'B': 2.0}
    """
    if not isinstance(condition, str):
        raise TypeError(
            f"Perturbation label {condition!r} has type {type(condition).__name__}; labels "
            "must be strings such as 'A' or 'A+B' (convert the column with .astype(str))."
        )
    if condition.strip() == "":
        raise ValueError(
            f"Perturbation label {condition!r} is empty; name a condition such as 'A' or "
            f"'A{delimiter}B', or the control {control_group!r}."
        )
    _check_visible(condition)
    tokens = condition.split(delimiter)
    doses = _parse_dosage(dosage, len(tokens), condition, delimiter)
    out: dict[str, float] = {}
    for token, dose in zip(tokens, doses, strict=True):
        if token == "":
            raise ValueError(
                f"Perturbation label {condition!r} has an empty token (delimiter "
                f"{delimiter!r} at the start, end or twice in a row); fix the label, e.g. "
                f"{delimiter.join(t for t in tokens if t)!r}."
            )
        if token != token.strip():
            raise ValueError(
                f"Perturbation token {token!r} in label {condition!r} has surrounding "
                "whitespace; strip the labels first, e.g. "
                "adata.obs[key] = adata.obs[key].str.replace(' ', '')."
            )
        if token == control_group:
            continue
        if token in out:
            raise ValueError(
                f"Perturbation {token!r} appears twice in label {condition!r}; list each "
                "perturbation once and put a larger dose in the dosage column instead."
            )
        if math.isnan(dose) and not (isinstance(dosage, str) and "nan" in dosage.lower()):
            raise ValueError(
                f"The dose of {token!r} in {condition!r} is missing (NaN); doses of perturbed "
                "cells must be numbers. Fill the dosage column (e.g. with 1.0) or remove those "
                "cells; None means the default dose 1."
            )
        if not math.isfinite(dose):
            raise ValueError(
                f"Dose {dose!r} of {token!r} in {condition!r} is not finite; doses must be "
                "finite numbers (fix the dosage column)."
            )
        if dose != 0.0 or keep_zero_doses:
            out[token] = float(dose)
    return out


def _format_dose(dose: float) -> str:
    # shortest string that parses back to the same float, never in exponent notation
    # (an exponent such as "1e+16" would contain the default delimiter)
    return np.format_float_positional(float(dose), trim="-")


def format_condition(
    label: Mapping[str, float],
    *,
    control_group: str,
    delimiter: str = "+",
) -> tuple[str, str | None]:
    """Format ``{perturbation: dose}`` back into a condition string and a dosage string.

    The inverse of :func:`parse_condition`.

    Parameters
    ----------
    label
        Mapping from each elementary perturbation to its dose; empty for the control.
    control_group
        Label of the control condition, returned for an empty ``label``.
    delimiter
        Separator between the elementary perturbations of a combination (and their doses).

    Returns
    -------
    ``(condition, dosage)``; ``dosage`` is ``None`` when every dose is 1. Doses are written
    exactly (shortest round-trip form), so :func:`parse_condition` gives back ``label``.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> pdae.data.format_condition({"A": 1.0, "B": 0.5}, control_group="ctrl")
    ('A+B', '1+0.5')
    >>> pdae.data.format_condition({"A": 1.0, "B": 1.0}, control_group="ctrl")
    ('A+B', None)
    >>> pdae.data.format_condition({}, control_group="ctrl")
    ('ctrl', None)
    """
    if not label:
        return control_group, None
    names = list(label)
    doses = [label[n] for n in names]
    condition = delimiter.join(names)
    if all(d == 1.0 for d in doses):
        return condition, None
    return condition, delimiter.join(_format_dose(d) for d in doses)


def _check_case_variants(vocabulary: Sequence[str], control_group: str, name: str) -> None:
    """Raise ``ValueError`` for perturbation names that differ only by letter case."""
    by_lower: dict[str, list[str]] = {}
    for token in vocabulary:
        by_lower.setdefault(token.casefold(), []).append(token)
    control_like = by_lower.get(control_group.casefold())
    if control_like:
        raise ValueError(
            f"Perturbation {control_like[0]!r} in adata.obs[{name!r}] differs from "
            f"control_group={control_group!r} only by letter case, so it would be learned as a "
            "perturbation. Use one spelling for the control, e.g. "
            f"adata.obs[{name!r}] = adata.obs[{name!r}].astype(str).str.replace("
            f"{control_like[0]!r}, {control_group!r}, regex=False)."
        )
    clashes = [sorted(v) for v in by_lower.values() if len(v) > 1]
    if clashes:
        a, b = clashes[0][:2]
        raise ValueError(
            f"Perturbation names in adata.obs[{name!r}] differ only by letter case: "
            f"{clashes[:5]}; they would be learned as different perturbations. "
            "Harmonise the spelling, e.g. "
            f"adata.obs[{name!r}] = adata.obs[{name!r}].astype(str).str.replace("
            f"{b!r}, {a!r}, regex=False)."
        )


def label_vector(label: Mapping[str, float], vocabulary: Sequence[str]) -> np.ndarray:
    """Label vector of shape ``(K,)`` over ``vocabulary``; unknown names raise ``KeyError``.

    Parameters
    ----------
    label
        Mapping from each elementary perturbation to its dose, e.g. from
        :func:`parse_condition`.
    vocabulary
        The K known elementary perturbations, in the order of the vector's entries.

    Returns
    -------
    Array of shape ``(K,)`` (float64): the dose of each perturbation of ``label``, 0
    elsewhere (the zero vector for the control).

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> pdae.data.label_vector({"A": 1.0, "C": 0.5}, ["A", "B", "C"])
    array([1. , 0. , 0.5])
    >>> pdae.data.label_vector({"D": 1.0}, ["A", "B", "C"])
    Traceback (most recent call last):
    ...
    KeyError: "Unknown perturbation 'D': it was not among the 3 elementary perturbations ..."
    """
    index = {name: i for i, name in enumerate(vocabulary)}
    vec = np.zeros(len(vocabulary), dtype=np.float64)
    for name, dose in label.items():
        if name not in index:
            raise _unknown_perturbation_error(name, vocabulary)
        vec[index[name]] = dose
    return vec


def _canonical_key(label: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(label.items()))


@dataclass(frozen=True)
class EncodedConditions:
    """Per-cell condition codes and the label matrix of the distinct conditions.

    Returned by :func:`encode_conditions`; the fields are read-only.

    Parameters
    ----------
    codes
        Condition index of each cell, shape ``(n_cells,)``.
    conditions
        Display name of each distinct condition (the first label seen for it).
    dosages
        Dosage string of each distinct condition (``None`` for dose 1).
    label_rows
        Label matrix as sparse CSR, shape ``(n_conditions, K)``; row ``c`` is the label
        vector of condition ``c`` (the control is the zero row). :attr:`labels` is its dense
        form, built on first use (``n_conditions * K`` floats: prefer ``label_rows`` for
        genome-wide screens).
    vocabulary
        The K elementary perturbations, in column order of ``labels``.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> enc = pdae.data.encode_conditions(["ctrl", "A", "A+B", "B+A"], control_group="ctrl")
    >>> enc.conditions, enc.vocabulary, enc.n_conditions
    (['ctrl', 'A', 'A+B'], ['A', 'B'], 3)
    >>> enc.labels
    array([[0., 0.],
           [1., 0.],
           [1., 1.]])
    >>> enc.codes.tolist(), enc.dosages
    ([0, 1, 2, 2], [None, None, None])
    """

    codes: np.ndarray
    conditions: list[str]
    dosages: list[str | None]
    label_rows: sparse.csr_matrix
    vocabulary: list[str]

    @cached_property
    def labels(self) -> np.ndarray:
        """Dense label matrix, shape ``(n_conditions, K)`` (built once from ``label_rows``).

        Returns
        -------
        Array of float64; row ``c`` is the label vector of condition ``c``.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> enc = pdae.data.encode_conditions(["ctrl", "A", "A+B"], control_group="ctrl")
        >>> enc.labels
        array([[0., 0.],
               [1., 0.],
               [1., 1.]])
        """
        return self.label_rows.toarray()

    @property
    def n_conditions(self) -> int:
        """Number of distinct conditions."""
        return len(self.conditions)

    def counts(self) -> np.ndarray:
        """Number of cells per condition, shape ``(n_conditions,)``.

        Returns
        -------
        Array of cell counts, aligned with ``conditions``.

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> enc = pdae.data.encode_conditions(["ctrl", "A", "A+B", "B+A"], control_group="ctrl")
        >>> enc.counts()
        array([1, 1, 2])
        """
        return np.bincount(self.codes, minlength=self.n_conditions)


def encode_conditions(
    perturbations: Sequence[Hashable] | pd.Series,
    *,
    control_group: str,
    delimiter: str = "+",
    dosages: Sequence[object] | pd.Series | None = None,
    vocabulary: Sequence[str] | None = None,
    name: str = "perturbation",
) -> EncodedConditions:
    """Encode per-cell condition labels (and optional doses) into codes and a label matrix.

    Cells whose labels parse to the same label vector (``"A+B"`` and ``"B+A"``) share a
    condition. Only the distinct labels are parsed, so this is fast for millions of cells.

    Parameters
    ----------
    perturbations
        One label per cell, e.g. ``adata.obs["perturbation"]``.
    control_group
        Label of the control condition.
    delimiter
        Separator between combined perturbations.
    dosages
        Optional doses per cell (see :func:`parse_condition`).
    vocabulary
        Known elementary perturbations. ``None`` builds it from the labels (sorted; names
        that differ only by letter case, from each other or from ``control_group``, raise
        ``ValueError``); when given, a label with an unknown perturbation raises ``KeyError``.
    name
        Name of the label column, used in error messages.

    Returns
    -------
    The :class:`EncodedConditions`.

    Examples
    --------
    >>> enc = encode_conditions(["ctrl", "A", "A+B", "B+A"], control_group="ctrl")
    >>> enc.conditions, enc.codes.tolist()
    (['ctrl', 'A', 'A+B'], [0, 1, 2, 2])
    """
    # Factorise labels and doses separately (a categorical column costs only its codes), so
    # memory per cell stays a few integers for millions of cells.
    if not isinstance(perturbations, pd.Series):
        perturbations = pd.Series(np.asarray(perturbations, dtype=object))
    lab_codes, lab_uniques = pd.factorize(perturbations)  # missing labels get -1
    missing = lab_codes < 0
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} cells have a missing {name!r} label (e.g. cell at position "
            f"{int(np.flatnonzero(missing)[0])}); label them (for instance as the control "
            f"{control_group!r} if they are unperturbed) or remove them before setup."
        )
    if dosages is None:
        pair_codes, uniques = lab_codes, [(raw, None) for raw in lab_uniques]
    else:
        if not isinstance(dosages, pd.Series):
            dosages = pd.Series(np.asarray(dosages, dtype=object))
        if len(dosages) != len(perturbations):
            raise ValueError(
                f"Got {len(dosages)} dosages for {len(perturbations)} cells; give one per cell."
            )
        dose_codes, dose_uniques = pd.factorize(dosages, use_na_sentinel=False)
        n_doses = max(1, len(dose_uniques))
        pair_codes, pair_index = pd.factorize(lab_codes.astype(np.int64) * n_doses + dose_codes)
        uniques = [(lab_uniques[p // n_doses], dose_uniques[p % n_doses]) for p in pair_index]
    parsed = []
    for raw, dose in uniques:
        if isinstance(raw, str) and raw.strip() == "":
            raise ValueError(
                f"Some cells have an empty {name!r} label; give them a condition name (or "
                f"the control {control_group!r})."
            )
        parsed.append(
            parse_condition(raw, control_group=control_group, delimiter=delimiter, dosage=dose)
        )
    if vocabulary is None:
        vocabulary = sorted({tok for lab in parsed for tok in lab})
        _check_case_variants(vocabulary, control_group, name)
    vocabulary = list(vocabulary)

    key_to_cond: dict[tuple, int] = {}
    conditions: list[str] = []
    cond_doses: list[str | None] = []
    rows: list[dict[str, float]] = []
    pair_to_cond = np.empty(len(uniques), dtype=np.int64)
    for i, ((raw, _dose), lab) in enumerate(zip(uniques, parsed, strict=True)):
        key = _canonical_key(lab)
        if key not in key_to_cond:
            key_to_cond[key] = len(conditions)
            display = control_group if not lab else raw
            conditions.append(display)
            cond_doses.append(
                None
                if all(d == 1.0 for d in lab.values())
                else format_condition(lab, control_group=control_group, delimiter=delimiter)[1]
            )
            rows.append(lab)
        pair_to_cond[i] = key_to_cond[key]
    return EncodedConditions(
        codes=pair_to_cond[pair_codes],
        conditions=conditions,
        dosages=cond_doses,
        label_rows=label_rows(rows, vocabulary),
        vocabulary=vocabulary,
    )


# ------------------------------------------------------------------ label matrices at scale
#: Tolerance of "the same label vector": two labels are the same when every dose differs by
#: at most ``LABEL_TOL * max(|a|, |b|)`` (relative at every scale, so a dose of 1e-9, as in
#: molar units, is never the control's 0 nor a dose 200 times larger).
#: Doses are parsed from decimal strings, so equal doses are bitwise equal; the tolerance only
#: absorbs the round-off of doses computed in floating point (``0.1 + 0.2`` against ``0.3``)
#: and stays far below any dose step an experiment uses.
LABEL_TOL = 1e-6


def as_label_rows(labels: object, n_features: int | None = None) -> sparse.csr_matrix:
    """A label matrix (dense, sparse or a stored ``label_matrix``) as float64 CSR.

    Explicit zeros are dropped and indices sorted, so ``indices`` of a row are its support.
    A 1-d vector is one row; ``n_features`` checks the number of columns.
    """
    if sparse.issparse(labels):
        rows = sparse.csr_matrix(labels, dtype=np.float64, copy=True)
    else:
        dense = np.asarray(labels, dtype=np.float64)
        if dense.ndim == 1:
            dense = dense[None, :]
        if dense.ndim != 2:
            raise ValueError(f"A label matrix must be 2-d (conditions x K), got {dense.shape}.")
        if dense.shape[0] == 0 and n_features is not None:
            dense = np.zeros((0, n_features))  # no rows: any width
        rows = sparse.csr_matrix(dense)
    if n_features is not None and rows.shape[1] != n_features:
        raise ValueError(
            f"The label matrix has {rows.shape[1]} columns but {n_features} were expected; "
            "labels must be over the same perturbations."
        )
    rows.eliminate_zeros()
    rows.sort_indices()
    return rows


def label_rows(
    labels: Sequence[Mapping[str, float]], vocabulary: Sequence[str]
) -> sparse.csr_matrix:
    """Label vectors of many labels over ``vocabulary`` as CSR, in one pass.

    The sparse, many-label form of :func:`label_vector` (one index of ``vocabulary`` for all
    labels, so the cost is the number of tokens, not ``len(labels) * K``). Unknown names raise
    the same ``KeyError``.
    """
    index = {name: i for i, name in enumerate(vocabulary)}
    indptr, indices, data = [0], [], []
    for label in labels:
        for name, dose in sorted(label.items(), key=lambda item: index.get(item[0], -1)):
            if name not in index:
                raise _unknown_perturbation_error(name, vocabulary)
            if dose != 0.0:
                indices.append(index[name])
                data.append(float(dose))
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(indptr) - 1, len(vocabulary)),
    )


def match_labels(targets: object, rows: object, *, tol: float = LABEL_TOL) -> sparse.csr_matrix:
    """Which of ``rows`` is the same label vector as each target (see :data:`LABEL_TOL`).

    Returns a boolean CSR matrix ``(n_targets, n_rows)``; entry ``(i, r)`` is true when every
    dose of row ``r`` and target ``i`` agrees within ``tol * max(|a|, |b|)``. The cost per
    target is the number of nonzeros of ``rows`` (no dense ``n_targets x n_rows x K`` array).
    """
    rows = as_label_rows(rows)
    targets = as_label_rows(targets, rows.shape[1])
    n_rows = rows.shape[0]
    by_column = rows.tocsc()
    row_of = np.repeat(np.arange(n_rows), np.diff(rows.indptr))
    # an entry of a row off the target's support (a nonzero dose) is a mismatch
    big = np.abs(rows.data) > 0
    out_rows, out_cols = [], []
    for i in range(targets.shape[0]):
        lo, hi = targets.indptr[i], targets.indptr[i + 1]
        cols, vals = targets.indices[lo:hi], targets.data[lo:hi]
        bad = big & ~np.isin(rows.indices, cols)
        fail = np.zeros(n_rows, dtype=bool)
        fail[row_of[bad]] = True
        if len(cols):
            block = by_column[:, cols].toarray()
            scale = np.maximum(np.abs(block), np.abs(vals)[None, :])
            fail |= (np.abs(block - vals[None, :]) > tol * scale).any(axis=1)
        hits = np.flatnonzero(~fail)
        out_rows.append(np.full(len(hits), i))
        out_cols.append(hits)
    r = np.concatenate(out_rows) if out_rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(out_cols) if out_cols else np.zeros(0, dtype=np.int64)
    return sparse.csr_matrix(
        (np.ones(len(r), dtype=bool), (r, c)), shape=(targets.shape[0], n_rows)
    )
