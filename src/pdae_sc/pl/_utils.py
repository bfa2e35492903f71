"""Shared helpers of the plotting functions: axes, condition selection, dense rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pdae_sc.data import parse_condition
from pdae_sc.tl._common import control_rows as _control_rows
from pdae_sc.tl._common import dense_rows as _dense_rows

# Colours of the three sources of cells, shared by the comparison plots.
COLORS = {"control": "#9e9e9e", "observed": "#1f77b4", "predicted": "#ff7f0e"}


def get_ax(ax: Axes | None, figsize: tuple[float, float] = (4.5, 4.0)) -> Axes:
    """Return ``ax``, or the Axes of a new figure when ``ax`` is ``None``."""
    if ax is None:
        import matplotlib.pyplot as plt  # pyplot picks a backend: import it only when needed

        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    elif not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}.")
    return ax


def dense_rows(adata: AnnData, mask: np.ndarray) -> np.ndarray:
    """Rows of ``adata.X`` selected by ``mask`` as a dense float64 array."""
    return _dense_rows(adata.X, np.flatnonzero(mask))


def _obs_labels(adata: AnnData, key: str, name: str) -> np.ndarray:
    if key not in adata.obs:
        raise KeyError(
            f"perturbation_key={key!r} is not a column of {name}.obs ({list(adata.obs.columns)})."
        )
    return np.asarray(adata.obs[key].astype(str))


def condition_mask(
    adata: AnnData,
    condition: str,
    *,
    perturbation_key: str,
    control_group: str,
    delimiter: str,
    name: str,
) -> np.ndarray:
    """Cells of ``adata`` whose condition equals ``condition`` (``"A+B"`` matches ``"B+A"``).

    Raises ``KeyError`` listing the available conditions when no cell matches.
    """
    labels = _obs_labels(adata, perturbation_key, name)
    target = parse_condition(condition, control_group=control_group, delimiter=delimiter)
    uniq = list(dict.fromkeys(labels))
    hits = [
        u
        for u in uniq
        if parse_condition(u, control_group=control_group, delimiter=delimiter) == target
    ]
    if not hits:
        raise KeyError(
            f"condition={condition!r} has no cells in {name}.obs[{perturbation_key!r}]; "
            f"available: {uniq[:20]}."
        )
    return np.isin(labels, hits)


def control_rows(
    adata_control: AnnData,
    *,
    perturbation_key: str,
    control_group: str,
    delimiter: str,
) -> np.ndarray:
    """Control cells of ``adata_control`` (all of them without ``perturbation_key``), dense."""
    rows = _control_rows(adata_control, perturbation_key, control_group, delimiter)
    return _dense_rows(adata_control.X, rows)


def as_list(value: str | Sequence[str], name: str) -> list[str]:
    """A string or a sequence of strings as a non-empty list."""
    out = [value] if isinstance(value, str) else list(value)
    if not out:
        raise ValueError(f"{name} is empty; give at least one name.")
    return out


def check_return_fig(return_fig: object) -> None:
    """Raise ``TypeError`` unless ``return_fig`` is a bool."""
    if not isinstance(return_fig, bool):
        raise TypeError(f"return_fig={return_fig!r}; use True (a Figure) or False (the Axes).")


def finish(ax: Axes, return_fig: bool) -> Axes | Figure:
    """The Axes drawn on, or its Figure with ``return_fig=True``."""
    return ax.figure if return_fig else ax
