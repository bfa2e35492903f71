"""Standardise perturbation labels written in the conventions of GEARS, CPA, scPerturb, pertpy.

Every tool spells conditions differently: GEARS writes ``"A+ctrl"`` and ``"ctrl"``, CPA
``"A+B"`` with a dose column ``"1.0+0.5"``, scPerturb ``"control"`` and ``"A_B"``, and guide
names such as ``"A_guide2"`` stand for the gene they target. :func:`standardize_perturbations`
rewrites them into the labels that :meth:`pdae_sc.model.PDAE.setup_anndata` reads: the control
is ``control_group`` and a combination is its perturbations joined by ``"+"``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
from anndata import AnnData

from pdae_sc.data._labels import closest_names

__all__ = ["CONTROL_VALUES", "GUIDE_PATTERN", "standardize_perturbations"]

logger = logging.getLogger(__name__)

#: Labels (compared case-insensitively) that mean "unperturbed".
CONTROL_VALUES = tuple(
    "ctrl control non-targeting non_targeting NT nt safe-targeting None unperturbed".split()
)
#: Guide names ``gene_guide2``, ``gene-sg1``, ``gene_sgRNA3``, ``gene_g1`` or ``gene_2``.
#: ``gene-2`` is *not* stripped by default: real genes such as NKX2-1 end that way.
GUIDE_PATTERN = r"^(?P<gene>.+?)(?:[_-](?i:sgrna|guide|sg|g)\d+|_\d+)$"
CONVENTIONS = {"gears": "+", "cpa": "+", "pertpy": "+", "scperturb": "_"}
DELIMITERS = ("+", "_", ",", "|", ";")
UNPARSABLE = "unparsable"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _detect_delimiter(labels: Iterable[str], controls: set[str], pattern: re.Pattern | None):
    counts = dict.fromkeys(DELIMITERS, 0)
    for lab in labels:
        if lab.casefold() in controls or (pattern is not None and pattern.fullmatch(lab)):
            continue
        for d in DELIMITERS:
            counts[d] += d in lab
    if counts["+"]:
        return "+"
    best = max(DELIMITERS[1:], key=counts.__getitem__)
    return best if counts[best] else "+"


def _parse_doses(dose: object, delim: str) -> list[float] | None:
    if _is_missing(dose):
        return None
    if isinstance(dose, int | float | np.integer | np.floating):
        values = [float(dose)]
    else:
        text = str(dose).strip()
        values = [float(p) for p in text.split(delim if delim in text else "+")]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("non-finite dose")
    return values


def _format_dose(dose: float) -> str:
    return np.format_float_positional(dose, trim="-")


def _standardize_one(raw, raw_dose, delim, controls, pattern, control_group):
    """Return ``(label | None, dose, rules, error | None)`` for one distinct raw label."""
    rules: list[str] = []
    if _is_missing(raw):
        return None, np.nan, rules, "missing label"
    if not isinstance(raw, str):
        raw = str(raw)
        rules.append("converted to string")
    text = raw.strip()
    if not text or text.casefold() == "nan":
        return None, np.nan, rules, "empty label" if not text else "'nan' is a missing value"
    strip_guide = (lambda t: pattern.fullmatch(t)) if pattern is not None else lambda t: None
    whole = strip_guide(text)
    gene = whole["gene"].strip() if whole else None
    if text.casefold() in controls or (
        gene is not None and (delim not in gene or gene.casefold() in controls)
    ):
        tokens = [text]  # one name, e.g. "non_targeting" or "A_guide2" with delimiter "_"
        padded = text != raw
    else:
        parts = text.split(delim)
        tokens = [t.strip() for t in parts]
        padded = text != raw or tokens != parts
        if delim != "+" and len(tokens) > 1:
            rules.append(f"delimiter {delim!r} -> '+'")
    if padded:
        rules.append("whitespace stripped")
    if "" in tokens:
        return None, np.nan, rules, f"empty token (delimiter {delim!r} at an end or doubled)"
    try:
        doses = _parse_doses(raw_dose, delim)
    except ValueError:
        return None, np.nan, rules, f"dose {raw_dose!r} is not a finite number"
    if doses is not None and len(doses) not in (1, len(tokens)):
        return None, np.nan, rules, f"{len(doses)} doses for {len(tokens)} tokens"
    kept: list[str] = []
    kept_doses: list[float] = []
    for i, tok in enumerate(tokens):
        m = strip_guide(tok)
        if m:
            tok = m["gene"].strip()
            rules.append("guide suffix stripped")
        if tok.casefold() in controls:
            if len(tokens) > 1:
                rules.append("control token dropped")
            continue
        if "+" in tok:
            return None, np.nan, rules, f"token {tok!r} contains '+'"
        if tok in kept:
            if doses is not None and len(doses) > 1:
                return None, np.nan, rules, f"{tok!r} twice with separate doses"
            rules.append("duplicate dropped")
            continue
        kept.append(tok)
        if doses is not None:
            kept_doses.append(doses[i] if len(doses) > 1 else doses[0])
    if not kept:
        rules.append("control value")
    dose: object = np.nan
    if kept and doses is not None:
        dose = "+".join(_format_dose(d) for d in (kept_doses if len(doses) > 1 else doses))
    return ("+".join(kept) if kept else control_group), dose, rules, None


def _check_key(obs: pd.DataFrame, key: str, name: str) -> None:
    if not isinstance(key, str) or key not in obs.columns:
        close = closest_names(str(key), [str(c) for c in obs.columns])
        raise KeyError(
            f"{name}={key!r} is not a column of adata.obs; closest columns: {close or None} "
            f"(columns: {list(obs.columns)[:10]})."
        )


def standardize_perturbations(
    adata: AnnData,
    perturbation_key: str,
    *,
    convention: str = "auto",
    delimiter: str | None = None,
    control_values: Iterable[str] = CONTROL_VALUES,
    guide_pattern: str | re.Pattern | None = GUIDE_PATTERN,
    control_group: str = "ctrl",
    key_added: str = "perturbation",
    dosage_key: str | None = None,
    dose_key_added: str | None = None,
    unparsable: str = "error",
    inplace: bool = True,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Rewrite perturbation labels of any common convention into what ``setup_anndata`` reads.

    Each distinct raw label is split into tokens at ``delimiter`` and every token is cleaned:
    surrounding whitespace is stripped, a guide suffix is removed (``"A_guide2"`` is gene
    ``A``, see ``guide_pattern``), and tokens equal to a control value are dropped (``"A+ctrl"``
    is ``A``). A label with no token left is the control, written as ``control_group``; the
    other labels are their tokens joined by ``"+"`` in the order given, repeated tokens once.
    Letter case is never changed. Nothing is removed: every cell gets a label, and labels
    that cannot be read (missing, empty, ``"A++B"``, doses that do not match) raise an error
    unless ``unparsable="keep"``.

    Parameters
    ----------
    adata
        Cells × genes; only ``adata.obs`` is read.
    perturbation_key
        Column of ``adata.obs`` with the raw labels. It is never overwritten.
    convention
        ``"gears"`` (``"A+ctrl"``, ``"ctrl"``), ``"cpa"`` (``"A+B"`` with ``dosage_key``),
        ``"pertpy"`` (``"control"``, ``"A+B"``), ``"scperturb"`` (``"control"``, ``"A_B"``) or
        ``"auto"``: ``"+"`` if any non-control label contains it, else the most frequent of
        ``"_"``, ``","``, ``"|"``, ``";"`` (guide names do not count), else ``"+"``.
    delimiter
        Separator of combined perturbations in the raw labels; overrides ``convention``.
    control_values
        Labels and tokens meaning "unperturbed", compared case-insensitively (``"Control"``
        counts); ``control_group`` always counts too.
    guide_pattern
        Regular expression with a named group ``gene``; a token matching it in full is
        replaced by that group. The default strips ``_guide2``, ``-sg1``, ``_sgRNA3``, ``_g1``
        and ``_2``, but not ``-2`` (NKX2-1 is a gene). ``None`` keeps tokens as they are.
    control_group
        Label written for control cells.
    key_added
        Column of ``adata.obs`` written with the standardised labels.
    dosage_key
        Optional column of doses: one number per cell or one per token (``"1.0+0.5"``).
    dose_key_added
        Column written with the doses of the kept tokens joined by ``"+"`` (NaN for the
        control); default ``f"{key_added}_dose"`` when ``dosage_key`` is given.
    unparsable
        ``"error"`` raises ``ValueError`` naming the bad labels; ``"keep"`` labels those cells
        ``"unparsable"`` and logs a warning (remove them before ``setup_anndata``).
    inplace
        Write the columns into ``adata.obs``; ``False`` leaves ``adata`` untouched.

    Returns
    -------
    A report with one row per distinct raw label (and raw dose): ``raw``, ``standardized``,
    ``n_cells``, ``rule`` (what was done, e.g. ``"guide suffix stripped"``) and, with
    ``dosage_key``, ``raw_dose`` and ``dose``. ``report.attrs`` holds the ``convention``,
    ``delimiter`` and column names used. With ``inplace=True`` ``adata.obs[key_added]``
    (categorical) and ``adata.obs[dose_key_added]`` are written and the report returned; with
    ``inplace=False`` ``(report, columns)`` is returned, ``columns`` being a DataFrame indexed
    like ``adata.obs`` with the columns that would have been written.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> obs = pd.DataFrame({"condition": ["ctrl", "A+ctrl", "ctrl+B", "A+B"]})
    >>> adata = ad.AnnData(np.zeros((4, 2)), obs=obs)
    >>> report = standardize_perturbations(adata, "condition", convention="gears")
    >>> adata.obs["perturbation"].tolist()
    ['ctrl', 'A', 'B', 'A+B']

    The Norman 2019 file of scPerturb labels cells ``"control"``, ``"A"`` and ``"A_B"`` in
    ``obs["perturbation"]``, so the new labels need another column name:

    >>> adata = ad.read_h5ad("NormanWeissman2019_filtered.h5ad")  # doctest: +SKIP
    >>> rep = standardize_perturbations(adata, "perturbation", key_added="cond")  # doctest: +SKIP
    >>> PDAE.setup_anndata(adata, "cond", control_group="ctrl")  # doctest: +SKIP
    """
    if not isinstance(adata, AnnData):
        raise TypeError(
            f"adata must be an AnnData, got {type(adata).__name__}; for MuData pass the RNA "
            "modality, e.g. mdata['rna']."
        )
    _check_key(adata.obs, perturbation_key, "perturbation_key")
    if dosage_key is not None:
        _check_key(adata.obs, dosage_key, "dosage_key")
        dose_key_added = dose_key_added or f"{key_added}_dose"
    inputs = {perturbation_key, dosage_key} - {None}
    if key_added in inputs or dose_key_added in (*inputs, key_added):
        raise ValueError(
            f"key_added={key_added!r} / dose_key_added={dose_key_added!r} would overwrite an "
            "input column or each other; choose new names, e.g. key_added='perturbation_std'."
        )
    if convention != "auto" and convention not in CONVENTIONS:
        raise ValueError(
            f"convention={convention!r} is not known; use 'auto' or one of {list(CONVENTIONS)}."
        )
    if unparsable not in ("error", "keep"):
        raise ValueError(f"unparsable={unparsable!r} must be 'error' or 'keep'.")
    if not isinstance(control_group, str) or not control_group.strip() or "+" in control_group:
        raise ValueError(f"control_group={control_group!r} must be a non-empty label without '+'.")
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
        raise ValueError(f"delimiter={delimiter!r} must be a non-empty string such as '+'.")
    if isinstance(control_values, str):
        control_values = [control_values]
    controls = {str(v).casefold() for v in control_values} | {control_group.casefold()}
    pattern = re.compile(guide_pattern) if guide_pattern is not None else None
    if pattern is not None and "gene" not in pattern.groupindex:
        raise ValueError(
            f"guide_pattern={pattern.pattern!r} has no named group 'gene'; write it like "
            r"r'^(?P<gene>.+?)_guide\d+$', or pass None to keep guide names."
        )

    labels = adata.obs[perturbation_key].astype(object).to_numpy()
    lab_codes, lab_uniques = pd.factorize(labels, use_na_sentinel=False)
    if dosage_key is not None:
        dose_vals = adata.obs[dosage_key].astype(object).to_numpy()
        dose_codes, dose_uniques = pd.factorize(dose_vals, use_na_sentinel=False)
    else:
        dose_codes, dose_uniques = np.zeros(len(labels), dtype=np.int64), np.array([None])
    pair_codes, pair_index = pd.factorize(lab_codes * len(dose_uniques) + dose_codes)
    pairs = [
        (lab_uniques[p // len(dose_uniques)], dose_uniques[p % len(dose_uniques)])
        for p in pair_index
    ]
    guessed = delimiter is None and CONVENTIONS.get(convention) is None
    if delimiter is None:
        delimiter = CONVENTIONS.get(convention) or _detect_delimiter(
            (str(v).strip() for v in lab_uniques if not _is_missing(v)), controls, pattern
        )

    rows, errors = [], []
    counts = np.bincount(pair_codes, minlength=len(pairs))
    for (raw, raw_dose), n in zip(pairs, counts, strict=True):
        label, dose, rules, err = _standardize_one(
            raw, raw_dose, delimiter, controls, pattern, control_group
        )
        if err is not None:
            errors.append((raw, int(n), err))
            label, dose, rules = UNPARSABLE, np.nan, [*rules, f"unparsable: {err}"]
        rows.append((raw, raw_dose, label, dose, int(n), "; ".join(dict.fromkeys(rules))))
    columns = ["raw", "raw_dose", "standardized", "dose", "n_cells", "rule"]
    report = pd.DataFrame(rows, columns=columns).replace({"rule": {"": "unchanged"}})
    if errors and unparsable == "error":
        shown = ", ".join(f"{r!r} ({n} cells: {e})" for r, n, e in errors[:5])
        raise ValueError(
            f"{len(errors)} distinct labels ({sum(e[1] for e in errors)} cells) of "
            f"adata.obs[{perturbation_key!r}] cannot be standardised: {shown}. Fix these labels "
            f"(e.g. name unperturbed cells {control_group!r}), or pass unparsable='keep' to "
            f"label them {UNPARSABLE!r} and drop them before setup: "
            f"adata = adata[adata.obs[{key_added!r}] != {UNPARSABLE!r}].copy()."
        )

    if guessed or delimiter == "_":
        _check_no_shared_annotation(report, control_group, delimiter, perturbation_key)
    out = pd.DataFrame(index=adata.obs_names)
    out[key_added] = pd.Categorical(report["standardized"].to_numpy()[pair_codes])
    if dosage_key is not None:
        out[dose_key_added] = report["dose"].to_numpy(dtype=object)[pair_codes]
    else:
        report = report.drop(columns=["raw_dose", "dose"])
    report = report.sort_values("n_cells", ascending=False, kind="stable").reset_index(drop=True)
    report.attrs.update(convention=convention, delimiter=delimiter, key_added=key_added)
    report.attrs.update(dose_key_added=dose_key_added, control_group=control_group)
    _log_summary(report, out[key_added], control_group, delimiter, convention, errors)
    if not inplace:
        return report, out
    for col in out.columns:
        if col in adata.obs.columns:
            logger.info("standardize_perturbations: overwriting adata.obs[%r].", col)
        adata.obs[col] = out[col]
    return report


def _check_no_shared_annotation(report, control_group, delimiter, key) -> None:
    """Refuse a token that every perturbed label has (``"KLF1_KO"``, ``"GATA1_KO"``).

    Split at a guessed (or ``"_"``) delimiter, it would become a perturbation of every
    condition.
    """
    labels = [
        str(v)
        for v in report["standardized"].unique()
        if str(v) not in (control_group, UNPARSABLE)
    ]
    token_sets = [set(label.split("+")) for label in labels]
    if len(labels) < 2 or any(len(t) < 2 for t in token_sets):
        return
    shared = sorted(set.intersection(*token_sets))
    if shared:
        raw = report.loc[report["standardized"] == labels[0], "raw"].iloc[0]
        raise ValueError(
            f"Split at the delimiter {delimiter!r}, every perturbed label of "
            f"adata.obs[{key!r}] contains {shared} (e.g. {raw!r} -> {labels[0]!r}), which "
            "would become a perturbation of every condition; it looks like an annotation. "
            f"Remove it first, e.g. adata.obs[{key!r}] = adata.obs[{key!r}].str.replace("
            f"'{delimiter}{shared[0]}', ''), or pass delimiter='+' if {delimiter!r} is part "
            "of the names."
        )


def _log_summary(report, labels, control_group, delimiter, convention, errors) -> None:
    values = labels.astype(str)
    changed = report.loc[report["raw"].astype(str) != report["standardized"], "n_cells"].sum()
    logger.info(
        f"standardize_perturbations (convention {convention!r}, delimiter {delimiter!r}): "
        f"{len(values)} cells, {len(report)} raw labels -> {labels.nunique()} conditions; "
        f"{int((values == control_group).sum())} control cells, "
        f"{int(values.str.contains('+', regex=False).sum())} cells in combinations; "
        f"{int(changed)} cells relabelled."
    )
    if errors:
        logger.warning(
            f"standardize_perturbations: {sum(e[1] for e in errors)} cells with {len(errors)} "
            f"unreadable labels were labelled {UNPARSABLE!r}; remove them before setup_anndata."
        )
