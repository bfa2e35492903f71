"""Put observed and predicted cells into one AnnData for scanpy plotting."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["combine_predictions"]


def _method(adata: AnnData) -> str | None:
    pdae_uns = adata.uns.get("pdae")
    return pdae_uns.get("method") if isinstance(pdae_uns, dict) else None


def _check_order(adata_pred: AnnData, adata_true: AnnData) -> None:
    """Refuse the pre-0.2 order ``(observed, prediction)``, which would swap the origins."""
    if _method(adata_true) is not None and _method(adata_pred) is None:
        raise ValueError(
            f"adata_true carries uns['pdae']['method']={_method(adata_true)!r} and adata_pred "
            "does not: the arguments look swapped. The prediction comes first, as in "
            "pdae.tl.evaluate: combine_predictions(adata_pred, adata_true)."
        )


def combine_predictions(
    adata_pred: AnnData,
    adata_true: AnnData,
    *,
    key_added: str = "origin",
    layer: str | None = None,
) -> AnnData:
    """Concatenate observed and predicted cells, marking each cell's origin.

    The argument order is that of :func:`evaluate` and every other comparison in
    ``pdae.tl`` and ``pdae.pl``: the prediction first, the observed cells second.

    Parameters
    ----------
    adata_pred
        Predicted cells (from ``PDAE.predict`` or :func:`predict_baseline`).
    adata_true
        Observed cells with the same genes in the same order.
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
    >>> pdae.tl.combine_predictions(pred, adata).obs["origin"].value_counts().to_dict()
    {'observed': 20, 'additive': 5}
    """
    _check_order(adata_pred, adata_true)
    adata = adata_true
    if list(adata.var_names) != list(adata_pred.var_names):
        raise ValueError(
            "adata_true and adata_pred have different genes (or gene order); predict with a "
            "model trained on these genes, or subset with adata_true[:, adata_pred.var_names]."
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
