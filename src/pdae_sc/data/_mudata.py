"""MuData inputs: the cells and labels a PDAE trains on, and predictions added as a modality."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from ._guides import MULTIPLET, UNASSIGNED, add_guide_assignment
from ._labels import closest_names

__all__ = ["add_predictions_to_mudata", "mudata_training_data"]

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


def add_predictions_to_mudata(
    mdata: MuData,
    pred: AnnData,
    *,
    key_added: str = "pdae",
    overwrite: bool = False,
) -> None:
    """Add predicted cells (``model.predict`` output) to a MuData as a new modality.

    The predicted cells are new observations: ``mdata`` gains ``pred.n_obs`` cells, present
    in ``mdata[key_added]`` only. Their names must differ from the cells already in
    ``mdata``; if they do not, the modality gets a copy of ``pred`` with names prefixed by
    ``f"{key_added}:"`` (``pred`` itself is never changed).

    Parameters
    ----------
    mdata
        MuData to extend, e.g. the one the model was set up with.
    pred
        Predicted cells, e.g. ``model.predict(["A+B"])``.
    key_added
        Name of the new modality.
    overwrite
        Replace an existing modality ``key_added``.

    Returns
    -------
    ``None``. Writes ``mdata.mod[key_added]`` (``pred``, or its renamed copy) and calls
    ``mdata.update()``, which extends ``mdata.obs`` and ``mdata.var``.

    Examples
    --------
    >>> import mudata as md
    >>> import pdae_sc as pdae
    >>> rna = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
    >>> mdata = md.MuData({"rna": rna})
    >>> adata = pdae.model.PDAE.setup_mudata(mdata, perturbation_key="perturbation")
    >>> model = pdae.model.PDAE(mdata, n_latent=8)
    >>> model.train(max_epochs=1, enable_progress_bar=False)
    >>> pred = model.predict(["P0+P1"], n_cells=50, seed=0)
    >>> pdae.data.add_predictions_to_mudata(mdata, pred)
    >>> mdata["pdae"].obs["perturbation"].unique().tolist()
    ['P0+P1']
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"mdata must be a MuData, got {type(mdata).__name__}.")
    if not isinstance(pred, AnnData):
        raise TypeError(f"pred must be an AnnData (model.predict output), got {type(pred)}.")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added={key_added!r} must be a non-empty modality name.")
    if key_added in mdata.mod and not overwrite:
        raise ValueError(
            f"mdata already has a modality {key_added!r}; choose another key_added or pass "
            "overwrite=True."
        )
    others = [m for k, m in mdata.mod.items() if k != key_added]
    taken = pd.Index([]).append([m.obs_names for m in others]) if others else pd.Index([])
    if pred.obs_names.isin(taken).any():
        pred = pred.copy()
        pred.obs_names = [f"{key_added}:{n}" for n in pred.obs_names]
        logger.info(
            f"add_predictions_to_mudata: predicted cell names were taken; stored a copy "
            f"named {pred.obs_names[0]!r}, ..."
        )
        if pred.obs_names.isin(taken).any():
            raise ValueError(
                f"Predicted cell names clash with mdata cells even with prefix {key_added!r}; "
                "rename them, e.g. pred.obs_names = 'pred_' + pred.obs_names."
            )
    mdata.mod[key_added] = pred
    with warnings.catch_warnings():
        # predictions share gene names with the RNA: expected (mudata words it either way,
        # depending on its pull_on_update option)
        warnings.filterwarnings("ignore", message=".*var_names are intersecting.*")
        warnings.filterwarnings("ignore", message=".*var_names are not unique.*")
        # mudata >= 0.3.2 warns that update() will stop pulling obs/var columns in 0.4; only
        # the global obs/var indices are needed here, which update() extends either way
        warnings.filterwarnings("ignore", message=r".*\.update\(\) will not pull.*")
        mdata.update()
