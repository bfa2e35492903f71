"""Predictions on the count scale: each moved cell put back on its source cell's counts.

A moved cell's expected counts are ``m = expm1(x') * s`` with its source cell's size factor
``s``. Rounding ``m`` would scale the source cell's own Poisson noise with the move: a gene
whose mean the move raises by a factor ``f`` gets its sampling noise raised by ``f`` too, and
on sparse data (a few counts per gene and cell) that makes the predicted counts far more
overdispersed than measured ones. So the source cell's count ``c`` of a gene is replaced by a
draw of the rate it came from, given ``c``, under a negative binomial fitted to the source
cells (a Gamma posterior), the move is applied to that rate, and the count is drawn from a
Poisson around it (:func:`resampled_counts`). Under the model this gives counts with the
source cells' cell-to-cell variation of the rate and fresh count noise at the new mean.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from pdae_sc.data._prediction_adata import SIZE_FACTOR_KEY
from pdae_sc.pp._counts import size_factors

__all__ = [
    "count_scale",
    "counts_matrix",
    "gene_count_noise",
    "resampled_counts",
    "source_size_factors",
]


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


def gene_count_noise(
    count_rows: Callable[[np.ndarray], np.ndarray],
    idx: np.ndarray,
    factors: np.ndarray,
    batch_size: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Negative binomial of each gene in each group of the source cells ``idx``.

    ``factors``: the size factor of each entry of ``idx``; ``groups``: the group of each
    entry (e.g. its condition: cells of different conditions have different rates), one
    group when ``None``. Each cell counts once. Returns, for every group code up to the
    largest (rows) and gene (columns), the rate per unit size factor ``nu`` (a cell's mean
    count is ``s * nu``) and the inverse dispersion ``phi >= 0`` (variance
    ``mu + phi * mu**2``), by the method of moments; ``phi = 0`` is Poisson.
    """
    uniq, first = np.unique(idx, return_index=True)
    s_all = np.asarray(factors, dtype=np.float64)[first]
    g_all = np.zeros(len(uniq), dtype=np.int64) if groups is None else np.asarray(groups)[first]
    n_groups = int(g_all.max()) + 1 if len(g_all) else 1
    sums = None
    for start in range(0, len(uniq), batch_size):
        c = np.asarray(count_rows(uniq[start : start + batch_size]), dtype=np.float64)
        s = s_all[start : start + batch_size, None]
        g = g_all[start : start + batch_size]
        if sums is None:
            sums = np.zeros((3, n_groups, c.shape[1]))
        for k, term in enumerate((c, c * c, s * c)):
            np.add.at(sums[k], g, term)
    if sums is None:
        raise ValueError("no source cells to fit the count noise to")
    sum_c, sum_c2, sum_sc = sums
    s1 = np.bincount(g_all, weights=s_all, minlength=n_groups)[:, None]
    s2 = np.bincount(g_all, weights=s_all * s_all, minlength=n_groups)[:, None]
    nu = np.divide(sum_c, s1, out=np.zeros_like(sum_c), where=s1 > 0)
    excess = sum_c2 - 2 * nu * sum_sc + nu * nu * s2 - nu * s1  # sum of (c - mu)^2 - mu
    den = nu * nu * s2
    phi = np.divide(excess, den, out=np.zeros_like(excess), where=den > 0)
    return nu, np.clip(phi, 0.0, None)


def resampled_counts(
    x: np.ndarray,
    counts: np.ndarray,
    factors: np.ndarray,
    nu: np.ndarray,
    phi: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Counts of moved cells ``x`` whose source cells had ``counts`` (cells × genes).

    With ``m = expm1(x) * s`` and ``r = (m + s) / (c + s)`` (the move of the source count
    ``c`` on the log1p scale), the count is drawn from ``Poisson(max(m + r * (lam - c), 0))``,
    where ``lam`` is drawn from the Gamma posterior of the cell's rate given ``c`` (prior: the
    gene's negative binomial in the source cell's group, the rows of ``nu`` and ``phi`` of
    :func:`gene_count_noise` for these cells; the prior mean itself for a Poisson gene). Where
    the move leaves the expected count as it was (``expm1(x) * s == c``, e.g. the
    ``control`` baseline), the measured count is kept: the same in distribution, and the
    cell itself.
    """
    s = np.asarray(factors, dtype=np.float64)[:, None]
    c = np.asarray(counts, dtype=np.float64)
    m = np.expm1(np.asarray(x, dtype=np.float64)) * s
    nu, phi = np.broadcast_to(nu, c.shape), np.broadcast_to(phi, c.shape)
    mu = s * nu
    over = phi > 0
    if over.all():  # the usual case; the same draws as the masked path, without copies
        theta = 1.0 / phi
        lam = rng.gamma(theta + c, 1.0 / (theta / np.maximum(mu, 1e-12) + 1.0))
    else:
        lam = mu.copy()
        if over.any():
            theta = 1.0 / phi[over]
            rate = theta / np.maximum(mu[over], 1e-12) + 1.0
            lam[over] = rng.gamma(theta + c[over], 1.0 / rate)
    r = (m + s) / (c + s)
    out = rng.poisson(np.clip(m + r * (lam - c), 0.0, None)).astype(np.float32)
    kept = np.abs(m - c) <= 1e-6 + 1e-4 * np.abs(c)  # not moved (float32 round trip)
    out[kept] = c[kept]
    return out


def counts_matrix(
    x: np.ndarray,
    factors: np.ndarray,
    batch_size: int,
    *,
    count_rows: Callable[[np.ndarray], np.ndarray],
    idx: np.ndarray,
    groups: np.ndarray,
    seed: int,
) -> sp.csr_matrix:
    """Counts of the moved cells ``x`` (:func:`resampled_counts`), a CSR matrix built in chunks.

    ``idx``: the source row of each moved cell, read with ``count_rows``; ``factors`` their
    size factors; ``groups`` their conditions. The negative binomial of each gene is fitted
    to the source cells of each condition.
    """
    groups = np.asarray(groups, dtype=np.int64)
    nu, phi = gene_count_noise(count_rows, idx, factors, batch_size, groups)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    blocks = []
    for a in range(0, len(x), batch_size):
        rows = slice(a, a + batch_size)
        counts = count_rows(idx[rows])
        g = groups[rows]
        drawn = resampled_counts(x[rows], counts, factors[rows], nu[g], phi[g], rng)
        blocks.append(sp.csr_matrix(drawn))
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix(x.shape, dtype=np.float32)


def count_scale(x_out, gather, count_rows, picks, groups, batch_size, seed) -> tuple[dict, dict]:
    """``layers`` and ``obs`` values of a ``scale="counts"`` prediction.

    Each predicted cell (row of ``x_out``) is put on the count scale of its source cell
    (``picks``, of conditions ``groups``; ``gather`` and ``count_rows`` read the sources'
    expression and counts), its count noise drawn afresh from ``seed``
    (:mod:`pdae_sc.model._counts_scale`).
    """
    factors = source_size_factors(gather, count_rows, picks, batch_size)
    picks = np.asarray(picks)
    counts = counts_matrix(
        x_out, factors, batch_size, count_rows=count_rows, idx=picks, groups=groups, seed=seed
    )
    layers = {"counts": counts}
    return layers, {SIZE_FACTOR_KEY: factors.astype(np.float32)}
