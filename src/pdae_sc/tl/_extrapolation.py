"""When can a prediction be trusted? The span and range checks of the PDAE guarantee."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from pdae_sc.data._labels import LabelSpan, as_label_rows, match_labels

__all__ = ["extrapolation_table"]

STATUS_SEEN = "seen in training"
STATUS_OTHER_CONTEXT = "seen in another context"
STATUS_INTERPOLATION = "in span, in range"
STATUS_EXTRAPOLATION = "in span, out of range"
STATUS_OUTSIDE = "outside span (not identifiable)"


def extrapolation_table(
    train_labels: np.ndarray | sparse.spmatrix,
    target_labels: np.ndarray | sparse.spmatrix,
    *,
    names: Sequence[str] | None = None,
    context_train_labels: np.ndarray | sparse.spmatrix | None = None,
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
        Label matrix of the training conditions, shape ``(n_train, K)``, dense or sparse
        (a genome-wide screen's labels fit in a :mod:`scipy.sparse` matrix). It is factorised
        by blocks of perturbations that combinations link, so the cost grows with the
        number of nonzeros, not with ``K**3``.
    target_labels
        Label vectors of the targets, shape ``(n_targets, K)``, dense or sparse.
    names
        Row names of the result (default ``0..n_targets-1``).
    context_train_labels
        Label matrix of the conditions measured in the target context, shape ``(n, K)``.
    rtol
        Relative tolerance of the span test: a target is in the span when its distance to
        the span is at most ``rtol * max(1, ||l*||)``; a dose is in range when it is at most
        ``rtol * max(1, hi - lo)`` beyond the training range ``[lo, hi]``. Whether a target
        was ``seen`` uses the package-wide label tolerance (doses equal within ``1e-6 *
        max(1, |dose|)``), whatever ``rtol``.

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
    span = train_labels if isinstance(train_labels, LabelSpan) else LabelSpan(train_labels)
    k = span.n_features
    if sparse.issparse(target_labels):
        n_cols = target_labels.shape[1]
    else:
        n_cols = np.atleast_2d(np.asarray(target_labels, dtype=np.float64)).shape[1]
    if n_cols != k:
        raise ValueError(
            f"target_labels have {n_cols} columns but train_labels have {k}; both must be "
            "over the same perturbations."
        )
    targets = as_label_rows(target_labels, k)
    distance = span.distance(targets)
    norms = np.sqrt(np.asarray(targets.multiply(targets).sum(axis=1)).ravel())
    in_span = distance <= rtol * np.maximum(1.0, norms)
    in_range = span.in_range(targets, rtol)
    seen = match_labels(targets, span.rows).getnnz(axis=1) > 0
    seen_here = seen
    if context_train_labels is not None:
        seen_here = (
            match_labels(targets, as_label_rows(context_train_labels, k)).getnnz(axis=1) > 0
        )
    rank = span.rank

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
    index = list(names) if names is not None else list(range(targets.shape[0]))
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
