"""The learned latent shift of each perturbation (columns of ``W``) as arrows in 2D."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from pdae_sc.data import parse_condition

from ._utils import as_list, check_return_fig, finish, get_ax

__all__ = ["perturbation_embedding"]

_SINGLE, _COMBO = "#1f4e79", "#e6550d"


def _shift_table(model_or_df) -> pd.DataFrame:
    if isinstance(model_or_df, pd.DataFrame):
        df = model_or_df
    elif hasattr(model_or_df, "get_perturbation_embedding"):
        df = model_or_df.get_perturbation_embedding()
    else:
        raise TypeError(
            "model_or_df must be a trained PDAE or the DataFrame of "
            f"model.get_perturbation_embedding(), got {type(model_or_df).__name__}."
        )
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise ValueError(f"The perturbation embedding is empty (shape {df.shape}).")
    if not all(pd.api.types.is_numeric_dtype(t) for t in df.dtypes):
        raise TypeError("The perturbation embedding must have numeric columns only.")
    return df


def _projection(df: pd.DataFrame, dims: Sequence[str | int] | None):
    """Matrix ``(n_latent, 2)`` mapping shifts to the plane, and the two axis labels."""
    w = df.to_numpy(dtype=np.float64)
    if dims is not None:
        dims = list(dims)
        if len(dims) != 2:
            raise ValueError(f"dims={dims!r}; give exactly two columns (names or positions).")
        proj = np.zeros((w.shape[1], 2))
        for j, d in enumerate(dims):
            if isinstance(d, int | np.integer) and not isinstance(d, bool):
                if not -w.shape[1] <= d < w.shape[1]:
                    raise ValueError(f"dims position {d} is out of range ({w.shape[1]} columns).")
                pos = int(d) % w.shape[1]
            elif d in df.columns:
                pos = df.columns.get_loc(d)
            else:
                raise KeyError(f"dims entry {d!r} is not a column ({list(df.columns)[:10]}).")
            proj[pos, j] = 1.0
        return proj, [str(df.columns[np.argmax(proj[:, j])]) for j in range(2)]
    # Principal axes of the uncentred rows: the origin (control) stays at 0 and the map is
    # linear, so a combination's arrow is still the sum of its parts' arrows.
    _, s, vt = np.linalg.svd(w, full_matrices=False)
    proj = np.zeros((w.shape[1], 2))
    k = min(2, vt.shape[0])
    proj[:, :k] = vt[:k].T
    total = float((s**2).sum())
    share = [(s[i] ** 2 / total if total > 0 and i < len(s) else 0.0) for i in range(2)]
    return proj, [f"PC{i + 1} ({100 * share[i]:.0f}% of shift variance)" for i in range(2)]


def _arrow(ax: Axes, xy: np.ndarray, color: str, ls: str) -> None:
    ax.add_patch(
        FancyArrowPatch(
            (0.0, 0.0),
            (float(xy[0]), float(xy[1])),
            arrowstyle="-|>",
            mutation_scale=11,
            color=color,
            lw=1.4,
            ls=ls,
            shrinkA=0,
            shrinkB=0,
        )
    )


def _label(ax: Axes, xy: np.ndarray, text: str, color: str) -> None:
    norm = float(np.hypot(*xy))
    direction = xy / norm if norm > 0 else np.array([1.0, 0.0])
    ax.annotate(
        text,
        (float(xy[0]), float(xy[1])),
        xytext=tuple(6 * direction),
        textcoords="offset points",
        ha="left" if direction[0] >= 0 else "right",
        va="bottom" if direction[1] >= 0 else "top",
        fontsize=8,
        color=color,
    )


def perturbation_embedding(
    model_or_df,
    *,
    combinations: Sequence[str] | None = None,
    dims: Sequence[str | int] | None = None,
    control_group: str = "ctrl",
    delimiter: str = "+",
    max_labels: int | None = 30,
    ax: Axes | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Draw each perturbation's latent shift as an arrow from the control (the origin).

    The shifts (rows of ``model.get_perturbation_embedding()``, the columns of ``W``) are
    projected onto the first two principal axes of the uncentred rows (numpy SVD), or onto
    two chosen latent dimensions. The projection is linear, so the dashed arrow of a
    combination, the sum of its parts' shifts (times their doses), is the sum of their arrows.

    Parameters
    ----------
    model_or_df
        A trained :class:`~pdae_sc.model.PDAE` or the DataFrame (perturbations × latent
        dimensions) returned by its ``get_perturbation_embedding()``.
    combinations
        Conditions to add as dashed arrows, e.g. ``["P0+P1"]``, split into their parts with
        :func:`~pdae_sc.data.parse_condition` (each part at dose 1).
    dims
        Two latent columns (names or positions) to plot instead of the principal axes.
    control_group
        Control label, dropped from the parts of a combination.
    delimiter
        Separator between the parts of a combination.
    max_labels
        Label at most this many perturbations (the longest arrows); ``None``: all.
        Combinations are always labelled.
    ax
        Axes to draw on; a new figure when ``None``.
    return_fig
        Return the Figure instead of the Axes.

    Returns
    -------
    The Axes (its Figure with ``return_fig=True``). The model is not modified.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(adata, n_latent=8)
    >>> model.train(max_epochs=1, enable_progress_bar=False)
    >>> ax = pdae.pl.perturbation_embedding(model, combinations=["P0+P1", "P2+P3"])

    The shift table alone (e.g. saved with ``to_csv``) works too:

    >>> ax = pdae.pl.perturbation_embedding(model.get_perturbation_embedding(), dims=(0, 1))
    """
    check_return_fig(return_fig)
    df = _shift_table(model_or_df)
    if max_labels is not None and (not isinstance(max_labels, int) or max_labels < 0):
        raise ValueError(f"max_labels={max_labels!r}; use a non-negative integer or None.")
    proj, axis_labels = _projection(df, dims)
    w = df.to_numpy(dtype=np.float64)
    xy = w @ proj
    names = [str(i) for i in df.index]
    combos = []
    for c in [] if combinations is None else as_list(combinations, "combinations"):
        parts = parse_condition(c, control_group=control_group, delimiter=delimiter)
        unknown = [p for p in parts if p not in names]
        if unknown:
            raise KeyError(
                f"Combination {c!r} has parts {unknown} without a learned shift; known "
                f"perturbations: {names[:20]}."
            )
        shift = sum((dose * w[names.index(p)] for p, dose in parts.items()), np.zeros(w.shape[1]))
        combos.append((c, shift @ proj))

    ax = get_ax(ax, figsize=(5.0, 5.0))
    lengths = np.hypot(xy[:, 0], xy[:, 1])
    n_lab = len(names) if max_labels is None else max_labels
    labelled = set(np.argsort(-lengths, kind="stable")[:n_lab].tolist())
    for i, name in enumerate(names):
        _arrow(ax, xy[i], _SINGLE, "-")
        if i in labelled:
            _label(ax, xy[i], name, _SINGLE)
    for name, c_xy in combos:
        _arrow(ax, c_xy, _COMBO, "--")
        _label(ax, c_xy, name, _COMBO)
    ax.scatter([0], [0], s=25, color="black", zorder=5)
    points = np.vstack([xy, *[c for _, c in combos], np.zeros((1, 2))])
    radius = float(np.abs(points).max()) or 1.0
    ax.set(xlim=(-1.25 * radius, 1.25 * radius), ylim=(-1.25 * radius, 1.25 * radius))
    ax.set_aspect("equal")
    ax.axhline(0, color="0.9", lw=0.8, zorder=0)
    ax.axvline(0, color="0.9", lw=0.8, zorder=0)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title("perturbation shifts (origin: control)")
    handles = [Line2D([], [], color=_SINGLE, label="perturbation")]
    if combos:
        handles.append(Line2D([], [], color=_COMBO, ls="--", label="combination (sum)"))
    ax.legend(handles=handles, frameon=False, fontsize=8, loc="best")
    return finish(ax, return_fig)
