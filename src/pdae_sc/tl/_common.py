"""Helpers shared by the tools (package-internal: not part of the public API)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from pdae_sc.data._labels import encode_conditions

__all__ = [
    "check_genes",
    "control_rows",
    "dense_rows",
    "layer_matrix",
    "obs_column",
    "pearson",
    "r2",
]


def layer_matrix(adata: AnnData, layer: str | None, name: str):
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer={layer!r} is not in {name}.layers ({list(adata.layers)}).")
    return adata.layers[layer]


def obs_column(adata: AnnData, key: str, name: str) -> pd.Series:
    if key not in adata.obs:
        raise KeyError(f"{key!r} is not a column of {name}.obs ({list(adata.obs.columns)}).")
    return adata.obs[key]


def check_genes(a: AnnData, b: AnnData, name: str) -> None:
    if not a.var_names.equals(b.var_names):
        diff = [
            (i, p, t)
            for i, (p, t) in enumerate(zip(a.var_names, b.var_names, strict=False))
            if p != t
        ]
        raise ValueError(
            f"adata_pred has {a.n_vars} genes and {name} {b.n_vars}; they must have the same "
            f"var_names in the same order (first differences: {diff[:3]}). Subset both, e.g. "
            f"{name} = {name}[:, adata_pred.var_names]."
        )


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denom if denom > 0 else float("nan")


def r2(true_mean: np.ndarray, pred_mean: np.ndarray) -> float:
    ss_tot = float(((true_mean - true_mean.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(((true_mean - pred_mean) ** 2).sum()) / ss_tot


def dense_rows(mat, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (any order, repeats allowed) read in increasing order, as backed h5py needs."""
    uniq, inverse = np.unique(idx, return_inverse=True)
    rows = mat[uniq]
    rows = rows.toarray() if sparse.issparse(rows) else np.asarray(rows)
    return rows.astype(np.float64)[inverse]


def control_rows(
    adata: AnnData, perturbation_key: str, control_group: str, delimiter: str
) -> np.ndarray:
    """Rows of ``adata``'s control cells; every row when it has no ``perturbation_key``."""
    if perturbation_key not in adata.obs:
        return np.arange(adata.n_obs)
    enc = encode_conditions(
        adata.obs[perturbation_key],
        control_group=control_group,
        delimiter=delimiter,
        name=perturbation_key,
    )
    return np.flatnonzero(~enc.labels.any(axis=1)[enc.codes])
