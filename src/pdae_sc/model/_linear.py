"""Least-squares mean effects of the perturbations, the start of the residual gene shift."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg

from pdae_sc.data._sampler import group_sums

__all__ = ["init_gene_shift", "linear_effects"]


def linear_effects(
    matrix,
    codes: np.ndarray,
    ctx_codes: np.ndarray,
    labels: np.ndarray,
    *,
    log_fold: bool = False,
    dense_limit: int = 2000,
) -> np.ndarray:
    """Per-gene effect of each perturbation: ``beta`` of ``mean[c, ctx] = mu_ctx + l_c beta``.

    The group means of every (condition, context) pair are fitted by least squares
    (minimum-norm) with one free intercept per context; the effects are shared by the
    contexts. The group means come from :func:`group_sums`.

    This is not the ``linear`` baseline of :func:`pdae_sc.tl.predict_baseline`, which
    (without contexts) fixes the intercept at the control cells' mean, as it shifts those
    cells. The two agree when each perturbation's effect is measured by one condition (the
    system is exactly determined); with combinations or contexts they differ slightly.

    Parameters
    ----------
    matrix
        Expression of the cells, ``(n_cells, n_genes)`` (dense, sparse or backed).
    codes
        Condition code of each cell, ``(n_cells,)``.
    ctx_codes
        Context code of each cell, ``(n_cells,)``.
    labels
        Label matrix of the conditions, ``(n_conditions, K)``, dense or sparse.
    log_fold
        Fit log fold changes of the normalised counts instead: the group means of
        ``expm1(x)`` are taken on the log scale, ``log(mean + eps)``, with ``eps`` a tenth
        of the gene's mean over all cells (so genes with few counts do not give huge folds).
    dense_limit
        Up to this many unknowns (contexts + K) the fit is a dense minimum-norm ``lstsq``;
        above it (genome-wide screens, where that is cubic in K) the sparse normal equations
        are solved instead (:func:`_sparse_least_squares`).

    Returns
    -------
    Array ``(K, n_genes)``.
    """
    n_ctx = int(ctx_codes.max()) + 1
    group = codes.astype(np.int64) * n_ctx + ctx_codes
    present, slot = np.unique(group, return_inverse=True)
    sums, counts = group_sums(matrix, slot.ravel(), len(present), np.expm1 if log_fold else None)
    means = sums / counts[:, None]
    if log_fold:
        eps = 0.1 * sums.sum(0) / max(1, len(codes)) + 1e-8
        means = np.log(means + eps)
    cond, ctx = present // n_ctx, present % n_ctx
    labels = sparse.csr_matrix(labels, dtype=np.float64)
    design = sparse.hstack([sparse.csr_matrix(np.eye(n_ctx)[ctx]), labels[cond]], format="csc")
    if design.shape[1] <= dense_limit:
        coef = np.linalg.lstsq(design.toarray(), means, rcond=None)[0]
    else:
        coef = _sparse_least_squares(design, means)
    return coef[n_ctx:]


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


def init_gene_shift(model) -> None:
    """Start the residual gene shift ``B`` at the least-squares mean effects."""
    import torch

    cells = model.registration.cells
    beta = linear_effects(
        model.registration.matrix,
        cells.codes,
        cells.context_codes,
        cells.encoded.label_rows,
        log_fold=model.module.residual_mode == "multiplicative",
    )
    with torch.no_grad():
        model.module.gene_shift.weight.copy_(torch.as_tensor(beta.T, dtype=torch.float32))
