"""Predicted against observed cells of one condition: mean changes and gene distributions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pdae_sc.tl import pearson_delta
from pdae_sc.tl._common import check_genes
from pdae_sc.tl._metrics import control_mean

from ._utils import (
    COLORS,
    as_list,
    check_return_fig,
    condition_mask,
    control_rows,
    dense_rows,
    finish,
    get_ax,
)

__all__ = ["distributions", "mean_change"]


def mean_change(
    adata_pred: AnnData,
    adata_true: AnnData,
    *,
    condition: str,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    delimiter: str = "+",
    adata_control: AnnData | None = None,
    top_genes: int | None = None,
    ax: Axes | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Scatter the predicted against the observed mean change versus control, one dot per gene.

    The mean change of a gene is its mean in ``condition`` minus its mean in the control. The
    dashed diagonal marks perfect agreement; the title gives the Pearson correlation of the
    two changes (:func:`pdae_sc.tl.pearson_delta`). Conditions are matched by their parts, so
    ``"A+B"`` also selects cells labelled ``"B+A"``.

    Parameters
    ----------
    adata_pred
        Predicted cells (``model.predict`` or :func:`pdae_sc.tl.predict_baseline`).
    adata_true
        Observed cells with the same ``var_names`` in the same order.
    condition
        The condition to show, e.g. ``"P0+P1"``.
    perturbation_key
        Condition column of ``obs``.
    control_group
        Label of the control condition.
    delimiter
        Separator between combined perturbations.
    adata_control
        Control cells (its ``control_group`` cells when it has ``perturbation_key``, else all
        of them). Default: the control cells of ``adata_true``, else of ``adata_pred``.
    top_genes
        Label this many genes with the largest observed absolute change.
    ax
        Axes to draw on; a new figure when ``None``.
    return_fig
        Return the Figure instead of the Axes.

    Returns
    -------
    The Axes (its Figure with ``return_fig=True``). The inputs are not modified.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_genes=20, seed=0)
    >>> pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive")
    >>> ax = pdae.pl.mean_change(pred, adata, condition="P0+P1", top_genes=5)
    """
    check_return_fig(return_fig)
    check_genes(adata_pred, adata_true, "adata_true")
    if adata_control is not None:
        check_genes(adata_pred, adata_control, "adata_control")
    if top_genes is not None and (not isinstance(top_genes, int | np.integer) or top_genes < 0):
        raise ValueError(f"top_genes={top_genes!r}; use a non-negative integer or None.")
    kw = {
        "perturbation_key": perturbation_key,
        "control_group": control_group,
        "delimiter": delimiter,
    }
    x_pred = dense_rows(adata_pred, condition_mask(adata_pred, condition, name="adata_pred", **kw))
    x_true = dense_rows(adata_true, condition_mask(adata_true, condition, name="adata_true", **kw))
    ctrl = control_mean(adata_pred, adata_true, adata_control, **kw)
    d_pred, d_true = x_pred.mean(0) - ctrl, x_true.mean(0) - ctrl
    r = pearson_delta(x_pred, x_true, ctrl)

    ax = get_ax(ax)
    ax.scatter(d_true, d_pred, s=14, color=COLORS["observed"], alpha=0.7, linewidths=0)
    lo = float(min(d_true.min(), d_pred.min()))
    hi = float(max(d_true.max(), d_pred.max()))
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    lims = (lo - pad, hi + pad)
    ax.plot(lims, lims, ls="--", color="0.4", lw=1, zorder=0, label="y = x")
    ax.axhline(0, color="0.85", lw=0.8, zorder=-1)
    ax.axvline(0, color="0.85", lw=0.8, zorder=-1)
    ax.set(xlim=lims, ylim=lims, aspect="equal")
    ax.set_xlabel("observed mean change vs control")
    ax.set_ylabel("predicted mean change vs control")
    ax.set_title(f"{condition}  (Pearson Δ = {r:.2f})")
    if top_genes:
        top = np.argsort(-np.abs(d_true), kind="stable")[:top_genes]
        for rank, g in enumerate(top):
            # Alternate the offsets so that neighbouring labels overlap less.
            dx, dy = (4, 4) if rank % 2 == 0 else (4, -10)
            ax.annotate(
                str(adata_true.var_names[g]),
                (d_true[g], d_pred[g]),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=7,
            )
    return finish(ax, return_fig)


def distributions(
    adata_pred: AnnData,
    adata_true: AnnData,
    *,
    condition: str,
    genes: str | Sequence[str],
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    delimiter: str = "+",
    adata_control: AnnData | None = None,
    kind: Literal["violin", "box"] = "violin",
    ax: Axes | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Observed against predicted expression of a few genes in one condition.

    One group per gene along the x axis, with side-by-side violins (or boxes) of the control
    cells (when ``adata_control`` is given), the observed and the predicted cells of
    ``condition``. All genes share one Axes and one y axis, so pick genes on a similar scale.

    Parameters
    ----------
    adata_pred
        Predicted cells.
    adata_true
        Observed cells with the same ``var_names`` in the same order.
    condition
        The condition to show; ``"A+B"`` also selects cells labelled ``"B+A"``.
    genes
        One gene name or a list of names (``var_names``).
    perturbation_key
        Condition column of ``obs``.
    control_group
        Label of the control condition.
    delimiter
        Separator between combined perturbations.
    adata_control
        Control cells to show as a reference (its ``control_group`` cells when it has
        ``perturbation_key``, else all of them).
    kind
        ``"violin"`` or ``"box"``.
    ax
        Axes to draw on; a new figure when ``None``.
    return_fig
        Return the Figure instead of the Axes.

    Returns
    -------
    One Axes for any number of genes (its Figure with ``return_fig=True``). The inputs are
    not modified.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=3, n_genes=20, seed=0)
    >>> pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive")
    >>> ax = pdae.pl.distributions(
    ...     pred, adata, condition="P0+P1", genes=["gene_0", "gene_1"], adata_control=adata
    ... )
    """
    check_return_fig(return_fig)
    if kind not in ("violin", "box"):
        raise ValueError(f"kind={kind!r}; use 'violin' or 'box'.")
    genes = as_list(genes, "genes")
    check_genes(adata_pred, adata_true, "adata_true")
    missing = [g for g in genes if g not in adata_true.var_names]
    if missing:
        raise KeyError(
            f"genes {missing} are not in var_names (e.g. {list(adata_true.var_names[:5])})."
        )
    kw = {
        "perturbation_key": perturbation_key,
        "control_group": control_group,
        "delimiter": delimiter,
    }
    cols = adata_true.var_names.get_indexer(genes)
    groups: dict[str, np.ndarray] = {}
    if adata_control is not None:
        check_genes(adata_pred, adata_control, "adata_control")
        groups["control"] = control_rows(adata_control, **kw)[:, cols]
    for name, adata in (("observed", adata_true), ("predicted", adata_pred)):
        side = "adata_true" if name == "observed" else "adata_pred"
        groups[name] = dense_rows(adata, condition_mask(adata, condition, name=side, **kw))[
            :, cols
        ]

    n = len(groups)
    ax = get_ax(ax, figsize=(max(3.5, 1.8 + 0.4 * n * len(genes)), 3.5))
    width = 0.8 / n
    for j, (name, values) in enumerate(groups.items()):
        pos = np.arange(len(genes)) + (j - (n - 1) / 2) * width
        data = [values[:, i] for i in range(len(genes))]
        if kind == "violin":
            parts = ax.violinplot(
                data, positions=pos, widths=width * 0.95, showmedians=True, showextrema=False
            )
            for body in parts["bodies"]:
                body.set(facecolor=COLORS[name], edgecolor=COLORS[name], alpha=0.6)
            parts["cmedians"].set(color="black", linewidth=1)
        else:
            ax.boxplot(
                data,
                positions=pos,
                widths=width * 0.8,
                patch_artist=True,
                boxprops={"facecolor": COLORS[name], "alpha": 0.6},
                medianprops={"color": "black"},
                flierprops={"markersize": 2},
                manage_ticks=False,
            )
    ax.set_xticks(np.arange(len(genes)), genes, rotation=45 if len(genes) > 6 else 0)
    ax.set_xlim(-0.6, len(genes) - 0.4)
    ax.set_ylabel("expression")
    ax.set_title(condition)
    handles = [Patch(facecolor=COLORS[k], alpha=0.6, label=k) for k in groups]
    ax.legend(handles=handles, frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    return finish(ax, return_fig)
