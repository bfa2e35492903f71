"""Checks of the expression matrix a user registers (read-only, chunked)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["MatrixStats", "check_matrix", "get_matrix"]

_CHUNK = 10_000


@dataclass(frozen=True)
class MatrixStats:
    """Summary of an expression matrix."""

    min: float
    max: float
    all_integer: bool


def get_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error for a missing layer."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= to name the layer holding expression.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer={layer!r} is not in adata.layers; available: {list(adata.layers)}.")
    return adata.layers[layer]


def _chunks(matrix, n_obs: int):
    dense_or_csr = isinstance(matrix, np.ndarray) or sp.issparse(matrix)
    step = n_obs if dense_or_csr and n_obs * max(1, matrix.shape[1]) < 5e7 else _CHUNK
    for start in range(0, n_obs, step):
        block = matrix[start : start + step]
        yield block.data if sp.issparse(block) else np.asarray(block), block


def check_matrix(matrix, *, name: str = "adata.X", warn_counts: bool = True) -> MatrixStats:
    """Check that an expression matrix can be used, chunk by chunk, without modifying it.

    Raises ``ValueError`` for non-finite values, a non-numeric dtype or a sparse format that
    cannot be sliced by rows; warns when the values look like raw counts.

    Parameters
    ----------
    matrix
        Dense, sparse or backed matrix of shape ``(n_cells, n_genes)``.
    name
        How to refer to the matrix in messages.
    warn_counts
        Warn when every value is a non-negative integer and the maximum exceeds 50.

    Returns
    -------
    The :class:`MatrixStats` (minimum, maximum, whether all values are integers).
    """
    if sp.issparse(matrix) and matrix.format not in ("csr", "csc"):
        raise ValueError(
            f"{name} is a sparse {matrix.format.upper()} matrix, which cannot be sliced by "
            f"cells; convert it with {name} = {name}.tocsr()."
        )
    dtype = np.dtype(getattr(matrix, "dtype", np.float32))
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"{name} has dtype {dtype}; expression must be numeric.")
    lo, hi, integer = np.inf, -np.inf, True
    n_obs = matrix.shape[0]
    has_implicit_zero = False
    for values, block in _chunks(matrix, n_obs):
        if sp.issparse(block) and block.nnz < block.shape[0] * block.shape[1]:
            has_implicit_zero = True
        if values.size == 0:
            continue
        if np.issubdtype(values.dtype, np.floating):
            finite = np.isfinite(values)
            if not finite.all():
                n_bad = int((~finite).sum())
                raise ValueError(
                    f"{name} contains {n_bad} non-finite values (NaN or Inf) in one block of "
                    "cells; remove or impute them before setup, e.g. with "
                    "np.nan_to_num on a copy, or drop the affected cells/genes."
                )
            if integer and not np.all(np.mod(values, 1) == 0):
                integer = False
        lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if has_implicit_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if not np.isfinite(lo):
        lo = hi = 0.0
    if warn_counts and integer and lo >= 0 and hi > 50:
        warnings.warn(
            f"{name} looks like raw counts (non-negative integers up to {hi:g}). PDAE expects "
            "log-normalised expression: run sc.pp.normalize_total(adata) and sc.pp.log1p(adata) "
            "(keeping the counts in a layer, e.g. adata.layers['counts'] = adata.X.copy()).",
            UserWarning,
            stacklevel=3,
        )
    return MatrixStats(min=lo, max=hi, all_integer=integer)
