"""Raw counts: the one-call path to the log-normalised expression the PDAE expects, and back.

The PDAE models log-normalised expression, ``x = log1p(counts * target_sum / total)``, the
result of ``sc.pp.normalize_total`` then ``sc.pp.log1p``. :func:`normalize_counts` runs both
and keeps the counts in a layer; :func:`size_factors` and :func:`to_counts` invert the
transformation for a cell whose counts are known, which is how predictions are returned on
the count scale.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from anndata import AnnData

from pdae_sc.data._validation import check_matrix

__all__ = ["normalize_counts", "size_factors", "to_counts"]


def normalize_counts(
    adata: AnnData,
    *,
    counts_layer: str = "counts",
    target_sum: float = 1e4,
    copy: bool = False,
) -> AnnData | None:
    """Turn raw counts into the log-normalised expression the PDAE expects, keeping the counts.

    The counts are ``adata.layers[counts_layer]`` if that layer exists, else ``adata.X``,
    which is then first copied to ``adata.layers[counts_layer]``. ``adata.X`` is replaced by
    ``log1p(counts * target_sum / total)`` per cell (float32), computed by
    ``sc.pp.normalize_total(adata, target_sum=target_sum)`` and ``sc.pp.log1p(adata)``.
    Register the result with ``PDAE.setup_anndata(adata, ..., counts_layer=counts_layer)``
    so that ``model.predict(..., scale="counts")`` can return counts.

    Parameters
    ----------
    adata
        Cells × genes with non-negative raw counts (UMIs) in ``X`` or ``layers[counts_layer]``,
        in memory (dense or sparse). Normalise before selecting genes, so that ``total`` is
        the library size over all genes.
    counts_layer
        Layer that holds (or receives) the raw counts.
    target_sum
        Total of every cell after normalisation (``1e4``: counts per 10,000).
    copy
        Work on a copy and return it; ``adata`` is not changed.

    Returns
    -------
    ``None``, or the modified copy with ``copy=True``. Writes ``adata.X`` (float32, same
    sparsity as the counts), ``adata.layers[counts_layer]`` (the previous ``X``, if the layer
    did not exist) and ``adata.uns["log1p"]`` (written by scanpy). ``obs`` and ``var`` are not
    changed.

    Examples
    --------
    >>> import pdae_sc as pdae
    >>> adata = pdae.data.simulate(n_perturbations=2, n_cells_per_condition=10, counts=True)
    >>> adata.X = adata.layers.pop("counts")
    >>> pdae.pp.normalize_counts(adata)
    >>> sorted(adata.layers)
    ['counts']
    >>> pdae.model.PDAE.setup_anndata(
    ...     adata, "perturbation", control_group="ctrl", counts_layer="counts"
    ... )
    """
    import scanpy as sc

    if not isinstance(adata, AnnData):
        raise TypeError(
            f"adata must be an AnnData, got {type(adata).__name__}; for MuData pass the RNA "
            "modality, e.g. normalize_counts(mdata['rna'])."
        )
    if adata.isbacked:
        raise ValueError(
            "adata is backed (opened from disk), and normalize_counts rewrites adata.X; load it "
            "first with adata = adata.to_memory(), or normalise before writing the .h5ad file."
        )
    if not isinstance(counts_layer, str) or not counts_layer:
        raise TypeError(f"counts_layer={counts_layer!r} must be a layer name such as 'counts'.")
    if (
        isinstance(target_sum, bool)
        or not isinstance(target_sum, int | float | np.integer | np.floating)
        or not math.isfinite(target_sum)
        or target_sum <= 0
    ):
        raise ValueError(f"target_sum={target_sum!r}; use a positive number such as 1e4.")
    have_layer = counts_layer in adata.layers
    name = f"adata.layers[{counts_layer!r}]" if have_layer else "adata.X"
    if not have_layer and adata.X is None:
        raise ValueError(
            f"adata.X is empty and adata.layers has no {counts_layer!r}; pass counts_layer= to "
            f"name the layer with the counts (layers: {list(adata.layers)})."
        )
    counts = adata.layers[counts_layer] if have_layer else adata.X
    stats = check_matrix(counts, name=name, warn=False)
    if stats.min < 0:
        raise ValueError(
            f"{name} has negative values (minimum {stats.min:g}), so it does not hold raw "
            "counts; pass the layer with the UMI counts as counts_layer."
        )
    if not stats.all_integer:
        if not have_layer and "log1p" in adata.uns:
            raise ValueError(
                "adata.X is not integer and adata.uns['log1p'] exists: it looks normalised "
                "already. Pass the layer with the raw counts as counts_layer= instead."
            )
        warnings.warn(
            f"{name} holds non-integer values; normalize_counts treats them as counts. If they "
            "are normalised already, skip this step.",
            UserWarning,
            stacklevel=2,
        )
    if copy:
        adata = adata.copy()
    if not have_layer:
        adata.layers[counts_layer] = adata.X.copy()
    adata.X = adata.layers[counts_layer].astype(np.float32, copy=True)
    sc.pp.normalize_total(adata, target_sum=float(target_sum))
    sc.pp.log1p(adata)
    return adata if copy else None


def size_factors(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-cell factor ``s`` with ``counts = expm1(x) * s``, i.e. ``total / target_sum``.

    Estimated as ``sum(counts) / sum(expm1(x))`` over the given genes, which is exact for data
    from :func:`normalize_counts` even after genes were selected. Cells without counts in
    these genes get ``NaN``.

    Parameters
    ----------
    x
        Log-normalised expression, shape ``(n_cells, n_genes)``.
    counts
        Raw counts of the same cells and genes, shape ``(n_cells, n_genes)``.

    Returns
    -------
    Array of shape ``(n_cells,)``.
    """
    num = np.asarray(counts, dtype=np.float64).sum(axis=1)
    den = np.expm1(np.asarray(x, dtype=np.float64)).sum(axis=1)
    out = np.full(len(num), np.nan)
    ok = (num > 0) & (den > 0)
    out[ok] = num[ok] / den[ok]
    return out


def to_counts(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Counts ``rint(max(expm1(x), 0) * s)`` of log-normalised cells with size factors ``s``.

    Rounded, not drawn: for a cell moved from a measured source cell (with that cell's
    ``s``), the counts keep the source cell's count noise, so their per-gene
    variance-to-mean ratio is that of measured cells. Drawing counts around ``x`` would add
    a second layer of count noise.

    Parameters
    ----------
    x
        Log-normalised expression, shape ``(n_cells, n_genes)``.
    factors
        Size factor of each cell (:func:`size_factors`), shape ``(n_cells,)``.

    Returns
    -------
    Float32 array of non-negative integers, shape ``(n_cells, n_genes)``.
    """
    mu = np.clip(np.expm1(np.asarray(x, dtype=np.float64)), 0.0, None) * factors[:, None]
    return np.rint(mu).astype(np.float32)
