"""The linear model of the perturbations: least-squares mean effects of each perturbation.

One fit serves two places: the ``linear`` baseline of :func:`pdae_sc.tl.predict_baseline`
shifts the control cells by ``l* beta``, and the residual decoder of
:class:`pdae_sc.model.PDAE` starts its gene shift at ``beta``. So the untrained decoder's
gene-shift term moves control cells exactly as the ``linear`` baseline does.
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
    """Per-gene effects ``beta`` of ``mean[c, ctx] = a[ctx] + l_c beta``, by least squares.

    Every (condition, context) group mean is fitted with equal weight (the control cells of
    a context, every condition whose label row is zero, form one group), the effects
    shared by the contexts; where ``beta`` is not identified, the minimum-norm solution.
    The intercepts ``a``:

    - one context: ``a`` is the control cells' mean as measured, not fitted. Those are the
      cells a linear prediction shifts, so the model fitted is the model used; a fitted
      intercept drifts from them wherever the effects are not additive, and every
      prediction would carry that drift.
    - several contexts: one intercept per context, fitted with ``beta`` over all of its
      groups. A context's control cells alone then make a poor reference for the effects
      measured there (e.g. a stimulation that most knockouts block): the fitted intercepts
      compare each context's perturbed cells with one another.

    ``benchmarks/results/real_data.md`` shows both choices on the development screens
    (the other intercept is worse in both cases).

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
    rows = present >= n_ctx  # the perturbed groups; the rest are the contexts' control cells
    cond = np.where(rows, (present - n_ctx) // n_ctx, 0)
    ctx = np.where(rows, (present - n_ctx) % n_ctx, present)
    group_labels = sparse.diags(rows.astype(np.float64)) @ labels[cond]
    if n_ctx == 1 and not rows.all():  # one context: anchored at its control cells
        n_free, design, rhs = 0, group_labels[rows], means[rows] - means[~rows][0]
    else:  # several contexts: one fitted intercept each
        contexts = np.unique(ctx)
        n_free, rhs = len(contexts), means
        intercepts = sparse.csr_matrix((ctx[:, None] == contexts[None, :]).astype(np.float64))
        design = sparse.hstack([intercepts, group_labels])
    design = sparse.csc_matrix(design)
    if design.shape[0] == 0:
        return np.zeros((labels.shape[1], means.shape[1]))
    if design.shape[1] <= dense_limit:
        coef = np.linalg.lstsq(design.toarray(), rhs, rcond=None)[0]
    else:
        coef = _sparse_least_squares(design, rhs)
    return coef[n_free:]


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
