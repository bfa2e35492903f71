"""Predictions on the count scale: each moved cell put back on its source cell's counts."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from pdae_sc.pp._counts import size_factors, to_counts

__all__ = ["counts_matrix", "source_size_factors"]


def source_size_factors(
    x_rows: Callable[[np.ndarray], np.ndarray],
    count_rows: Callable[[np.ndarray], np.ndarray],
    idx: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    """Size factor (``total / target_sum``) of source cells ``idx``, read in chunks.

    Cells without counts in the registered genes get the median of the others. Warns when the
    registered expression does not look like ``log1p`` of the scaled counts.
    """
    uniq = np.unique(idx)
    factors = np.empty(len(uniq))
    spread = []
    for start in range(0, len(uniq), batch_size):
        rows = uniq[start : start + batch_size]
        x, counts = x_rows(rows), count_rows(rows)
        factors[start : start + len(rows)] = size_factors(x, counts)
        if start == 0:  # consistency check on the first chunk
            ratio = np.expm1(x.astype(np.float64)) * factors[: len(rows), None]
            nz = counts > 0
            if nz.any():
                spread.append(np.median(np.abs(ratio[nz] / counts[nz] - 1.0)))
    ok = np.isfinite(factors)
    if not ok.any():
        raise ValueError(
            "No source cell has counts in the registered genes, so predictions cannot be put "
            "on the count scale; check the registered counts_layer."
        )
    factors[~ok] = np.median(factors[ok])
    if spread and spread[0] > 0.05:
        warnings.warn(
            "The registered expression does not look like log1p(normalize_total(counts)) of "
            "the registered counts layer (as written by pdae.pp.normalize_counts); "
            "count-scale predictions are approximate.",
            UserWarning,
            stacklevel=3,
        )
    return factors[np.searchsorted(uniq, idx)]


def counts_matrix(x: np.ndarray, factors: np.ndarray, batch_size: int) -> sp.csr_matrix:
    """Predicted counts ``rint(expm1(x) * factors)`` as a CSR matrix, built in chunks."""
    blocks = [
        sp.csr_matrix(to_counts(x[a : a + batch_size], factors[a : a + batch_size]))
        for a in range(0, len(x), batch_size)
    ]
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix(x.shape, dtype=np.float32)
