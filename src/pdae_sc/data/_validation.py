"""Checks of the expression matrix a user registers (read-only, chunked)."""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

__all__ = [
    "BLOCK_VALUES",
    "MatrixStats",
    "check_indices",
    "check_matrix",
    "check_positive_int",
    "check_seed",
    "check_unique_names",
    "check_var_names_match",
    "dosage_list",
    "get_matrix",
    "target_list",
]

#: The package's memory block: values handled at once when a matrix is scanned, a batch of
#: cells is predicted on the CPU, a label table is kept dense or pairwise distances are
#: summed in chunks (2**22: 16 MB of float32, below the size from which glibc maps every
#: allocation afresh, 32 MB).
BLOCK_VALUES = 2**22
#: Largest number of matrix entries (dense) or stored values (sparse) checked at once.
_CHUNK_ELEMENTS = BLOCK_VALUES


@dataclass(frozen=True)
class MatrixStats:
    """Summary of an expression matrix."""

    min: float
    max: float
    all_integer: bool


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``, else a clear error.

    Booleans and floats (even ``4.0``) are refused with ``TypeError``; integers below
    ``minimum`` with ``ValueError``. The message names the argument and the value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name}={value!r} has type {type(value).__name__}; use an integer >= {minimum}."
        )
    if value < minimum:
        raise ValueError(f"{name}={value!r}; use an integer >= {minimum}.")
    return int(value)


def check_seed(seed: object, name: str = "seed") -> int | None:
    """``seed`` if it is ``None`` or a non-negative integer, else a clear error."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name}={seed!r} has type {type(seed).__name__}; use None or a non-negative "
            "integer, e.g. seed=0."
        )
    if seed < 0:
        raise ValueError(f"{name}={seed!r}; use None or a non-negative integer, e.g. seed=0.")
    return int(seed)


def get_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error for a missing layer."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= to name the layer holding expression.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer={layer!r} is not in adata.layers; available: {list(adata.layers)}.")
    return adata.layers[layer]


def check_unique_names(adata: AnnData) -> None:
    """Raise ``ValueError`` when ``adata.obs_names`` or ``adata.var_names`` have duplicates.

    Duplicated cell names make ``obs["pdae_source_cell"]`` ambiguous; duplicated gene names
    make the genes of a saved model ambiguous.
    """
    for axis in ("obs", "var"):
        names = getattr(adata, f"{axis}_names")
        if not names.is_unique:
            dup = names[names.duplicated()].unique()[:5].tolist()
            raise ValueError(
                f"adata.{axis}_names has duplicates (e.g. {dup}); make them unique with "
                f"adata.{axis}_names_make_unique()."
            )


def check_var_names_match(
    expected,
    adata: AnnData,
    *,
    what: str = "the model",
    names_code: str = "model.adata.var_names",
) -> None:
    """Raise ``ValueError`` unless ``adata.var_names`` equal ``expected``, in the same order.

    Parameters
    ----------
    expected
        Gene names the model was trained on, in order.
    adata
        AnnData to check.
    what
        How to refer to the model in messages.
    names_code
        Python expression for the model's gene names, used in the suggested fix.
    """
    expected = np.asarray(expected, dtype=str)
    got = np.asarray(adata.var_names, dtype=str)
    if np.array_equal(expected, got):
        return
    fix = f"adata = adata[:, {names_code}].copy()"
    missing = np.setdiff1d(expected, got)
    extra = np.setdiff1d(got, expected)
    if len(missing):
        others = (
            f" and has {len(extra)} genes it was not trained on (e.g. {extra[:5].tolist()})"
            if len(extra)
            else ""
        )
        raise ValueError(
            f"adata misses {len(missing)} of the {len(expected)} genes of {what} (e.g. "
            f"{missing[:5].tolist()}){others}. The model needs all of its genes, in its "
            f"order: use data with these genes, then {fix}."
        )
    if len(extra):
        raise ValueError(
            f"adata has {len(extra)} genes that {what} was not trained on (e.g. "
            f"{extra[:5].tolist()}); keep only the model's genes, in its order: {fix}."
        )
    first = int(np.flatnonzero(expected != got)[0])
    raise ValueError(
        f"adata has the genes of {what} but in a different order (position {first} holds "
        f"{str(got[first])!r} instead of {str(expected[first])!r}); reorder them: {fix}."
    )


def _chunks(matrix, n_obs: int):
    """Values of ``matrix`` in pieces of at most ``_CHUNK_ELEMENTS``, never copying it whole.

    Yields ``(values, has_implicit_zero)``: views of an in-memory sparse matrix's stored
    values or of a dense array's rows, and rows read from a backed matrix.
    """
    if sp.issparse(matrix):
        implicit = matrix.nnz < n_obs * matrix.shape[1]
        data = matrix.data
        if data.size == 0:
            yield data, implicit
        for start in range(0, data.size, _CHUNK_ELEMENTS):
            yield data[start : start + _CHUNK_ELEMENTS], implicit
        return
    step = max(1, _CHUNK_ELEMENTS // max(1, matrix.shape[1]))
    for start in range(0, n_obs, step):
        block = matrix[start : start + step]  # a view for arrays, a read for backed data
        if sp.issparse(block):
            yield block.data, block.nnz < block.shape[0] * block.shape[1]
        else:
            yield np.asarray(block).ravel(), False


def check_matrix(matrix, *, name: str = "adata.X", warn: bool = True) -> MatrixStats:
    """Check that an expression matrix can be used, chunk by chunk, without modifying it.

    Raises ``ValueError`` for non-finite values, an empty matrix or a sparse format other than
    CSR/CSC, and ``TypeError`` for a non-numeric dtype. Integer and float16 matrices are
    accepted (minibatches are cast to float32). Warns when the values look like raw counts
    and when a CSC matrix will make row access slow.

    Parameters
    ----------
    matrix
        Dense, sparse or backed matrix of shape ``(n_cells, n_genes)``.
    name
        How to refer to the matrix in messages.
    warn
        Warn when every value is a non-negative integer and the maximum exceeds 50 (raw
        counts), and when the matrix is CSC.

    Returns
    -------
    The :class:`MatrixStats` (minimum, maximum, whether all values are integers).
    """
    if sp.issparse(matrix) and matrix.format not in ("csr", "csc"):
        raise ValueError(
            f"{name} is a sparse {matrix.format.upper()} matrix, which cannot be sliced by "
            f"cells; convert it with {name} = {name}.tocsr()."
        )
    if warn and sp.issparse(matrix) and matrix.format == "csc":
        warnings.warn(
            f"{name} is a sparse CSC matrix: PDAE reads rows (cells), which is slow in CSC. "
            f"Convert it once with {name} = {name}.tocsr().",
            UserWarning,
            stacklevel=3,
        )
    dtype = np.dtype(getattr(matrix, "dtype", np.float32))
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(
            f"{name} has dtype {dtype}; expression must be numeric (float or integer), e.g. "
            f"{name} = {name}.astype(np.float32)."
        )
    if len(matrix.shape) != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{name} has shape {tuple(matrix.shape)}; it needs at least one cell and one gene."
        )
    lo, hi, integer = np.inf, -np.inf, True
    n_obs = matrix.shape[0]
    has_implicit_zero = False
    for values, implicit_zero in _chunks(matrix, n_obs):
        has_implicit_zero |= implicit_zero
        if values.size == 0:
            continue
        if np.issubdtype(values.dtype, np.floating):
            finite = np.isfinite(values)
            if not finite.all():
                n_bad = int((~finite).sum())
                raise ValueError(
                    f"{name} contains {n_bad} non-finite values (NaN or Inf) in one block of "
                    "cells; remove or impute them before passing the cells, e.g. with "
                    "np.nan_to_num on a copy, or drop the affected cells/genes."
                )
            if integer and not np.all(np.mod(values, 1) == 0):
                integer = False
        lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if has_implicit_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if not np.isfinite(lo):
        lo = hi = 0.0
    if warn and integer and lo >= 0 and hi > 50:
        warnings.warn(
            f"{name} looks like raw counts (non-negative integers up to {hi:g}). PDAE expects "
            "log-normalised expression: run pdae.pp.normalize_counts(adata), which keeps the "
            "counts in adata.layers['counts'] and writes normalize_total + log1p into X, then "
            "setup_anndata(..., counts_layer='counts').",
            UserWarning,
            stacklevel=3,
        )
    return MatrixStats(min=lo, max=hi, all_integer=integer)


def check_indices(indices, n_obs: int) -> np.ndarray:
    """``indices`` as int64 positions in ``[0, n_obs)`` (a boolean mask of length ``n_obs``)."""
    if indices is None:
        return np.arange(n_obs)
    idx = np.asarray(indices)
    if idx.dtype == bool and idx.ndim == 1 and len(idx) == n_obs:
        return np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(
            f"indices must be integer positions (or a boolean mask of length {n_obs}), got "
            f"an array of dtype {idx.dtype} and shape {idx.shape}."
        )
    bad = idx[(idx < 0) | (idx >= n_obs)]
    if bad.size:
        raise IndexError(
            f"indices {bad[:5].tolist()} are outside the {n_obs} cells of adata; use "
            f"positions 0 to {n_obs - 1}."
        )
    return idx.astype(np.int64)


def dosage_list(dosages: object) -> list[object] | None:
    """``dosages`` as a list (one entry per target), refusing a string or a lone number."""
    if dosages is None:
        return None
    if isinstance(dosages, str | bytes | int | float | np.number) or not hasattr(
        dosages, "__iter__"
    ):
        raise TypeError(
            f"dosages={dosages!r} must be a list with one dose per target, e.g. "
            "dosages=[0.5] for one target or [0.5, '1+2'] for two (None for dose 1); "
            f"got a {type(dosages).__name__}."
        )
    return list(dosages)


def target_list(perturbations: object) -> list[str]:
    """``perturbations`` as a non-empty list of labels (a lone string is one target)."""
    if isinstance(perturbations, str):
        return [perturbations]
    if perturbations is None or not hasattr(perturbations, "__iter__"):
        raise TypeError(
            f"perturbations={perturbations!r}; name the targets as a list of labels, e.g. "
            "['A+B', 'C'] (or the control label)."
        )
    out = list(perturbations)
    if not out:
        raise ValueError("perturbations is empty; name at least one target, e.g. ['A+B'].")
    return out
