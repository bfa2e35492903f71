"""Observed and predicted cells in one embedding (scanpy PCA / UMAP)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pdae_sc.tl import combine_predictions

from ._utils import as_list

__all__ = ["embedding", "joint_embedding"]


def joint_embedding(
    adata: AnnData,
    adata_pred: AnnData,
    *,
    basis: Literal["umap", "pca"] = "umap",
    n_pcs: int = 30,
    key_added: str = "origin",
    layer: str | None = None,
    random_state: int = 0,
) -> AnnData:
    """Embed observed and predicted cells together, ready for ``sc.pl.umap`` / ``sc.pl.pca``.

    Concatenates the cells with :func:`pdae_sc.tl.combine_predictions`, then runs
    ``sc.pp.pca`` and, for ``basis="umap"``, ``sc.pp.neighbors`` and ``sc.tl.umap`` on the
    new object.

    Parameters
    ----------
    adata
        Observed cells.
    adata_pred
        Predicted cells with the same genes (``model.predict``,
        :func:`pdae_sc.tl.predict_baseline`).
    basis
        ``"umap"`` (PCA, neighbours and UMAP) or ``"pca"`` (PCA only).
    n_pcs
        Principal components to compute and to build the neighbour graph on (at most one
        less than the number of cells and of genes).
    key_added
        Column of ``obs`` marking each cell's origin: ``"observed"`` or the prediction method.
    layer
        Take the observed expression from this layer of ``adata`` instead of ``X``.
    random_state
        Seed of PCA, neighbours and UMAP.

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
    >>> joint = pdae.pl.joint_embedding(adata, pred, basis="pca")
    >>> axes = sc.pl.pca(joint, color=["origin", "perturbation"], show=False)
    """
    import scanpy as sc  # imported here: scanpy is slow to import

    if basis not in ("umap", "pca"):
        raise ValueError(f"basis={basis!r}; use 'umap' or 'pca'.")
    if not isinstance(n_pcs, int) or n_pcs < 1:
        raise ValueError(f"n_pcs={n_pcs!r}; use a positive integer.")
    joint = combine_predictions(adata, adata_pred, key_added=key_added, layer=layer)
    n_comps = min(n_pcs, joint.n_obs - 1, joint.n_vars - 1)
    if n_comps < 1:
        raise ValueError(
            f"Too few cells or genes for PCA ({joint.n_obs} cells, {joint.n_vars} genes)."
        )
    sc.pp.pca(joint, n_comps=n_comps, random_state=random_state)
    if basis == "umap":
        sc.pp.neighbors(joint, n_pcs=n_comps, random_state=random_state)
        sc.tl.umap(joint, random_state=random_state)
    return joint


def embedding(
    joint: AnnData,
    *,
    color: str | Sequence[str],
    basis: str = "umap",
    ax: Axes | None = None,
    **kwargs,
) -> Axes | Figure:
    """Plot an embedding of :func:`joint_embedding` with ``sc.pl.embedding`` (``show=False``).

    Parameters
    ----------
    joint
        AnnData with ``obsm[f"X_{basis}"]``, e.g. from :func:`joint_embedding`.
    color
        One ``obs`` column or gene (one Axes) or several (one panel each, a Figure).
    basis
        Embedding name: ``"umap"``, ``"pca"`` or any ``obsm`` key (``"X_umap"`` works too).
    ax
        Axes to draw on (one ``color`` only); a new figure when ``None``.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (e.g. ``size``, ``palette``, ``groups``).

    Returns
    -------
    The Axes for one ``color``; the Figure for several. Like scanpy, this stores the colours
    of categorical columns in ``joint.uns[f"{color}_colors"]``; nothing else is written.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_genes=20, seed=0)
    >>> pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive")
    >>> joint = pdae.pl.joint_embedding(adata, pred, basis="pca")
    >>> ax = pdae.pl.embedding(joint, color="origin", basis="pca")
    >>> axes = pdae.pl.embedding(joint, color=["origin", "perturbation"], basis="pca")
    """
    import scanpy as sc

    colors = as_list(color, "color")
    key = basis if basis in joint.obsm else f"X_{basis}"
    if key not in joint.obsm:
        raise KeyError(
            f"basis={basis!r}: joint.obsm has no {key!r} ({list(joint.obsm)}); compute it with "
            "pdae.pl.joint_embedding(adata, adata_pred, basis=...)."
        )
    if len(colors) > 1 and ax is not None:
        raise ValueError(f"ax can only be given for one color, got color={colors}.")
    if "show" in kwargs or "return_fig" in kwargs:
        raise TypeError("show and return_fig are set by pdae.pl.embedding; do not pass them.")
    if len(colors) > 1:
        kwargs.setdefault("wspace", 0.4)  # room for the legend of the panel on the left
    out = sc.pl.embedding(
        joint,
        # "umap" rather than "X_umap": scanpy then labels the axes UMAP1, UMAP2.
        basis=key.removeprefix("X_"),
        color=colors if len(colors) > 1 else colors[0],
        ax=ax,
        show=False,
        **kwargs,
    )
    if len(colors) > 1:
        return out[0].figure
    return out
