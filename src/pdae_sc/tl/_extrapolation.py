"""When can a prediction be trusted? The span and range checks of the PDAE guarantee."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["extrapolation_table"]

STATUS_SEEN = "seen in training"
STATUS_OTHER_CONTEXT = "seen in another context"
STATUS_INTERPOLATION = "in span, in range"
STATUS_EXTRAPOLATION = "in span, out of range"
STATUS_OUTSIDE = "outside span (not identifiable)"


def extrapolation_table(
    train_labels: np.ndarray,
    target_labels: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    context_train_labels: np.ndarray | None = None,
    rtol: float = 1e-6,
) -> pd.DataFrame:
    """Check target label vectors against the training labels.

    The PDAE guarantee covers exactly the targets whose label vector lies in the linear span
    of the training label vectors (the control is the zero vector, so labels are already
    control-centred): appending such a target to the training label matrix does not raise its
    rank. Inside the span, a target whose every coordinate stays within the range seen in
    training (e.g. a dose between two trained doses, or a double of seen singles) is
    *in range*; one that goes beyond it (a larger dose) asks the decoder to extrapolate.

    With contexts (cell lines, cell types) the shift of a perturbation is shared by all
    contexts, so the span and the range are those of the labels of *every* context, and a
    prediction in one context moves that context's cells. ``context_train_labels`` (the labels
    measured in the target context) then tells a target measured in this context apart from
    one measured only in another (``seen_in_context``); the latter is a transfer of the learned
    shift to the cells of this context.

    Parameters
    ----------
    train_labels
        Label matrix of the training conditions, shape ``(n_train, K)``.
    target_labels
        Label vectors of the targets, shape ``(n_targets, K)``.
    names
        Row names of the result (default ``0..n_targets-1``).
    context_train_labels
        Label matrix of the conditions measured in the target context, shape ``(n, K)``.
    rtol
        Relative tolerance of the span test: a target is in the span when its distance to
        the span is at most ``rtol * max(1, ||l*||)``.

    Returns
    -------
    DataFrame with one row per target and columns ``in_span`` (bool), ``span_distance``
    (Euclidean distance of the label vector to the span), ``in_range`` (bool), ``seen``
    (the exact label vector was a training condition), ``rank_train`` (rank of the training
    label matrix) and ``status`` (a short description). With ``context_train_labels`` also
    ``seen_in_context``, and the status of a target seen only elsewhere is
    ``"seen in another context"``.

    Examples
    --------
    >>> train = np.array([[0, 0], [1, 0], [0, 1.0]])
    >>> extrapolation_table(train, np.array([[1, 1.0], [2, 0.0]]), names=["A+B", "A@2"])[
    ...     ["in_span", "in_range"]
    ... ]
            in_span  in_range
    target
    A+B        True      True
    A@2        True     False
    """
    train = np.atleast_2d(np.asarray(train_labels, dtype=np.float64))
    targets = np.atleast_2d(np.asarray(target_labels, dtype=np.float64))
    if targets.shape[1] != train.shape[1]:
        raise ValueError(
            f"target_labels have {targets.shape[1]} columns but train_labels have "
            f"{train.shape[1]}; both must be over the same perturbations."
        )
    # Orthonormal basis of the row space of the training labels.
    if train.size:
        _, s, vt = np.linalg.svd(train, full_matrices=False)
        tol = s.max(initial=0.0) * max(train.shape) * np.finfo(np.float64).eps
        basis = vt[s > tol]
    else:
        basis = np.zeros((0, train.shape[1]))
    rank = basis.shape[0]
    residual = targets - (targets @ basis.T) @ basis
    distance = np.linalg.norm(residual, axis=1)
    scale = np.maximum(1.0, np.linalg.norm(targets, axis=1))
    in_span = distance <= rtol * scale

    lo = np.minimum(train.min(axis=0, initial=0.0), 0.0)
    hi = np.maximum(train.max(axis=0, initial=0.0), 0.0)
    slack = rtol * np.maximum(1.0, np.abs(hi - lo))
    in_range = np.all((targets >= lo - slack) & (targets <= hi + slack), axis=1)
    seen = _rows_in(targets, train, rtol)
    seen_here = seen
    if context_train_labels is not None:
        here = np.asarray(context_train_labels, dtype=np.float64).reshape(-1, train.shape[1])
        seen_here = _rows_in(targets, here, rtol)

    status = np.where(
        ~in_span,
        STATUS_OUTSIDE,
        np.where(
            seen_here,
            STATUS_SEEN,
            np.where(
                seen,
                STATUS_OTHER_CONTEXT,
                np.where(in_range, STATUS_INTERPOLATION, STATUS_EXTRAPOLATION),
            ),
        ),
    )
    index = list(names) if names is not None else list(range(len(targets)))
    columns = {
        "in_span": in_span,
        "span_distance": distance,
        "in_range": in_range & in_span,
        "seen": seen,
    }
    if context_train_labels is not None:
        columns["seen_in_context"] = seen_here
    columns.update(rank_train=rank, status=status)
    return pd.DataFrame(columns, index=pd.Index(index, name="target"))


def _rows_in(targets: np.ndarray, rows: np.ndarray, rtol: float) -> np.ndarray:
    """Whether each target equals (within ``rtol``) one of ``rows``."""
    return np.array([np.any(np.all(np.abs(rows - t) <= rtol, axis=1)) for t in targets])
