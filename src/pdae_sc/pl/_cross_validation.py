"""Scores of :func:`pdae_sc.tl.cross_validate`: every held-out condition, every method."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pdae_sc.tl import CrossValidation

from ._metrics import _higher_is_better
from ._utils import check_return_fig, finish, get_ax

__all__ = ["cross_validation"]

NOISE_FLOOR = "oracle_half"
_NOT_METRICS = ("fold", "n_pred", "n_true")
_PDAE_COLOR = "#c85a00"
_PDAE_BAND = "#fdebd9"
_FLOOR_COLOR = "0.55"
_MAX_LEGEND = 12  # conditions named in the legend; more are drawn in one grey


def _scores(cv: CrossValidation | pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    if isinstance(cv, CrossValidation):
        return cv.scores, cv.verdict
    if isinstance(cv, pd.DataFrame):
        return cv, None
    raise TypeError(
        f"cv must be a tl.CrossValidation or its scores DataFrame, got {type(cv).__name__}."
    )


def _unit_labels(df: pd.DataFrame) -> pd.Series:
    """One name per held-out unit: the condition, with its context when there are several."""
    labels = df["condition"].astype(str)
    if "context" in df.columns and df["context"].astype(str).nunique() > 1:
        labels = labels + " (" + df["context"].astype(str) + ")"
    if "fold" in df.columns:
        per_unit = df.assign(_u=labels).groupby("_u")["fold"].nunique()
        if (per_unit > 1).any():  # the same condition held out in several folds
            labels = labels + " [fold " + df["fold"].astype(str) + "]"
    return labels


def cross_validation(
    cv: CrossValidation | pd.DataFrame,
    *,
    metric: str = "energy_distance",
    ax: Axes | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Score of each held-out condition under each method, best method on top.

    One row per method: a dot per held-out condition, joined across the methods by a thin
    line so that a condition can be followed from row to row, and the mean ± sd over the
    conditions (black). Methods are ordered from best (top) to worst by their mean:
    ascending for distances (``energy_distance``, ``mmd``, ``mean_l2``), descending for
    ``r2_mean`` and the ``pearson_delta*`` columns. PDAE's row is shaded orange. The noise
    floor (``oracle_half``: half of the observed cells scored against the other half) is the
    bottom row, in grey, and its mean is a dashed vertical line across all rows: no method
    can be expected to do better than that line. The title is the verdict of
    :func:`pdae_sc.tl.cross_validate` (when ``cv`` is the result, not only its table).

    Parameters
    ----------
    cv
        Result of :func:`pdae_sc.tl.cross_validate`, or its ``scores`` table (columns
        ``method``, ``condition`` and the metric; ``fold`` and ``context`` when present
        name the held-out units). Rows with a missing value are skipped.
    metric
        Column to plot, e.g. ``energy_distance``, ``mmd``, ``mean_l2`` or
        ``pearson_delta``.
    ax
        Axes to draw on; a new figure when ``None``.
    return_fig
        Return the Figure instead of the Axes.

    Returns
    -------
    The Axes (its Figure with ``return_fig=True``). ``cv`` is not modified.

    Examples
    --------
    >>> import pandas as pd
    >>> import pdae_sc as pdae
    >>> scores = pd.DataFrame(
    ...     {
    ...         "condition": ["A+B", "C+D"] * 3,
    ...         "method": ["pdae"] * 2 + ["linear"] * 2 + ["oracle_half"] * 2,
    ...         "energy_distance": [0.05, 0.08, 0.07, 0.12, 0.0, 0.01],
    ...     }
    ... )
    >>> ax = pdae.pl.cross_validation(scores)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['pdae', 'linear', 'oracle_half (noise floor)']
    """
    check_return_fig(return_fig)
    df, verdict = _scores(cv)
    for col in ("method", "condition"):
        if col not in df.columns:
            raise KeyError(
                f"cv has no {col!r} column (columns: {list(df.columns)}); pass the result of "
                "tl.cross_validate or its .scores."
            )
    numeric = [
        c
        for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    numeric = [c for c in numeric if c not in _NOT_METRICS]
    if not isinstance(metric, str) or metric not in numeric:
        raise KeyError(
            f"metric={metric!r} is not a metric column of the scores; use one of {numeric}."
        )
    data = pd.DataFrame(
        {
            "method": df["method"].astype(str),
            "unit": _unit_labels(df),
            "value": df[metric].astype(float),
        }
    )
    data = data[np.isfinite(data["value"])]
    if data.empty:
        raise ValueError(f"metric={metric!r} has no finite values in the scores.")

    higher = _higher_is_better(metric)
    means = data.groupby("method")["value"].mean()
    sds = data.groupby("method")["value"].std(ddof=1)
    methods = [m for m in means.index if m != NOISE_FLOOR]
    methods = sorted(methods, key=lambda m: -means[m] if higher else means[m])
    order = methods + ([NOISE_FLOOR] if NOISE_FLOOR in means.index else [])
    ypos = {m: float(len(order) - 1 - i) for i, m in enumerate(order)}  # best on top

    units = list(dict.fromkeys(data["unit"]))
    wide = data.pivot_table(index="unit", columns="method", values="value", aggfunc="mean")
    if len(units) <= _MAX_LEGEND:
        import matplotlib as mpl

        cmap = mpl.colormaps["tab10" if len(units) <= 10 else "tab20"]
        colors = {u: cmap(i % cmap.N) for i, u in enumerate(units)}
    else:
        colors = dict.fromkeys(units, "#1f77b4")

    ax = get_ax(ax, figsize=(8.0, 1.6 + 0.5 * len(order)))
    # one line per held-out condition, through its score under each method
    for u in units:
        row = wide.loc[u, [m for m in order if m in wide.columns]].dropna()
        ax.plot(
            row.to_numpy(),
            [ypos[m] for m in row.index],
            color=colors[u],
            lw=0.8,
            alpha=0.35,
            zorder=1,
        )
    for m in order:
        sub = data[data["method"] == m]
        ax.scatter(
            sub["value"],
            np.full(len(sub), ypos[m]),
            s=28,
            c=[colors[u] for u in sub["unit"]],
            linewidths=0,
            alpha=0.85,
            zorder=3,
            gid=f"conditions:{m}",
        )
        sd = sds[m] if np.isfinite(sds[m]) else 0.0
        ax.errorbar(
            [means[m]],
            [ypos[m] - 0.22],
            xerr=[sd],
            fmt="D",
            ms=5,
            color=_FLOOR_COLOR if m == NOISE_FLOOR else "black",
            capsize=3,
            lw=1.2,
            zorder=4,
            gid=f"mean:{m}",
        )
    if "pdae" in ypos:
        ax.axhspan(ypos["pdae"] - 0.45, ypos["pdae"] + 0.45, color=_PDAE_BAND, lw=0, zorder=0)
    if NOISE_FLOOR in means.index:
        ax.axvline(means[NOISE_FLOOR], color=_FLOOR_COLOR, ls="--", lw=1, zorder=0)
        ax.axhline(ypos[NOISE_FLOOR] + 0.5, color="0.85", lw=0.8, zorder=0)
    labels = [f"{m} (noise floor)" if m == NOISE_FLOOR else m for m in order]
    ax.set_yticks([ypos[m] for m in order], labels)
    for tick, m in zip(ax.get_yticklabels(), order, strict=True):
        if m == "pdae":
            tick.set_color(_PDAE_COLOR)
            tick.set_fontweight("bold")
        elif m == NOISE_FLOOR:
            tick.set_color("0.4")
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    n = len(units)
    if verdict:
        ax.set_title(textwrap.fill(verdict, 70), fontsize=9, loc="left")
    else:
        ax.set_title(f"{metric} on {n} held-out condition{'s' * (n != 1)}", fontsize=10)
    handles = [
        Line2D([], [], marker="D", ls="-", color="black", ms=5, label="mean ± sd"),
    ]
    if NOISE_FLOOR in means.index:
        handles.append(Line2D([], [], ls="--", color=_FLOOR_COLOR, label="noise floor"))
    if len(units) <= _MAX_LEGEND:
        handles += [
            Line2D([], [], marker="o", ls="-", lw=0.8, color=colors[u], label=u) for u in units
        ]
    ax.legend(
        handles=handles,
        frameon=False,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    ax.grid(axis="x", color="0.92", zorder=0)
    ax.set_axisbelow(True)
    return finish(ax, return_fig)
