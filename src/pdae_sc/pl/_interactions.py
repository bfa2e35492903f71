"""Genetic interaction scores of :func:`pdae_sc.tl.interaction_scores` and its predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._utils import COLORS, check_return_fig, finish, get_ax

__all__ = ["interactions"]

_ORIGIN_COLORS = {"measured": COLORS["observed"], "predicted": COLORS["predicted"]}
_KINDS = ("scatter", "ranking")


def _check_columns(scores: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in scores.columns]
    if missing:
        raise KeyError(
            f"scores has no column(s) {missing} (columns: {list(scores.columns)}); pass the "
            "table of pdae.tl.interaction_scores or pdae.tl.predicted_interaction_scores."
        )


def _color(origin: str) -> str:
    return _ORIGIN_COLORS.get(origin, "0.4")


def interactions(
    scores: pd.DataFrame,
    *,
    kind: str = "scatter",
    x: str = "model_fit",
    y: str = "magnitude",
    rank_by: str = "energy_distance",
    origin: str | None = "predicted",
    n_labels: int = 8,
    n_top: int = 20,
    ax: Axes | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Plot interaction scores: the classic magnitude vs model fit map, or a ranking.

    ``kind="scatter"`` draws every pair at (``x``, ``y``), by default the model fit (distance
    correlation of the double's change with its best combination of the singles) against
    the magnitude ``sqrt(c_A² + c_B²)`` (Norman et al. 2019, Fig. 2), coloured by ``origin``
    (measured: blue, predicted: orange). The dashed line is the additive magnitude
    ``sqrt(2)`` (``c_A = c_B = 1``); pairs above it are synergistic, below it buffering.
    The ``n_labels`` pairs of each origin with the largest ``rank_by`` are named.

    ``kind="ranking"`` draws the ``n_top`` pairs with the largest ``rank_by`` (the
    energy-distance departure from additivity by default) as horizontal bars, largest on
    top, of the rows whose ``origin`` matches (``None``: all rows). With ``rank_by=
    "energy_distance"`` a black tick on each bar marks the noise floor
    (``energy_distance_floor``): a bar that does not clearly pass its tick is not a
    departure the sample can show.

    Parameters
    ----------
    scores
        Table of :func:`pdae_sc.tl.interaction_scores` and/or
        :func:`pdae_sc.tl.predicted_interaction_scores` (concatenate them to compare):
        columns ``pair``, ``origin`` and the scores plotted.
    kind
        ``"scatter"`` or ``"ranking"``.
    x
        Column on the horizontal axis of the scatter.
    y
        Column on the vertical axis of the scatter.
    rank_by
        Column that picks the labelled pairs (scatter) or ranks the bars; larger is more
        non-additive.
    origin
        Rows of the ranking (``"predicted"``, ``"measured"`` or ``None`` for all); the
        scatter always shows every row.
    n_labels
        Pairs named in the scatter, per origin.
    n_top
        Bars of the ranking.
    ax
        Axes to draw on; a new figure when ``None``.
    return_fig
        Return the Figure instead of the Axes.

    Returns
    -------
    The Axes (the Figure with ``return_fig=True``). ``scores`` is not modified.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_genes=20, seed=0)
    >>> scores = pdae.tl.interaction_scores(adata)
    >>> ax = pdae.pl.interactions(scores)
    >>> ax = pdae.pl.interactions(scores, kind="ranking", origin="measured")
    """
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(
            f"scores must be a DataFrame from pdae.tl.interaction_scores, got "
            f"{type(scores).__name__}."
        )
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r}; use one of {list(_KINDS)}.")
    for name, value in (("n_labels", n_labels), ("n_top", n_top)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name}={value!r}; use a non-negative integer.")
    check_return_fig(return_fig)
    if kind == "scatter":
        drawn = _scatter(scores, x, y, rank_by, n_labels, get_ax(ax, (5.0, 4.2)))
    else:
        drawn = _ranking(scores, rank_by, origin, n_top, ax)
    return finish(drawn, return_fig)


def _scatter(scores, x, y, rank_by, n_labels, ax) -> Axes:
    _check_columns(scores, ["pair", "origin", x, y, rank_by])
    data = scores.dropna(subset=[x, y])
    if data.empty:
        raise ValueError(f"scores has no row with both {x!r} and {y!r}; nothing to plot.")
    for origin, group in data.groupby("origin", sort=True):
        ax.scatter(
            group[x],
            group[y],
            s=22,
            color=_color(str(origin)),
            alpha=0.75,
            edgecolor="white",
            linewidth=0.4,
            label=f"{origin} ({len(group)})",
            zorder=2,
        )
    if y == "magnitude":
        ax.axhline(np.sqrt(2.0), color="0.5", linestyle="--", linewidth=0.8, zorder=1)
        ax.annotate(
            "additive (c_A = c_B = 1)",
            (0.01, np.sqrt(2.0)),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2),
            textcoords="offset points",
            fontsize=7,
            color="0.4",
        )
    ranked = data.sort_values(rank_by, ascending=False, na_position="last")
    top = ranked.groupby("origin", sort=False).head(n_labels)
    for _, row in top.iterrows():
        ax.annotate(
            str(row["pair"]),
            (row[x], row[y]),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=7,
            color=_color(str(row["origin"])),
        )
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(f"Interaction map (named: top {n_labels} by {rank_by.replace('_', ' ')})")
    ax.legend(frameon=False, fontsize=8, title="origin", title_fontsize=8)
    return ax


def _ranking(scores, rank_by, origin, n_top, ax) -> Axes:
    _check_columns(scores, ["pair", "origin", rank_by])
    data = scores if origin is None else scores[scores["origin"] == origin]
    data = data.dropna(subset=[rank_by]).sort_values(rank_by, ascending=False).head(n_top)
    if data.empty:
        found = sorted(scores["origin"].astype(str).unique())
        raise ValueError(
            f"scores has no row with origin={origin!r} and a value of {rank_by!r} (origins: "
            f"{found}); pass origin=None for every row."
        )
    ax = get_ax(ax, (5.0, 0.6 + 0.25 * len(data)))
    pos = np.arange(len(data))[::-1]
    labels = data["pair"].astype(str)
    if origin is None and data["origin"].nunique() > 1:
        labels = labels + " (" + data["origin"].astype(str).str[0] + ")"
    ax.barh(pos, data[rank_by], color=[_color(str(o)) for o in data["origin"]], height=0.7)
    handles = []
    if rank_by == "energy_distance" and "energy_distance_floor" in data.columns:
        ax.scatter(data["energy_distance_floor"], pos, marker="|", s=120, color="black", zorder=3)
        handles.append(Line2D([], [], marker="|", color="black", linestyle="none", markersize=10))
        ax.legend(handles, ["noise floor (half vs half)"], frameon=False, fontsize=8)
    ax.axvline(0.0, color="0.3", linewidth=0.6)
    ax.set_yticks(pos, labels, fontsize=8)
    xlabel = rank_by.replace("_", " ")
    if rank_by in ("energy_distance", "additive_l2"):
        xlabel += " to the additive expectation"
    ax.set_xlabel(xlabel)
    which = "" if origin is None else f"{origin} "
    ax.set_title(f"Most non-additive {which}pairs")
    return ax
