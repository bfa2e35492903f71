"""Observed and predicted cells in one embedding (scanpy PCA / neighbours / UMAP)."""

from __future__ import annotations

from typing import Literal

from anndata import AnnData

from ._combine import combine_predictions

__all__ = ["joint_embedding"]


def joint_embedding(
    adata_pred: AnnData,
    adata_true: AnnData,
    *,
    basis: Literal["umap", "pca"] = "umap",
    n_pcs: int = 30,
    key_added: str = "origin",
    layer: str | None = None,
    seed: int = 0,
) -> AnnData:
    """Embed predicted and observed cells together, ready for ``sc.pl.umap`` / ``sc.pl.pca``.

    Concatenates the cells with :func:`combine_predictions`, then runs ``sc.pp.pca`` and,
    for ``basis="umap"``, ``sc.pp.neighbors`` and ``sc.tl.umap`` on the new object. Plot
    the result with :func:`pdae_sc.pl.embedding` or scanpy's own functions.

    Parameters
    ----------
    adata_pred
        Predicted cells (``model.predict``, :func:`predict_baseline`).
    adata_true
        Observed cells with the same genes in the same order.
    basis
        ``"umap"`` (PCA, neighbours and UMAP) or ``"pca"`` (PCA only).
    n_pcs
        Principal components to compute and to build the neighbour graph on (at most one
        less than the number of cells and of genes).
    key_added
        Column of ``obs`` marking each cell's origin: ``"observed"`` or the prediction method.
    layer
        Embed this layer of both inputs instead of ``X`` (see :func:`combine_predictions`).
    seed
        Seed of PCA, neighbours and UMAP (their ``random_state``).

    Returns
    -------
    A new AnnData (observed cells first) with ``obs[key_added]``, the ``obs`` columns of both
    inputs, ``obsm["X_pca"]``, ``varm["PCs"]``, ``uns["pca"]`` and, for ``basis="umap"``,
    ``obsp["distances"]``, ``obsp["connectivities"]``, ``uns["neighbors"]``,
    ``obsm["X_umap"]`` and ``uns["umap"]``. Neither input is modified.

    Examples
    --------
    >>> import scanpy as sc
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_genes=20, seed=0)
    >>> pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive")
    >>> joint = pdae.tl.joint_embedding(pred, adata, basis="pca")
    >>> axes = sc.pl.pca(joint, color=["origin", "perturbation"], show=False)
    """
    import scanpy as sc  # imported here: scanpy is slow to import

    if basis not in ("umap", "pca"):
        raise ValueError(f"basis={basis!r}; use 'umap' or 'pca'.")
    if isinstance(n_pcs, bool) or not isinstance(n_pcs, int) or n_pcs < 1:
        raise ValueError(f"n_pcs={n_pcs!r}; use a positive integer.")
    joint = combine_predictions(adata_pred, adata_true, key_added=key_added, layer=layer)
    n_comps = min(n_pcs, joint.n_obs - 1, joint.n_vars - 1)
    if n_comps < 1:
        raise ValueError(
            f"Too few cells or genes for PCA ({joint.n_obs} cells, {joint.n_vars} genes)."
        )
    sc.pp.pca(joint, n_comps=n_comps, random_state=seed)
    if basis == "umap":
        sc.pp.neighbors(joint, n_pcs=n_comps, random_state=seed)
        sc.tl.umap(joint, random_state=seed)
    return joint
