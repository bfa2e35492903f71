"""Plot observed and predicted cells in one embedding (from :func:`pdae_sc.tl.joint_embedding`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pdae_sc.tl import joint_embedding as tl_joint_embedding

from ._utils import as_list, check_return_fig

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
    """Deprecated alias of :func:`pdae_sc.tl.joint_embedding` (note its argument order).

    ``pl.joint_embedding(adata, adata_pred, random_state=s)`` is
    ``tl.joint_embedding(adata_pred, adata, seed=s)``; this alias is removed in the next
    release.
    """
    warnings.warn(
        "pdae.pl.joint_embedding(adata, adata_pred, random_state=...) is deprecated: it "
        "computes an embedding, so it is a tool now. Use "
        "pdae.tl.joint_embedding(adata_pred, adata, seed=...) (prediction first).",
        FutureWarning,
        stacklevel=2,
    )
    return tl_joint_embedding(
        adata_pred,
        adata,
        basis=basis,
        n_pcs=n_pcs,
        key_added=key_added,
        layer=layer,
        seed=random_state,
    )


def embedding(
    joint: AnnData,
    *,
    color: str | Sequence[str],
    basis: str = "umap",
    ax: Axes | None = None,
    return_fig: bool = False,
    **kwargs,
) -> Axes | list[Axes] | Figure:
    """Plot an embedding of :func:`pdae_sc.tl.joint_embedding` with ``sc.pl.embedding``.

    Scanpy is called with ``show=False``; nothing is shown.

    Parameters
    ----------
    joint
        AnnData with ``obsm[f"X_{basis}"]``, e.g. from :func:`pdae_sc.tl.joint_embedding`.
    color
        One ``obs`` column or gene (one Axes) or several (one panel each).
    basis
        Embedding name: ``"umap"``, ``"pca"`` or any ``obsm`` key (``"X_umap"`` works too).
    ax
        Axes to draw on (one ``color`` only); a new figure when ``None``.
    return_fig
        Return the Figure instead of the Axes.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (e.g. ``size``, ``palette``, ``groups``).

    Returns
    -------
    The Axes for one ``color``, a list of Axes (one per panel) for several, or the Figure
    with ``return_fig=True``. Like scanpy, this stores the colours of categorical columns in
    ``joint.uns[f"{color}_colors"]``; nothing else is written.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_genes=20, seed=0)
    >>> pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive")
    >>> joint = pdae.tl.joint_embedding(pred, adata, basis="pca")
    >>> ax = pdae.pl.embedding(joint, color="origin", basis="pca")
    >>> fig = pdae.pl.embedding(
    ...     joint, color=["origin", "perturbation"], basis="pca", return_fig=True
    ... )
    """
    import scanpy as sc

    check_return_fig(return_fig)
    colors = as_list(color, "color")
    key = basis if basis in joint.obsm else f"X_{basis}"
    if key not in joint.obsm:
        raise KeyError(
            f"basis={basis!r}: joint.obsm has no {key!r} ({list(joint.obsm)}); compute it with "
            "pdae.tl.joint_embedding(adata_pred, adata, basis=...)."
        )
    if len(colors) > 1 and ax is not None:
        raise ValueError(f"ax can only be given for one color, got color={colors}.")
    if "show" in kwargs or "return_fig" in kwargs:
        raise TypeError("show is set by pdae.pl.embedding; do not pass it.")
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
    first = out[0] if isinstance(out, list) else out
    if return_fig:
        return first.figure
    return out
