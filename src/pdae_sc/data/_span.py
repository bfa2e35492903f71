"""When can a prediction be trusted? The span of the training labels and the range of doses.

The PDAE identifies the effect of a target whose label vector lies in the linear span of the
training label vectors (:class:`LabelSpan`, factorised once per model by
:func:`training_span`); :func:`extrapolation_table` says for each target whether it does,
and whether its doses stay within the trained range.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from ._labels import as_label_rows, match_labels

__all__ = [
    "STATUS_EMBEDDING",
    "STATUS_EXTRAPOLATION",
    "STATUS_INTERPOLATION",
    "STATUS_OTHER_CONTEXT",
    "STATUS_OUTSIDE",
    "STATUS_SEEN",
    "LabelSpan",
    "extrapolation_table",
    "training_span",
]


class LabelSpan:
    """The row space of a training label matrix, factorised once, and the training range.

    The perturbations (columns) fall into groups that training conditions link (``A+B`` links
    ``A`` and ``B``); over these groups the label matrix is block diagonal, so its singular
    values are those of the blocks and its row space is the orthogonal sum of the blocks' row
    spaces. Each block gets a dense SVD (a perturbation measured only alone is a block of one
    column, whose singular value is the column's norm), and directions are kept with the rank
    cut of :func:`numpy.linalg.matrix_rank` for the *whole* matrix, ``s > s_max * max(n, K) *
    eps``: rank and span are those of a dense SVD of the whole matrix, at the cost of the
    blocks. A screen of singles and of combinations of a few perturbations has small blocks,
    so factorising costs about the number of nonzeros and projecting a target the size of
    the blocks it touches; only the largest block's cost is cubic.

    Parameters
    ----------
    labels
        Training label matrix ``(n_conditions, K)``, dense or sparse.
    """

    def __init__(self, labels: object) -> None:
        rows = as_label_rows(labels)
        n, k = rows.shape
        #: The training label vectors (CSR) and their number of columns K.
        self.rows, self.n_features = rows, k
        # the training range of every dose, the control (0) included
        self.lo = np.zeros(k)
        self.hi = np.zeros(k)
        np.minimum.at(self.lo, rows.indices, rows.data)
        np.maximum.at(self.hi, rows.indices, rows.data)
        pattern = rows.copy()
        pattern.data = np.ones_like(pattern.data)
        n_groups, group = csgraph.connected_components(pattern.T @ pattern, directed=False)
        size = np.bincount(group, minlength=n_groups)
        col_norm = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=0)).ravel())
        single = size[group] == 1
        # blocks of several columns: each row belongs to the group of its columns
        row_of = np.repeat(np.arange(n), np.diff(rows.indptr))
        in_multi = ~single[rows.indices]
        r, c, v = row_of[in_multi], rows.indices[in_multi], rows.data[in_multi]
        g = group[c]
        order = np.lexsort((c, r, g))
        r, c, v, g = r[order], c[order], v[order], g[order]
        blocks = []
        bounds = np.flatnonzero(np.diff(g)) + 1
        for sl in np.split(np.arange(len(g)), bounds) if len(g) else []:
            cols, c_local = np.unique(c[sl], return_inverse=True)
            _, r_local = np.unique(r[sl], return_inverse=True)
            block = np.zeros((r_local.max() + 1, len(cols)))
            block[r_local, c_local] = v[sl]
            _, s, vt = np.linalg.svd(block, full_matrices=False)
            blocks.append((int(g[sl[0]]), cols, s, vt))
        s_max = max(
            [col_norm[single].max(initial=0.0)] + [s.max(initial=0.0) for *_, s, _ in blocks]
        )
        cut = s_max * max(n, k) * np.finfo(np.float64).eps
        # a block of one column is in the span when its norm passes the cut; otherwise the
        # whole dose of that perturbation is residual
        self._lost = (single & ~(col_norm > cut)).astype(np.float64)
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        rank = int((single & (col_norm > cut)).sum())
        for gid, cols, s, vt in blocks:
            basis = vt[s > cut]
            rank += basis.shape[0]
            self._blocks[gid] = (cols, basis)
        self._group = group
        #: Rank of the training label matrix.
        self.rank = rank

    def distance(self, targets: object) -> np.ndarray:
        """Euclidean distance of each target label vector to the span, shape ``(n_targets,)``."""
        t = as_label_rows(targets, self.n_features)
        sq = np.asarray(t.multiply(t) @ self._lost).ravel()
        for gid in np.unique(self._group[t.indices]):
            if int(gid) not in self._blocks:
                continue
            cols, basis = self._blocks[int(gid)]
            tb = t[:, cols].toarray()
            sq += ((tb - (tb @ basis.T) @ basis) ** 2).sum(axis=1)
        return np.sqrt(sq)

    def in_range(self, targets: object, tol: float) -> np.ndarray:
        """Whether every dose of each target lies in the training range, widened by ``tol``.

        The range of a perturbation spans its training doses and 0 (the control), widened by
        ``tol * max(1, hi - lo)``.
        """
        t = as_label_rows(targets, self.n_features)
        slack = tol * np.maximum(1.0, np.abs(self.hi - self.lo))
        j = t.indices
        bad = (t.data < self.lo[j] - slack[j]) | (t.data > self.hi[j] + slack[j])
        row_of = np.repeat(np.arange(t.shape[0]), np.diff(t.indptr))
        out = np.ones(t.shape[0], dtype=bool)
        out[row_of[bad]] = False
        return out


_SPANS: dict[int, tuple[weakref.ref, LabelSpan]] = {}


def training_span(labels: object) -> LabelSpan:
    """The :class:`LabelSpan` of a model's stored label matrix, factorised once per object.

    Cached by the identity of ``labels`` (the registry's matrix, never modified in place),
    through a weak reference, so the cache keeps no model's labels alive; the 8 most recent
    are kept.
    """
    hit = _SPANS.get(id(labels))
    if hit is not None and hit[0]() is labels:
        return hit[1]
    span = LabelSpan(labels)
    while len(_SPANS) >= 8:
        _SPANS.pop(next(iter(_SPANS)))
    _SPANS[id(labels)] = (weakref.ref(labels), span)
    return span


STATUS_SEEN = "seen in training"
STATUS_OTHER_CONTEXT = "seen in another context"
STATUS_INTERPOLATION = "in span, in range"
STATUS_EXTRAPOLATION = "in span, out of range"
STATUS_OUTSIDE = "outside span (not identifiable)"
#: A target with a perturbation that was never measured, estimated from a prior embedding.
STATUS_EMBEDDING = "from the embedding (outside the guarantee)"


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
