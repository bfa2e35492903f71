"""Assign perturbation labels to cells from guide (sgRNA) capture counts.

A CRISPR screen read out with guide capture (Perturb-seq, CROP-seq, ECCITE-seq) gives a cells ×
guides UMI count matrix, usually a modality of a :class:`mudata.MuData` (``mdata["gdo"]`` or
``mdata["crispr"]``). :func:`assign_guides` calls the guides of each cell with a documented
count threshold and turns them into the labels :meth:`pdae_sc.model.PDAE.setup_anndata` reads;
:func:`add_guide_assignment` writes them into the RNA modality.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from pdae_sc.data._labels import closest_names

from ._conventions import CONTROL_VALUES, GUIDE_PATTERN

__all__ = ["add_guide_assignment", "assign_guides"]

logger = logging.getLogger(__name__)

UNASSIGNED = "unassigned"
MULTIPLET = "multiplet"


def _guide_targets(
    guides: list[str],
    guide_to_perturbation: Mapping[str, str] | None,
    pattern: re.Pattern | None,
    controls: set[str],
    control_guides: set[str],
) -> list[tuple[str, ...]]:
    """Genes targeted by each guide; ``()`` for a control guide."""
    if guide_to_perturbation is not None:
        missing = [g for g in guides if g not in guide_to_perturbation]
        if missing:
            raise KeyError(
                f"guide_to_perturbation has no entry for {len(missing)} guides, e.g. "
                f"{missing[:5]}; map every guide of guide_counts.var_names (control guides to "
                "'ctrl'), or pass guide_to_perturbation=None to strip guide suffixes instead."
            )
    targets = []
    for guide in guides:
        if guide in control_guides:
            targets.append(())
            continue
        if guide_to_perturbation is not None:
            names = str(guide_to_perturbation[guide]).split("+")
        else:
            m = pattern.fullmatch(guide) if pattern is not None else None
            names = [m["gene"] if m else guide]
        names = [n.strip() for n in names]
        targets.append(tuple(n for n in names if n and n.casefold() not in controls))
    return targets


def _check_counts(x, name: str):
    if hasattr(x, "to_memory"):  # backed sparse guide counts (small): read them
        x = x.to_memory()
    elif not sparse.issparse(x) and not isinstance(x, np.ndarray):  # backed dense
        x = np.asarray(x[()])
    x = sparse.csr_matrix(x, dtype=np.float64)
    if x.nnz and (not np.isfinite(x.data).all() or x.data.min() < 0):
        raise ValueError(
            f"{name} must hold non-negative finite guide UMI counts; found negative or "
            "non-finite values. Pass the raw guide counts, not normalised data."
        )
    return x


def assign_guides(
    guide_counts: AnnData,
    *,
    min_counts: float = 5,
    min_fraction: float | None = None,
    guide_to_perturbation: Mapping[str, str] | None = None,
    guide_pattern: str | re.Pattern | None = GUIDE_PATTERN,
    control_guides: Iterable[str] | None = None,
    control_values: Iterable[str] = CONTROL_VALUES,
    control_group: str = "ctrl",
    max_perturbations: int | None = 2,
    layer: str | None = None,
) -> pd.DataFrame:
    """Call the guides of each cell from guide-capture UMI counts and label the cell.

    The assignment rule:

    1. Guide ``g`` is assigned to cell ``i`` when its count ``X[i, g] >= min_counts`` and, if
       ``min_fraction`` is given, ``X[i, g] >= min_fraction * sum_g' X[i, g']``.
    2. Each guide targets the genes in ``guide_to_perturbation[g]`` (``"A+B"`` for a vector
       carrying two guides), or, without a mapping, the ``gene`` group of ``guide_pattern``
       (``"KLF1_guide2"`` targets ``KLF1``; names that do not match target themselves).
       Guides in ``control_guides`` and guides whose target is a control value
       (``"non-targeting"``, ``"NT_1"``...) are control guides.
    3. A cell with no assigned guide is ``"unassigned"``. Otherwise its label is the set of
       distinct genes targeted by its assigned guides, sorted by name and joined by ``"+"``:
       two guides of one gene give that gene, a control guide next to a targeting guide gives
       the targeted gene, and only control guides give ``control_group``. A cell targeting
       more than ``max_perturbations`` genes is a ``"multiplet"``.

    Parameters
    ----------
    guide_counts
        Cells × guides with UMI counts in ``X`` (dense or sparse), e.g. ``mdata["gdo"]``.
    min_counts
        Minimum UMI count of an assigned guide.
    min_fraction
        Optional minimum share, in (0, 1], of the cell's guide UMIs.
    guide_to_perturbation
        Target(s) of every guide in ``guide_counts.var_names``; overrides ``guide_pattern``.
    guide_pattern
        Regular expression whose named group ``gene`` is a guide's target (see
        :data:`GUIDE_PATTERN`); ``None`` uses guide names as they are.
    control_guides
        Names of non-targeting guides, in addition to those recognised by ``control_values``.
    control_values
        Target names, compared case-insensitively, that mark control guides.
    control_group
        Label of cells carrying control guides only.
    max_perturbations
        Most genes a cell may target before it is a multiplet; ``None`` for no limit.
    layer
        Layer with the counts (default ``X``).

    Returns
    -------
    DataFrame indexed by ``guide_counts.obs_names`` with ``perturbation`` (label,
    ``"unassigned"`` or ``"multiplet"``), ``n_guides`` (assigned guides), ``guides`` (their
    names, comma-joined, highest count first), ``max_count`` (largest guide count of the cell,
    assigned or not) and ``total_counts``. ``guide_counts`` is not modified.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> x = np.array([[9, 0, 0], [7, 0, 6], [0, 0, 12], [1, 2, 0]])
    >>> gdo = ad.AnnData(x, var=pd.DataFrame(index=["A_g1", "B_g1", "non-targeting_1"]))
    >>> assign_guides(gdo, min_counts=5)["perturbation"].tolist()
    ['A', 'A', 'ctrl', 'unassigned']
    """
    if not isinstance(guide_counts, AnnData):
        raise TypeError(
            f"guide_counts must be an AnnData of cells × guides, got "
            f"{type(guide_counts).__name__}; for a MuData pass its guide modality, e.g. "
            "mdata['gdo'], or use add_guide_assignment(mdata)."
        )
    if (
        isinstance(min_counts, bool)
        or not isinstance(min_counts, int | float)
        or not np.isfinite(min_counts)
        or min_counts <= 0
    ):
        raise ValueError(
            f"min_counts={min_counts!r} must be a positive, finite number of UMIs, e.g. 5."
        )
    if min_fraction is not None and not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction={min_fraction!r} must be in (0, 1], e.g. 0.1, or None.")
    if max_perturbations is not None and (
        not isinstance(max_perturbations, int) or max_perturbations < 1
    ):
        raise ValueError(f"max_perturbations={max_perturbations!r} must be an int >= 1 or None.")
    if not guide_counts.var_names.is_unique:
        dup = guide_counts.var_names[guide_counts.var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(f"Guide names repeat, e.g. {dup}; make them unique first.")
    if layer is not None and layer not in guide_counts.layers:
        raise KeyError(
            f"layer={layer!r} is not in guide_counts.layers; closest: "
            f"{closest_names(layer, guide_counts.layers.keys()) or list(guide_counts.layers)}."
        )
    x = _check_counts(
        guide_counts.X if layer is None else guide_counts.layers[layer],
        "guide_counts.X" if layer is None else f"guide_counts.layers[{layer!r}]",
    )
    pattern = re.compile(guide_pattern) if guide_pattern is not None else None
    if pattern is not None and "gene" not in pattern.groupindex:
        raise ValueError(f"guide_pattern={pattern.pattern!r} needs a named group 'gene'.")
    controls = {str(v).casefold() for v in control_values} | {control_group.casefold()}
    guides = guide_counts.var_names.astype(str).tolist()
    targets = _guide_targets(
        guides, guide_to_perturbation, pattern, controls, set(control_guides or ())
    )

    totals = np.asarray(x.sum(axis=1)).ravel()
    max_count = x.max(axis=1).toarray().ravel() if x.shape[1] else np.zeros(x.shape[0])
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    keep = x.data >= min_counts
    if min_fraction is not None:
        keep &= x.data >= min_fraction * totals[rows]
    rows, cols, vals = rows[keep], x.indices[keep], x.data[keep]
    order = np.lexsort((cols, -vals, rows))  # by cell, then highest count first
    rows, cols = rows[order], cols[order]
    n_guides = np.bincount(rows, minlength=x.shape[0])
    starts = np.concatenate([[0], np.cumsum(n_guides)])

    labels = np.full(x.shape[0], UNASSIGNED, dtype=object)
    names = np.full(x.shape[0], "", dtype=object)
    cache: dict[tuple[int, ...], str] = {}
    for i in np.flatnonzero(n_guides):
        idx = tuple(cols[starts[i] : starts[i + 1]].tolist())
        names[i] = ",".join(guides[j] for j in idx)
        key = tuple(sorted(idx))
        if key not in cache:
            genes = sorted({gene for j in key for gene in targets[j]})
            if not genes:
                cache[key] = control_group
            elif max_perturbations is not None and len(genes) > max_perturbations:
                cache[key] = MULTIPLET
            else:
                cache[key] = "+".join(genes)
        labels[i] = cache[key]
    report = pd.DataFrame(
        {
            "perturbation": labels,
            "n_guides": n_guides,
            "guides": names,
            "max_count": max_count,
            "total_counts": totals,
        },
        index=guide_counts.obs_names.copy(),
    )
    report.attrs.update(min_counts=min_counts, min_fraction=min_fraction)
    report.attrs.update(max_perturbations=max_perturbations, control_group=control_group)
    n_un, n_multi = int((labels == UNASSIGNED).sum()), int((labels == MULTIPLET).sum())
    logger.info(
        f"assign_guides (count >= {min_counts}"
        + (f", fraction >= {min_fraction}" if min_fraction is not None else "")
        + f"): {len(labels)} cells; {len(labels) - n_un - n_multi} assigned "
        f"({int((labels == control_group).sum())} control, "
        f"{sum('+' in lab for lab in labels)} combinations), {n_un} unassigned, "
        f"{n_multi} multiplets (more than {max_perturbations} targeted genes)."
    )
    return report


def add_guide_assignment(
    mdata: MuData,
    *,
    rna: str = "rna",
    guides: str = "gdo",
    key_added: str = "perturbation",
    **assign_kwargs,
) -> pd.DataFrame:
    """Assign guides in a MuData and write the labels into its RNA modality.

    Runs :func:`assign_guides` on ``mdata[guides]`` (see there for the rule and for
    ``assign_kwargs``) and matches cells by ``obs_names``. No cell is removed: RNA cells
    without guide data or without a single call are labelled ``"unassigned"``, those targeting
    too many genes ``"multiplet"``, and the boolean column ``f"{key_added}_assigned"`` marks
    the cells with a usable label (control included). Select them before training.

    Parameters
    ----------
    mdata
        MuData with an expression modality and a guide-capture modality.
    rna
        Name of the expression modality that receives the labels.
    guides
        Name of the guide-capture modality (cells × guides, UMI counts).
    key_added
        Column of ``mdata[rna].obs`` written with the labels.
    **assign_kwargs
        Passed to :func:`assign_guides` (``min_counts``, ``min_fraction``, ...).

    Returns
    -------
    The :func:`assign_guides` report for the cells of ``mdata[rna]`` (in its order), with
    ``has_guide_data`` added. Writes ``mdata[rna].obs[key_added]`` (categorical) and
    ``mdata[rna].obs[f"{key_added}_assigned"]``; ``mdata.obs`` gets them on
    ``mdata.pull_obs()``. Nothing else changes.

    Examples
    --------
    >>> import anndata as ad, mudata as md, numpy as np, pandas as pd
    >>> cells = pd.DataFrame(index=["c0", "c1", "c2"])
    >>> rna = ad.AnnData(np.ones((3, 2)), obs=cells)
    >>> x = np.array([[8, 0], [0, 9], [1, 0]])
    >>> gdo = ad.AnnData(x, obs=cells, var=pd.DataFrame(index=["A_g1", "NT_1"]))
    >>> mdata = md.MuData({"rna": rna, "gdo": gdo})
    >>> report = add_guide_assignment(mdata, min_counts=5)
    >>> mdata["rna"].obs["perturbation"].tolist()
    ['A', 'ctrl', 'unassigned']

    Keep the assigned cells for training:

    >>> adata = mdata["rna"][mdata["rna"].obs["perturbation_assigned"]].copy()
    >>> adata.n_obs
    2
    """
    if not isinstance(mdata, MuData):
        raise TypeError(
            f"mdata must be a MuData, got {type(mdata).__name__}; for an AnnData of guide "
            "counts call assign_guides(adata) instead."
        )
    for arg, mod in (("rna", rna), ("guides", guides)):
        if mod not in mdata.mod:
            close = closest_names(str(mod), mdata.mod.keys()) or list(mdata.mod)
            raise KeyError(f"{arg}={mod!r} is not a modality of mdata; choose one of {close}.")
    rna_ad = mdata.mod[rna]
    report = assign_guides(mdata.mod[guides], **assign_kwargs)
    has_data = rna_ad.obs_names.isin(report.index)
    if not has_data.any():
        raise ValueError(
            f"No cell of mdata[{rna!r}] is in mdata[{guides!r}]: obs_names differ (e.g. "
            f"{rna_ad.obs_names[:2].tolist()} vs {report.index[:2].tolist()}). Give both "
            "modalities the same cell barcodes."
        )
    out = report.reindex(rna_ad.obs_names)
    out["perturbation"] = out["perturbation"].fillna(UNASSIGNED)
    out["n_guides"] = out["n_guides"].fillna(0).astype(np.int64)
    out["guides"] = out["guides"].fillna("")
    out["has_guide_data"] = has_data
    assigned = ~out["perturbation"].isin([UNASSIGNED, MULTIPLET]).to_numpy()
    rna_ad.obs[key_added] = pd.Categorical(out["perturbation"].to_numpy())
    rna_ad.obs[f"{key_added}_assigned"] = assigned
    logger.info(
        f"add_guide_assignment: {len(out)} cells in mdata[{rna!r}], {int(has_data.sum())} with "
        f"guide data; {int(assigned.sum())} assigned, "
        f"{int((out['perturbation'] == UNASSIGNED).sum())} unassigned and "
        f"{int((out['perturbation'] == MULTIPLET).sum())} multiplets kept but marked False in "
        f"obs[{f'{key_added}_assigned'!r}]."
    )
    return out
