"""Overview of the evaluation table of :func:`pdae_sc.tl.evaluate` across methods."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._utils import check_return_fig, finish, get_ax

__all__ = ["metrics"]

# Metrics of ``tl.evaluate`` where larger is better; every other metric: smaller is better.
HIGHER_IS_BETTER = ("r2_mean", "pearson_delta")


# ``vert=False`` is deprecated from matplotlib 3.10, where ``orientation`` replaces it.
_HORIZONTAL = (
    {"orientation": "horizontal"}
    if "orientation" in inspect.signature(Axes.boxplot).parameters
    else {"vert": False}
)


def _higher_is_better(metric: str) -> bool:
    return metric.startswith(HIGHER_IS_BETTER)


def metrics(
    df: pd.DataFrame,
    *,
    metric: str = "energy_distance",
    seed: int = 0,
    ax: Axes | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Compare methods on one metric across conditions (box, one dot per condition, mean).

    Methods are rows, ordered from best (top) to worst by their mean over conditions:
    ascending for distances (``energy_distance``, ``mmd``, ``mean_l2``), descending for
    ``r2_mean`` and the ``pearson_delta*`` columns. Concatenate the tables of several
    methods, e.g. ``pd.concat([evaluate(pred, adata), evaluate(baseline, adata)])``.

    Parameters
    ----------
    df
        Output of :func:`pdae_sc.tl.evaluate`, with columns ``method`` and ``metric`` (one
        row per condition and method). Rows with a missing value are skipped.
    metric
        Column to plot.
    seed
        Seed of the vertical jitter of the dots.
    ax
        Axes to draw on; a new figure when ``None``.
    return_fig
        Return the Figure instead of the Axes.

    Returns
    -------
    The Axes (its Figure with ``return_fig=True``). ``df`` is not modified.

    Examples
    --------
    >>> import pandas as pd
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_genes=20, seed=0)
    >>> held_out = ["P0+P1", "P2+P3"]
    >>> df = pd.concat(
    ...     [
    ...         pdae.tl.evaluate(pdae.tl.predict_baseline(adata, held_out, method=m), adata)
    ...         for m in ("additive", "linear", "control")
    ...     ]
    ... )
    >>> ax = pdae.pl.metrics(df, metric="energy_distance")
    """
    check_return_fig(return_fig)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a DataFrame from tl.evaluate, got {type(df).__name__}.")
    if "method" not in df.columns:
        raise KeyError(f"df has no 'method' column (columns: {list(df.columns)}).")
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    numeric = [c for c in numeric if c not in ("n_pred", "n_true")]
    if metric not in df.columns or metric not in numeric:
        raise KeyError(f"metric={metric!r} is not a numeric column of df; choose from {numeric}.")
    data = df[["method", metric]].dropna()
    if data.empty:
        raise ValueError(f"Column {metric!r} has no finite values.")
    values = {
        str(m): g[metric].to_numpy(dtype=float) for m, g in data.groupby("method", sort=False)
    }
    higher = _higher_is_better(metric)
    order = sorted(values, key=lambda m: -values[m].mean() if higher else values[m].mean())
    # Best method on top: the first row gets the largest y position.
    ypos = {m: len(order) - 1 - i for i, m in enumerate(order)}

    ax = get_ax(ax, figsize=(5.0, 0.9 + 0.45 * len(order)))
    ax.boxplot(
        [values[m] for m in order],
        positions=[ypos[m] for m in order],
        **_HORIZONTAL,
        widths=0.6,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "#dbe7f3", "edgecolor": "0.4"},
        medianprops={"color": "0.3"},
        whiskerprops={"color": "0.4"},
        capprops={"color": "0.4"},
        manage_ticks=False,
    )
    rng = np.random.default_rng(seed)
    for m in order:
        v = values[m]
        jitter = rng.uniform(-0.15, 0.15, len(v))
        ax.scatter(v, ypos[m] + jitter, s=12, color="#1f77b4", alpha=0.7, linewidths=0, zorder=3)
        ax.scatter([v.mean()], [ypos[m]], marker="D", s=40, color="#d62728", zorder=4)
    ax.set_yticks([ypos[m] for m in order], order)
    ax.set_ylim(-0.6, len(order) - 0.4)
    direction = "higher" if higher else "lower"
    ax.set_xlabel(f"{metric} ({direction} is better)")
    ax.set_ylabel("method")
    n_cond = int(data.groupby("method").size().max())
    ax.set_title(f"{metric} over {n_cond} condition{'s' * (n_cond != 1)}")
    handles = [
        Line2D([], [], marker="o", ls="", color="#1f77b4", label="condition"),
        Line2D([], [], marker="D", ls="", color="#d62728", label="mean"),
    ]
    ax.legend(
        handles=handles,
        frameon=False,
        fontsize=8,
        loc="lower left",
        bbox_to_anchor=(1.0, 0.0),
    )
    ax.grid(axis="x", color="0.92", zorder=0)
    ax.set_axisbelow(True)
    return finish(ax, return_fig)
