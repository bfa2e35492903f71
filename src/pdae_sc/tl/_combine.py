"""Put observed and predicted cells into one AnnData for scanpy plotting."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["combine_predictions"]


def combine_predictions(
    adata: AnnData,
    adata_pred: AnnData,
    *,
    key_added: str = "origin",
    layer: str | None = None,
) -> AnnData:
    """Concatenate observed and predicted cells, marking each cell's origin.

    Parameters
    ----------
    adata
        Observed cells.
    adata_pred
        Predicted cells (from ``PDAE.predict`` or :func:`predict_baseline`), same genes.
    key_added
        Column of ``obs`` to write: ``"observed"`` or the prediction method
        (``adata_pred.uns["pdae"]["method"]``, ``"predicted"`` if absent).
    layer
        Take the observed expression from this layer instead of ``X``.

    Returns
    -------
    A new AnnData (observed cells first) with the union of the ``obs`` columns (a column
    only one side has is missing, NaN, in the other's cells), the observed ``var`` and
    ``obs[key_added]``; obs names are made unique. Neither input is modified.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=2, n_cells_per_condition=5, seed=0)
    >>> pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=5)
    >>> pdae.tl.combine_predictions(adata, pred).obs["origin"].value_counts().to_dict()
    {'observed': 20, 'additive': 5}
    """
    if list(adata.var_names) != list(adata_pred.var_names):
        raise ValueError(
            "adata and adata_pred have different genes (or gene order); predict with a model "
            "trained on these genes, or subset with adata[:, adata_pred.var_names]."
        )
    method = adata_pred.uns.get("pdae", {}).get("method")
    label = "predicted" if method is None else str(method)
    if label == "observed":
        raise ValueError("The prediction method is called 'observed'; rename it in uns['pdae'].")
    x_obs = adata.X if layer is None else adata.layers[layer]
    x_pred = adata_pred.X
    if sp.issparse(x_obs) or sp.issparse(x_pred):
        x = sp.vstack([sp.csr_matrix(x_obs), sp.csr_matrix(x_pred)]).tocsr()
    else:
        x = np.vstack([np.asarray(x_obs, dtype=np.float32), np.asarray(x_pred, dtype=np.float32)])
    obs = pd.concat(
        [adata.obs.assign(**{key_added: "observed"}), adata_pred.obs.assign(**{key_added: label})],
        axis=0,
    )
    for col in obs.columns:
        if obs[col].dtype == object or isinstance(obs[col].dtype, pd.CategoricalDtype):
            values = obs[col].astype(object)
            present = values.notna()  # a column only one side has stays missing on the other
            values[present] = values[present].astype(str)
            obs[col] = values.astype("category")
    obs.index = (
        pd.Index([f"{o}-{n}" for o, n in zip(obs[key_added], obs.index, strict=True)])
        if not obs.index.is_unique
        else obs.index
    )
    out = ad.AnnData(X=x, obs=obs, var=adata.var.copy())
    return out
