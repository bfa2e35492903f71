"""MuData inputs: the cells and labels a PDAE trains on (``PDAE.setup_mudata``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from pdae_sc.data._labels import closest_names

from ._guides import MULTIPLET, UNASSIGNED, add_guide_assignment

__all__ = ["mudata_training_data"]

logger = logging.getLogger(__name__)


def _check_modality(mdata: MuData, arg: str, mod: str) -> None:
    if mod not in mdata.mod:
        close = closest_names(str(mod), list(mdata.mod)) or list(mdata.mod)
        raise KeyError(f"{arg}={mod!r} is not a modality of mdata; choose one of {close}.")


def _ensure_obs_column(mdata: MuData, rna: str, key: str, role: str) -> None:
    """Make ``mdata[rna].obs[key]`` exist, copying it from ``mdata.obs`` if only there."""
    mod = mdata.mod[rna]
    if key in mod.obs.columns:
        return
    if key in mdata.obs.columns:
        mod.obs[key] = mdata.obs[key].reindex(mod.obs_names).to_numpy()
        logger.info(f"setup_mudata: copied mdata.obs[{key!r}] into mdata[{rna!r}].obs[{key!r}].")
        return
    cols = [str(c) for c in (*mod.obs.columns, *mdata.obs.columns)]
    raise KeyError(
        f"{role}={key!r} is neither a column of mdata[{rna!r}].obs nor of mdata.obs; closest "
        f"columns: {closest_names(str(key), cols) or cols[:10]}."
    )


def mudata_training_data(
    mdata: MuData,
    *,
    rna: str,
    perturbation_key: str | None,
    guide_modality: str | None,
    key_added: str,
    control_group: str,
    dosage_key: str | None = None,
    context_keys: Sequence[str] = (),
    guide_kwargs: Mapping[str, object] | None = None,
) -> tuple[AnnData, str]:
    """The AnnData of labelled cells that ``PDAE.setup_mudata`` registers.

    Labels come from ``mdata[rna].obs[perturbation_key]`` (or ``mdata.obs``), or from the
    guide counts in ``mdata[guide_modality]`` via :func:`add_guide_assignment`. Cells whose
    label is missing, ``"unassigned"`` or ``"multiplet"`` are left out; the count is logged.

    Returns
    -------
    ``(adata, perturbation_key)``: ``mdata[rna]`` itself when every cell has a label, else an
    in-memory copy of the labelled cells; and the column holding the labels.
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"mdata must be a MuData, got {type(mdata).__name__}.")
    _check_modality(mdata, "rna", rna)
    if (perturbation_key is None) == (guide_modality is None):
        raise ValueError(
            f"Give exactly one of perturbation_key={perturbation_key!r} (a column with labels) "
            f"and guide_modality={guide_modality!r} (a modality of guide counts, e.g. 'gdo')."
        )
    if guide_modality is not None:
        _check_modality(mdata, "guide_modality", guide_modality)
        if guide_modality == rna:
            raise ValueError(f"guide_modality={guide_modality!r} is the expression modality.")
        add_guide_assignment(
            mdata,
            rna=rna,
            guides=guide_modality,
            key_added=key_added,
            control_group=control_group,
            **dict(guide_kwargs or {}),
        )
        perturbation_key = key_added
    elif guide_kwargs:
        raise ValueError(
            f"guide_kwargs={dict(guide_kwargs)!r} only apply with guide_modality=; labels come "
            f"from obs[{perturbation_key!r}] here."
        )
    if not isinstance(perturbation_key, str):
        raise TypeError(f"perturbation_key={perturbation_key!r} must be a column name (str).")
    _ensure_obs_column(mdata, rna, perturbation_key, "perturbation_key")
    if dosage_key is not None:
        _ensure_obs_column(mdata, rna, dosage_key, "dosage_key")
    for key in context_keys:
        _ensure_obs_column(mdata, rna, key, "context_keys")

    mod = mdata.mod[rna]
    labels = mod.obs[perturbation_key]
    missing = labels.isna().to_numpy()
    text = labels.astype(object).to_numpy()
    unassigned = ~missing & (text == UNASSIGNED)
    multiplet = ~missing & (text == MULTIPLET)
    keep = ~(missing | unassigned | multiplet)
    if not keep.any():
        raise ValueError(
            f"No cell of mdata[{rna!r}] has a usable label in obs[{perturbation_key!r}] "
            f"({int(unassigned.sum())} unassigned, {int(multiplet.sum())} multiplets, "
            f"{int(missing.sum())} missing). Lower min_counts, or check the labels."
        )
    n_drop = int((~keep).sum())
    logger.info(
        f"setup_mudata: {int(keep.sum())} of {mod.n_obs} cells of mdata[{rna!r}] have a label "
        f"in obs[{perturbation_key!r}]; {n_drop} left out of training "
        f"({int(unassigned.sum())} unassigned, {int(multiplet.sum())} multiplets, "
        f"{int(missing.sum())} missing). mdata itself keeps every cell."
    )
    if n_drop == 0:
        return mod, perturbation_key
    subset = mod[np.flatnonzero(keep)]
    adata = subset.to_memory() if mod.isbacked else subset.copy()
    if isinstance(adata.obs[perturbation_key].dtype, pd.CategoricalDtype):
        adata.obs[perturbation_key] = adata.obs[perturbation_key].cat.remove_unused_categories()
    return adata, perturbation_key
