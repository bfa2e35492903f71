"""Least-squares mean effects of the perturbations, the start of the residual gene shift."""

from __future__ import annotations

import numpy as np

from pdae_sc.data import _validation
from pdae_sc.data._sampler import RowGatherer

__all__ = ["linear_effects"]


def linear_effects(
    matrix,
    codes: np.ndarray,
    ctx_codes: np.ndarray,
    labels: np.ndarray,
    *,
    log_fold: bool = False,
) -> np.ndarray:
    """Per-gene effect of each perturbation: ``beta`` of ``mean[c, ctx] = mu_ctx + l_c beta``.

    The group means of every (condition, context) pair are fitted by least squares
    (minimum-norm) with one intercept per context, so the effects are the linear baseline's
    mean changes, shared by the contexts. The matrix is read in chunks of rows of a fixed
    number of values (as in the setup scan), so memory does not grow with the cells.

    Parameters
    ----------
    matrix
        Expression of the cells, ``(n_cells, n_genes)`` (dense, sparse or backed).
    codes
        Condition code of each cell, ``(n_cells,)``.
    ctx_codes
        Context code of each cell, ``(n_cells,)``.
    labels
        Label matrix of the conditions, ``(n_conditions, K)``.
    log_fold
        Fit log fold changes of the normalised counts instead: the group means of
        ``expm1(x)`` are taken on the log scale, ``log(mean + eps)``, with ``eps`` a tenth
        of the gene's mean over all cells (so genes with few counts do not give huge folds).

    Returns
    -------
    Array ``(K, n_genes)``.
    """
    n_cond, n_ctx = labels.shape[0], int(ctx_codes.max()) + 1
    group = codes.astype(np.int64) * n_ctx + ctx_codes
    n_groups = n_cond * n_ctx
    rows = RowGatherer(matrix)
    sums = np.zeros((n_groups, matrix.shape[1]))
    counts = np.bincount(group, minlength=n_groups)
    chunk = max(1, _validation._CHUNK_ELEMENTS // max(1, matrix.shape[1]))
    for start in range(0, len(codes), chunk):
        idx = np.arange(start, min(start + chunk, len(codes)))
        x = rows(idx).astype(np.float64)
        np.add.at(sums, group[idx], np.expm1(x) if log_fold else x)
    present = np.flatnonzero(counts > 0)
    means = sums[present] / counts[present, None]
    if log_fold:
        eps = 0.1 * sums.sum(0) / max(1, len(codes)) + 1e-8
        means = np.log(means + eps)
    cond, ctx = present // n_ctx, present % n_ctx
    design = np.hstack([np.eye(n_ctx)[ctx], labels[cond]])
    coef = np.linalg.lstsq(design, means, rcond=None)[0]
    return coef[n_ctx:]
