"""Least-squares mean effects of the perturbations, the start of the residual gene shift."""

from __future__ import annotations

import numpy as np

from pdae_sc.data._sampler import RowGatherer

__all__ = ["linear_effects"]


def linear_effects(
    matrix,
    codes: np.ndarray,
    ctx_codes: np.ndarray,
    labels: np.ndarray,
    chunk: int = 4096,
) -> np.ndarray:
    """Per-gene effect of each perturbation: ``beta`` of ``mean[c, ctx] = mu_ctx + l_c beta``.

    The group means of every (condition, context) pair are fitted by least squares
    (minimum-norm) with one intercept per context, so the effects are the linear baseline's
    mean changes, shared by the contexts. The matrix is read in chunks of rows.

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
    chunk
        Rows read at a time.

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
    for start in range(0, len(codes), chunk):
        idx = np.arange(start, min(start + chunk, len(codes)))
        np.add.at(sums, group[idx], rows(idx).astype(np.float64))
    present = np.flatnonzero(counts > 0)
    means = sums[present] / counts[present, None]
    cond, ctx = present // n_ctx, present % n_ctx
    design = np.hstack([np.eye(n_ctx)[ctx], labels[cond]])
    coef = np.linalg.lstsq(design, means, rcond=None)[0]
    return coef[n_ctx:]
