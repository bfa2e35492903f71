"""The linear model of the perturbations: least-squares mean effects, anchored at the controls.

One fit serves two places: the ``linear`` baseline of :func:`pdae_sc.tl.predict_baseline`
shifts the control cells by ``l* beta``, and the residual decoder of
:class:`pdae_sc.model.PDAE` starts its gene shift at ``beta``. So an untrained residual
decoder that moves control cells reproduces the ``linear`` baseline's mean.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg

from ._sampler import group_sums

__all__ = ["linear_effects"]


def linear_effects(
    matrix,
    codes: np.ndarray,
    ctx_codes: np.ndarray,
    labels,
    *,
    log_fold: bool = False,
    dense_limit: int = 2000,
) -> np.ndarray:
    """Per-gene effects ``beta`` of ``mean[c, ctx] = control[ctx] + l_c beta``, least squares.

    Every (condition, context) group mean is fitted by least squares (the minimum-norm
    solution where ``beta`` is not identified), each group with equal weight, the effects
    shared by the contexts. The intercept of a context is its control cells' mean (the cells
    of every condition whose label row is zero), as measured, not fitted: the control cells
    are the cells a linear prediction shifts, so the model fitted is the model used. A
    context without control cells gets a free intercept instead.

    Parameters
    ----------
    matrix
        Expression of the cells, ``(n_cells, n_genes)`` (dense, sparse or backed).
    codes
        Condition code of each cell, ``(n_cells,)``.
    ctx_codes
        Context code of each cell, ``(n_cells,)``; all zero without contexts.
    labels
        Label matrix of the conditions, ``(n_conditions, K)``, dense or sparse.
    log_fold
        Fit log fold changes of the normalised counts instead: the group means of
        ``expm1(x)`` are taken on the log scale, ``log(mean + eps)``, with ``eps`` a tenth
        of the gene's mean over all cells (so genes with few counts do not give huge folds).
    dense_limit
        Up to this many unknowns (free intercepts + K) the fit is a dense minimum-norm
        ``lstsq``; above it (genome-wide screens, where that is cubic in K) the sparse normal
        equations are solved instead (:func:`_sparse_least_squares`).

    Returns
    -------
    Array ``(K, n_genes)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [2.0], [5.0], [9.0]])  # ctrl (mean 1), A, A+B
    >>> labels = np.array([[0, 0], [1, 0], [1, 1]])
    >>> linear_effects(x, np.array([0, 0, 1, 2]), np.zeros(4, dtype=int), labels).ravel()
    array([4., 4.])
    """
    labels = sparse.csr_matrix(labels, dtype=np.float64)
    is_ctrl = np.asarray(labels.getnnz(axis=1) == 0)
    codes, ctx_codes = np.asarray(codes, dtype=np.int64), np.asarray(ctx_codes, dtype=np.int64)
    n_ctx = int(ctx_codes.max()) + 1 if len(ctx_codes) else 1
    # control cells of a context form one group (slot 0 .. n_ctx - 1), the rest one per pair
    group = np.where(is_ctrl[codes], ctx_codes, n_ctx + codes * n_ctx + ctx_codes)
    present, slot = np.unique(group, return_inverse=True)
    sums, counts = group_sums(matrix, slot.ravel(), len(present), np.expm1 if log_fold else None)
    means = sums / counts[:, None]
    if log_fold:
        eps = 0.1 * sums.sum(0) / max(1, len(codes)) + 1e-8
        means = np.log(means + eps)
    rows = present >= n_ctx
    anchor, anchored = np.zeros((n_ctx, means.shape[1])), np.zeros(n_ctx, dtype=bool)
    anchor[present[~rows]], anchored[present[~rows]] = means[~rows], True
    cond, ctx = np.divmod(present[rows] - n_ctx, n_ctx)
    free = np.flatnonzero(~anchored & np.isin(np.arange(n_ctx), ctx))
    rhs = means[rows] - anchor[ctx]
    intercepts = sparse.csr_matrix((ctx[:, None] == free[None, :]).astype(np.float64))
    design = sparse.hstack([intercepts, labels[cond]], format="csc")
    if design.shape[0] == 0:
        return np.zeros((labels.shape[1], means.shape[1]))
    if design.shape[1] <= dense_limit:
        coef = np.linalg.lstsq(design.toarray(), rhs, rcond=None)[0]
    else:
        coef = _sparse_least_squares(design, rhs)
    return coef[len(free) :]


def _sparse_least_squares(design: sparse.csc_matrix, rhs: np.ndarray) -> np.ndarray:
    """Least squares ``design @ coef ~ rhs`` through the sparse normal equations.

    A ridge of ``1e-10`` times the largest diagonal entry keeps the system solvable when some
    effects are not identified; the solution then tends to the minimum-norm one, as
    ``lstsq``'s does. Genome-wide screens (mostly singles) give a nearly diagonal system.
    """
    gram = (design.T @ design).tocsc()
    ridge = 1e-10 * max(float(gram.diagonal().max()), 1.0)
    gram = gram + ridge * sparse.identity(gram.shape[0], format="csc")
    return splinalg.splu(gram).solve(np.asarray(design.T @ rhs))
