"""MuData outputs: predictions added to a MuData as a modality."""

from __future__ import annotations

import logging
import warnings

import pandas as pd
from anndata import AnnData
from mudata import MuData

__all__ = ["add_predictions_to_mudata"]

logger = logging.getLogger(__name__)


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
