"""Training curves from ``model.history``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from ._utils import as_list, check_return_fig, finish, get_ax

__all__ = ["history"]

DEFAULT_KEYS = ("train_loss", "validation_loss")


def _as_series(value, key: str) -> pd.Series:
    if isinstance(value, pd.DataFrame):
        if value.shape[1] != 1:
            raise ValueError(
                f"history[{key!r}] has {value.shape[1]} columns; expected one value per epoch."
            )
        value = value.iloc[:, 0]
    elif not isinstance(value, pd.Series):
        value = pd.Series(np.asarray(value, dtype=float).ravel())
    return pd.to_numeric(value, errors="coerce").dropna()


def _get_history(model_or_history) -> Mapping:
    if isinstance(model_or_history, Mapping):
        return model_or_history
    hist = getattr(model_or_history, "history", None)
    if hist is None:
        raise ValueError(
            f"{type(model_or_history).__name__} has no training history; train the model "
            "first, or pass model.history (a dict of per-epoch DataFrames)."
        )
    if not isinstance(hist, Mapping):
        raise TypeError(
            "model_or_history must be a trained model or a dict of per-epoch DataFrames, got "
            f"{type(model_or_history).__name__}."
        )
    return hist


def history(
    model_or_history,
    *,
    keys: str | Sequence[str] | None = None,
    log: bool = False,
    ax: Axes | None = None,
    return_fig: bool = False,
) -> Axes | Figure:
    """Plot training curves: one line per logged quantity against the epoch.

    Parameters
    ----------
    model_or_history
        A trained :class:`~pdae_sc.model.PDAE` (its ``history``) or that dict of DataFrames,
        each with one column indexed by epoch (``train_loss``, ``validation_loss``,
        ``energy_train``, ``reconstruction_train``, ``prior_train``, ``sparsity_train``, ...).
    keys
        Quantities to plot. Default: ``train_loss`` and ``validation_loss`` where present.
    log
        Logarithmic y axis (symmetric-log if a value is not positive).
    ax
        Axes to draw on; a new figure when ``None``.
    return_fig
        Return the Figure instead of the Axes.

    Returns
    -------
    The Axes (its Figure with ``return_fig=True``). The model and the history are not modified.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=4, n_cells_per_condition=20, seed=0)
    >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    >>> model = pdae.model.PDAE(adata, n_latent=8)
    >>> model.train(max_epochs=3, enable_progress_bar=False)
    >>> ax = pdae.pl.history(model)  # train_loss
    >>> keys = ["energy_train", "reconstruction_train"]
    >>> ax = pdae.pl.history(model, keys=keys, log=True)
    """
    check_return_fig(return_fig)
    hist = _get_history(model_or_history)
    available = [k for k in hist if len(_as_series(hist[k], k))]
    if keys is None:
        keys = [k for k in DEFAULT_KEYS if k in available]
        if not keys:
            raise ValueError(
                f"The history has neither 'train_loss' nor 'validation_loss'; pass keys= with "
                f"some of {available}."
            )
    else:
        keys = as_list(keys, "keys")
        missing = [k for k in keys if k not in hist]
        if missing:
            raise KeyError(f"keys {missing} are not in the history; available: {available}.")
    curves = {k: _as_series(hist[k], k) for k in keys}

    ax = get_ax(ax, figsize=(5.0, 3.5))
    for key, series in curves.items():
        marker = "o" if len(series) <= 30 else None
        ax.plot(series.index.to_numpy(), series.to_numpy(), marker=marker, ms=3, label=key)
    if log:
        values = np.concatenate([s.to_numpy() for s in curves.values()])
        if len(values) and (values > 0).all():
            ax.set_yscale("log")
            # Plain numbers ("20", "3") rather than "2×10^1" on short ranges.
            ax.yaxis.set_major_formatter(LogFormatter())
            ax.yaxis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.5)))
        else:
            ax.set_yscale("symlog")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" if len(curves) > 1 or "loss" in keys[0] else keys[0])
    ax.set_title("training history")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(color="0.92")
    ax.set_axisbelow(True)
    return finish(ax, return_fig)
