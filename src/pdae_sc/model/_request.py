"""The arguments of a ``predict`` call, checked: the method, the cell count, the output."""

from __future__ import annotations

import warnings

import numpy as np

from pdae_sc.data._validation import check_positive_int

from ._predict import baseline_applies
from ._registration import RegisteredCells
from ._selection import SIMPLE_METHODS

__all__ = ["applicable_method", "check_n_cells", "check_output", "prediction_method"]


def prediction_method(method: str, chosen_method: str | None) -> tuple[str, bool]:
    """The method a ``predict`` uses, and whether it was the model's own choice.

    ``"auto"`` is the model's ``chosen_method`` (``prediction_method_``; ``"pdae"`` if none).
    """
    chosen = method == "auto"
    if chosen:
        method = chosen_method or "pdae"
    if method not in ("pdae", *SIMPLE_METHODS):
        raise ValueError(
            f"method={method!r}; use 'auto' (model.prediction_method_), 'pdae' or a "
            f"simple baseline {list(SIMPLE_METHODS)}."
        )
    return method, chosen


def applicable_method(cells: RegisteredCells, method: str, context: str | None) -> str:
    """The model's chosen ``method``, or ``"pdae"`` (with a warning) where it cannot predict."""
    if method == "pdae" or baseline_applies(cells, method, context):
        return method
    warnings.warn(
        f"The held-out conditions chose the {method!r} baseline, but it needs control "
        f"cells in context {context!r} and there are none; predicting with PDAE.",
        UserWarning,
        stacklevel=3,
    )
    return "pdae"


def check_n_cells(n_cells) -> int | None:
    """``n_cells`` of a prediction: ``None`` or a positive integer."""
    return None if n_cells is None else check_positive_int(n_cells, "n_cells")


def check_output(sparse, scale, counts_layer) -> None:
    """Check ``sparse`` and ``scale`` of a prediction (``"counts"`` needs ``counts_layer``)."""
    if sparse is not None and not isinstance(sparse, bool | np.bool_):
        raise TypeError(f"sparse={sparse!r}; use True (CSR), False (dense) or None.")
    if scale not in ("log1p", "counts"):
        raise ValueError(f"scale={scale!r}; use 'log1p' (as registered) or 'counts'.")
    if scale == "counts" and counts_layer is None:
        raise ValueError(
            "scale='counts' needs the raw counts of the source cells: register them with "
            "setup_anndata(..., counts_layer='counts') (pdae.pp.normalize_counts keeps "
            "the counts in adata.layers['counts'])."
        )
