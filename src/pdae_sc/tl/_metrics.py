"""Distribution and mean metrics between predicted and observed cells, and :func:`evaluate`."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from pdae_sc.data._labels import encode_conditions
from pdae_sc.data._validation import BLOCK_VALUES

from ._common import check_genes as _check_genes
from ._common import control_rows
from ._common import layer_matrix as _matrix
from ._common import obs_column as _obs_column
from ._common import pearson as _pearson
from ._common import r2 as _r2

__all__ = [
    "duplicate_groups",
    "energy_distance",
    "evaluate",
    "mean_l2",
    "mmd_rbf",
    "pearson_delta",
    "r2_mean",
    "top_de_genes",
]

METRICS = ("energy_distance", "mmd", "mean_l2", "r2_mean", "pearson_delta", "pearson_delta_top")
_BLOCK = BLOCK_VALUES  # pairwise entries per chunk (32 MiB in float64)


def _as_2d(x: object, name: str) -> np.ndarray:
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n_cells, n_genes); got shape {x.shape}.")
    return x


def _check_pair(x: object, y: object, min_cells: int = 1) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_2d(x, "x"), _as_2d(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} genes but y has {y.shape[1]}; they must match.")
    if min(len(x), len(y)) < min_cells:
        raise ValueError(
            f"Need at least {min_cells} cells on each side; got {len(x)} and {len(y)}."
        )
    return x, y


def _sq_dist_blocks(x: np.ndarray, y: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row_start, block)`` with squared Euclidean distances, block ``(b, len(y))``."""
    x_sq, y_sq = (x * x).sum(1), (y * y).sum(1)
    step = max(1, _BLOCK // max(len(y), 1))
    for start in range(0, len(x), step):
        xb = x[start : start + step]
        d2 = x_sq[start : start + step, None] + y_sq[None, :] - 2.0 * (xb @ y.T)
        yield start, np.maximum(d2, 0.0)


def _pair_sum(x: np.ndarray, y: np.ndarray, fn, *, groups: np.ndarray | None = None) -> float:
    """Sum of ``fn(squared distance)`` over pairs of rows of ``x`` and ``y``.

    With ``groups`` (``x`` and ``y`` the same sample, one group code per row) the pairs of
    rows in the same group are left out, the self-pairs among them.
    """
    total = 0.0
    for start, d2 in _sq_dist_blocks(x, y):
        v = fn(d2)
        if groups is not None:
            v[groups[start : start + len(d2), None] == groups[None, :]] = 0.0
        total += float(v.sum())
    return total


def _n_pairs(groups: np.ndarray) -> int:
    """Ordered pairs of rows in different groups: ``n² - sum(group size²)``."""
    sizes = np.unique(groups, return_counts=True)[1].astype(np.int64)
    return int(len(groups) ** 2 - (sizes * sizes).sum())


def _group_codes(groups: object, n: int, name: str) -> np.ndarray:
    """Integer codes of ``groups`` (one per row); every row its own group when ``None``."""
    if groups is None:
        return np.arange(n)
    values = np.asarray(groups)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(
            f"{name} must have one entry per cell ({n}); got shape {values.shape}. Pass the "
            "source cell of each row, e.g. pred.obs['pdae_source_cell']."
        )
    if pd.isna(pd.Series(values)).any():
        raise ValueError(f"{name} has missing values; give every cell a source id.")
    codes = pd.factorize(pd.Series(values), sort=False)[0]
    if codes.max(initial=0) == 0 and n > 1:
        raise ValueError(
            f"All {n} cells share one source in {name}: a sample made from one source cell "
            "has no independent pairs, so its within-sample distances cannot be estimated. "
            "Predict from at least 2 distinct source cells."
        )
    return codes


def duplicate_groups(x: object) -> np.ndarray:
    """Group code of each row of ``x``: identical rows share a code.

    The source of a resampled cell is the cell itself, so exact copies of a row are one
    source for :func:`energy_distance` and :func:`mmd_rbf`. :func:`evaluate` uses this when
    a prediction carries no ``pdae_source_cell`` column.

    Parameters
    ----------
    x
        Cells, shape ``(n_cells, n_genes)``, dense or sparse.

    Returns
    -------
    Integer codes, shape ``(n_cells,)``, numbered in order of first appearance.

    Examples
    --------
    >>> duplicate_groups(np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]]))
    array([0, 1, 0])
    """
    x = _as_2d(x, "x")
    return pd.factorize(pd.Series([row.tobytes() for row in np.ascontiguousarray(x)]))[0]


def _within(x: np.ndarray, fn, groups: np.ndarray) -> float:
    """Mean of ``fn(squared distance)`` over pairs of rows of ``x`` in different groups."""
    return _pair_sum(x, x, fn, groups=groups) / _n_pairs(groups)


def energy_distance(
    x: np.ndarray,
    y: np.ndarray,
    *,
    statistic: Literal["u", "v"] = "u",
    groups_x: Sequence[object] | np.ndarray | None = None,
    groups_y: Sequence[object] | np.ndarray | None = None,
) -> float:
    """Energy distance with the (non-squared) Euclidean distance.

    ``2 E||X - Y|| - E||X - X'|| - E||Y - Y'||``, with the cross term averaged over all
    ``n * m`` pairs. With ``statistic="u"`` (the default, used by :func:`evaluate`) the
    within-sample terms are U-statistics: self-pairs excluded, divided by ``n (n - 1)``. The
    estimate is unbiased for independent cells, so it can be slightly negative when both
    samples come from the same law. With ``statistic="v"`` they are V-statistics, averaged
    over all ``n²`` pairs with the zero self-pairs included, as pertpy's
    ``pt.tl.Distance("edistance")`` computes them; that estimate is biased upwards:

    ``V = U + mean_{i≠j} ||x_i - x_j|| / n + mean_{i≠j} ||y_i - y_j|| / m``,

    about 0.1 more than ``U`` for 100 cells a side in typical data.

    **Cells that are not independent.** A prediction that resamples a pool of cells, or
    moves the same source cell several times, holds copies (or near copies) of one cell.
    Their pairs add near-zero distances to ``E||X - X'||`` and inflate the score by about
    ``mean distance / pool size``. ``groups_x`` (``groups_y``) names the source of each row;
    pairs that share a source are left out of the within-sample term, which stays
    unbiased: ``mean over pairs i, j with g_i ≠ g_j`` of ``||x_i - x_j||``. The cross term
    needs no change. :func:`evaluate` passes ``obs["pdae_source_cell"]``, or
    :func:`duplicate_groups` where there is no such column.

    Pairwise distances are computed in chunks, so memory stays small for ~10k cells.

    Parameters
    ----------
    x
        Cells of the first sample, shape ``(n, n_genes)``, ``n >= 2``.
    y
        Cells of the second sample, shape ``(m, n_genes)``, ``m >= 2``.
    statistic
        ``"u"`` (unbiased, self-pairs excluded) or ``"v"`` (pertpy's convention).
    groups_x
        Source of each cell of ``x``, shape ``(n,)`` (any hashable ids; at least two
        distinct); ``None``: every cell is its own source. Only with ``statistic="u"``.
    groups_y
        The same for ``y``.

    Returns
    -------
    The energy distance (0 for identical laws).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 5)) + 1.0
    >>> energy_distance(x, y) > energy_distance(x, rng.normal(size=(200, 5)))
    True
    >>> energy_distance(x, y, statistic="v") > energy_distance(x, y)
    True

    A sample that repeats each of its cells five times, scored with its sources:

    >>> pool = rng.normal(size=(100, 5))
    >>> y_true = rng.normal(size=(400, 5))
    >>> repeated = np.repeat(pool, 5, axis=0)
    >>> sources = np.repeat(np.arange(100), 5)
    >>> bias = energy_distance(repeated, y_true) - energy_distance(pool, y_true)
    >>> fixed = energy_distance(repeated, y_true, groups_x=sources)
    >>> bool(bias > 0.02), bool(abs(fixed - energy_distance(pool, y_true)) < 1e-9)
    (True, True)
    """
    if statistic not in ("u", "v"):
        raise ValueError(f"statistic={statistic!r}; use 'u' (unbiased) or 'v' (pertpy's).")
    if statistic == "v" and (groups_x is not None or groups_y is not None):
        raise ValueError(
            "groups_x/groups_y only apply to statistic='u': the V-statistic keeps every pair."
        )
    x, y = _check_pair(x, y, min_cells=2)
    n, m = len(x), len(y)
    cross = _pair_sum(x, y, np.sqrt) / (n * m)
    if statistic == "v":
        within_x = _pair_sum(x, x, np.sqrt, groups=np.arange(n)) / (n * n)
        within_y = _pair_sum(y, y, np.sqrt, groups=np.arange(m)) / (m * m)
    else:
        within_x = _within(x, np.sqrt, _group_codes(groups_x, n, "groups_x"))
        within_y = _within(y, np.sqrt, _group_codes(groups_y, m, "groups_y"))
    return 2.0 * cross - within_x - within_y


def mmd_rbf(
    x: np.ndarray,
    y: np.ndarray,
    *,
    scales: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
    groups_x: Sequence[object] | np.ndarray | None = None,
    groups_y: Sequence[object] | np.ndarray | None = None,
) -> float:
    """Unbiased squared MMD with a sum of RBF kernels.

    ``k(a, b) = sum_s exp(-||a - b||² / (s * h))`` where ``h`` is the mean squared Euclidean
    distance over all distinct pairs of the pooled sample ``[x; y]`` (so each ``gamma_s =
    1 / (s * h)``). ``MMD² = mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) - 2 mean_{i,j}
    k(x_i, y_j)``: the unbiased U-statistic, which can be slightly negative. As in
    :func:`energy_distance`, ``groups_x`` / ``groups_y`` name the source of each cell and
    the within-sample means leave out the pairs that share a source (copies of one cell
    would add ``k = len(scales)`` each and inflate the score).

    Parameters
    ----------
    x
        Cells of the first sample, shape ``(n, n_genes)``, ``n >= 2``.
    y
        Cells of the second sample, shape ``(m, n_genes)``, ``m >= 2``.
    scales
        Multipliers of the bandwidth ``h``, one RBF kernel each.
    groups_x
        Source of each cell of ``x``, shape ``(n,)``; ``None``: every cell its own source.
    groups_y
        The same for ``y``.

    Returns
    -------
    The MMD² estimate (0 when every pooled cell is identical).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> mmd_rbf(rng.normal(size=(100, 3)), rng.normal(size=(100, 3)) + 2.0) > 0.1
    True
    """
    x, y = _check_pair(x, y, min_cells=2)
    n, m = len(x), len(y)
    codes_x, codes_y = _group_codes(groups_x, n, "groups_x"), _group_codes(groups_y, m, "groups_y")
    pooled = np.vstack([x, y])
    big_n = n + m
    # Mean of ||z_i - z_j||² over i != j in closed form.
    h = 2.0 * (big_n * (pooled**2).sum() - (pooled.sum(0) ** 2).sum()) / (big_n * (big_n - 1))
    if h <= 0:
        return 0.0
    gammas = [1.0 / (float(s) * h) for s in scales]

    def kernel(d2: np.ndarray) -> np.ndarray:
        return sum(np.exp(-g * d2) for g in gammas)

    kxx = _within(x, kernel, codes_x)
    kyy = _within(y, kernel, codes_y)
    kxy = _pair_sum(x, y, kernel) / (n * m)
    return kxx + kyy - 2.0 * kxy


def mean_l2(x: np.ndarray, y: np.ndarray) -> float:
    """Euclidean distance between the mean profiles of two samples of cells.

    Parameters
    ----------
    x
        Cells of the first sample, shape ``(n, n_genes)``.
    y
        Cells of the second sample, shape ``(m, n_genes)``.

    Returns
    -------
    ``||mean(x) - mean(y)||`` over the genes (0 when the mean profiles agree).

    Examples
    --------
    >>> import numpy as np
    >>> import pdae_sc as pdae
    >>> pdae.tl.mean_l2(np.zeros((2, 2)), np.array([[3.0, 4.0]]))
    5.0
    """
    x, y = _check_pair(x, y)
    return float(np.linalg.norm(x.mean(0) - y.mean(0)))


def r2_mean(x_pred: np.ndarray, x_true: np.ndarray) -> float:
    """R² of the true mean profile by the predicted one, across genes.

    Same as ``sklearn.metrics.r2_score(x_true.mean(0), x_pred.mean(0))``.

    Parameters
    ----------
    x_pred
        Predicted cells, shape ``(n, n_genes)``.
    x_true
        Observed cells, shape ``(m, n_genes)``.

    Returns
    -------
    The R² (1 for a perfect prediction, negative when worse than a constant profile);
    ``nan`` when the true mean is the same for every gene.

    Examples
    --------
    >>> import numpy as np
    >>> import pdae_sc as pdae
    >>> pdae.tl.r2_mean(np.array([[1.0, 2.0, 3.0]]), np.array([[0.0, 2.0, 4.0]]))
    0.75
    """
    x_pred, x_true = _check_pair(x_pred, x_true)
    return _r2(x_true.mean(0), x_pred.mean(0))


def pearson_delta(
    x_pred: np.ndarray,
    x_true: np.ndarray,
    control_mean: np.ndarray,
    *,
    genes: np.ndarray | Sequence[int] | None = None,
) -> float:
    """Pearson correlation of the predicted and true mean change versus control.

    Correlates ``mean(x_pred) - control_mean`` with ``mean(x_true) - control_mean`` over all
    genes, or over ``genes``.

    Parameters
    ----------
    x_pred
        Predicted cells, shape ``(n, n_genes)``.
    x_true
        Observed cells, shape ``(m, n_genes)``.
    control_mean
        Mean profile of the control cells, shape ``(n_genes,)``.
    genes
        Genes to correlate over: integer positions (e.g. from :func:`top_de_genes`) or a
        boolean mask; ``None`` uses all genes.

    Returns
    -------
    The Pearson correlation, in ``[-1, 1]``; ``nan`` when either change is constant over
    those genes.

    Examples
    --------
    >>> import numpy as np
    >>> import pdae_sc as pdae
    >>> ctrl = np.zeros(3)
    >>> pred, true = np.array([[1.0, 2.0, 3.0]]), np.array([[2.0, 4.0, 6.0]])
    >>> pdae.tl.pearson_delta(pred, true, ctrl)
    1.0
    >>> pdae.tl.pearson_delta(pred, true, ctrl, genes=[True, True, False])
    1.0
    """
    x_pred, x_true = _check_pair(x_pred, x_true)
    control_mean = np.asarray(control_mean, dtype=np.float64).ravel()
    if control_mean.shape[0] != x_true.shape[1]:
        raise ValueError(
            f"control_mean has {control_mean.shape[0]} genes but x_true has {x_true.shape[1]}."
        )
    d_pred, d_true = x_pred.mean(0) - control_mean, x_true.mean(0) - control_mean
    if genes is not None:
        d_pred, d_true = d_pred[np.asarray(genes)], d_true[np.asarray(genes)]
    return _pearson(d_pred, d_true)


def top_de_genes(x_true: np.ndarray, control_mean: np.ndarray, *, n_genes: int = 20) -> np.ndarray:
    """Positions of the ``n_genes`` genes with the largest ``|mean(x_true) - control_mean|``.

    A simple, test-free stand-in for "top differentially expressed genes": genes are ranked
    by the absolute change of their mean versus control (ties broken by position).

    Parameters
    ----------
    x_true
        Observed cells of the condition, shape ``(n, n_genes)``.
    control_mean
        Mean profile of the control cells, shape ``(n_genes,)``.
    n_genes
        Number of genes to return (all genes when there are fewer).

    Returns
    -------
    Integer positions of the genes, largest change first.

    Examples
    --------
    >>> import numpy as np
    >>> import pdae_sc as pdae
    >>> pdae.tl.top_de_genes(np.array([[0.0, -3.0, 1.0]]), np.zeros(3), n_genes=2)
    array([1, 2])
    """
    delta = np.abs(_as_2d(x_true, "x_true").mean(0) - np.asarray(control_mean).ravel())
    return np.argsort(-delta, kind="stable")[: max(0, min(n_genes, delta.shape[0]))]


def _sources(
    adata: AnnData, source_key: str | None, rows: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """Source code of each of ``rows``: ``obs[source_key]`` if present, else duplicate rows."""
    if source_key is not None and source_key in adata.obs:
        values = adata.obs[source_key].to_numpy()[rows]
        if not pd.isna(pd.Series(values)).any():
            return pd.factorize(pd.Series(values))[0]
    return duplicate_groups(x)


def _rows_mean(mat, idx: np.ndarray) -> np.ndarray:
    return np.asarray(mat[idx].mean(axis=0, dtype=np.float64)).ravel()


def _control_mean(
    adata_control: AnnData | None,
    fallbacks: list[tuple[object, np.ndarray]],
    *,
    perturbation_key: str,
    control_group: str,
    delimiter: str,
    layer: str | None,
) -> np.ndarray:
    """Control mean from ``adata_control``, else the first ``(matrix, control rows)`` found."""
    if adata_control is not None:
        idx = control_rows(adata_control, perturbation_key, control_group, delimiter)
        if len(idx) == 0:
            raise ValueError(
                f"adata_control has no {control_group!r} cells in obs[{perturbation_key!r}]."
            )
        return _rows_mean(_matrix(adata_control, layer, "adata_control"), idx)
    for mat, idx in fallbacks:
        if len(idx):
            return _rows_mean(mat, idx)
    raise ValueError(
        f"Neither adata_true nor adata_pred has {control_group!r} cells to compute the "
        "control mean; pass the control cells as adata_control."
    )


def control_mean(
    adata_pred: AnnData,
    adata_true: AnnData,
    adata_control: AnnData | None = None,
    *,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    delimiter: str = "+",
    layer: str | None = None,
) -> np.ndarray:
    """Mean control expression, as :func:`evaluate` and :func:`pdae_sc.pl.mean_change` use it.

    Taken from ``adata_control`` (its control cells when it has ``perturbation_key``, else
    all of its cells), else from the control cells of ``adata_true``, else of ``adata_pred``.
    """
    fallbacks = []
    for name, adata in (("adata_true", adata_true), ("adata_pred", adata_pred)):
        if perturbation_key not in adata.obs:
            continue
        enc = encode_conditions(
            adata.obs[perturbation_key],
            control_group=control_group,
            delimiter=delimiter,
            name=perturbation_key,
        )
        rows = np.flatnonzero(~enc.labels.any(axis=1)[enc.codes])
        fallbacks.append((_matrix(adata, layer, name), rows))
    return _control_mean(
        adata_control,
        fallbacks,
        perturbation_key=perturbation_key,
        control_group=control_group,
        delimiter=delimiter,
        layer=layer,
    )


def evaluate(
    adata_pred: AnnData,
    adata_true: AnnData,
    *,
    perturbation_key: str = "perturbation",
    control_group: str = "ctrl",
    delimiter: str = "+",
    dosage_key: str | None = None,
    adata_control: AnnData | None = None,
    metrics: Sequence[str] | None = None,
    top_genes: int = 20,
    max_cells: int | None = 2000,
    seed: int = 0,
    layer: str | None = None,
    source_key: str | None = "pdae_source_cell",
) -> pd.DataFrame:
    """Compare predicted with observed cells, one row per condition present in both.

    Conditions are matched by their label vector, so ``"A+B"`` matches ``"B+A"``; the control
    is skipped. The control mean (for the Pearson delta metrics) comes from ``adata_control``
    (its control cells when it has ``perturbation_key``, else all its cells), else from the
    control cells of ``adata_true``, else of ``adata_pred``. Mean-based metrics use all cells
    of a condition; the distribution metrics (energy distance, MMD) use at most ``max_cells``
    cells per side, drawn without replacement with ``np.random.default_rng(seed)``.
    Inputs are not modified; sparse matrices are densified one condition at a time.

    **Repeated cells do not count twice.** A prediction that resamples a small pool (500
    cells from 100 control cells) or moves a source cell several times is not a sample of
    independent cells, and the plain U-statistics would score it worse than the same
    method with each cell once (by about ``mean distance / pool size``: 0.2 for 500 cells
    drawn from 60-100). The energy distance and MMD therefore leave out the within-sample
    pairs that share a source: ``obs[source_key]`` (``"pdae_source_cell"``, written by
    ``model.predict`` and :func:`predict_baseline`) where an AnnData has that column,
    identical rows (:func:`duplicate_groups`) where it has not. Scores of methods that drew
    different numbers of cells, with or without replacement, are then comparable; the
    protocol in the user guide (*Comparing methods fairly*) still draws the same number of
    distinct cells for every method, so that they are also equally noisy.

    The energy distance uses non-squared Euclidean distances and U-statistics (self-pairs
    excluded; see :func:`energy_distance`). pertpy's ``edistance`` includes the self-pairs
    (a V-statistic), so it is larger by ``mean_{i≠j} ||x_i - x_j|| / n +
    mean_{i≠j} ||y_i - y_j|| / m`` for ``n`` predicted and ``m`` observed cells (about 0.1 at
    100 cells a side): to reproduce pertpy's number use ``energy_distance(x, y,
    statistic="v")`` on the same cells. pertpy's ``Distance`` also works on
    ``obsm["X_pca"]`` by default; this function compares genes (``X`` or ``layer``).

    Parameters
    ----------
    adata_pred
        Predicted cells (e.g. from ``model.predict`` or :func:`predict_baseline`).
    adata_true
        Observed cells with the same ``var_names`` in the same order.
    perturbation_key
        Condition column of ``obs`` in both.
    control_group
        Label of the control condition.
    delimiter
        Separator between combined perturbations.
    dosage_key
        Dose column of ``obs``; when given, it must exist in both.
    adata_control
        Control cells for the control mean.
    metrics
        Subset of ``energy_distance``, ``mmd``, ``mean_l2``, ``r2_mean``, ``pearson_delta``,
        ``pearson_delta_top`` (``None``: all).
    top_genes
        Number of top changed genes (:func:`top_de_genes` of the true cells) for
        ``pearson_delta_top{top_genes}``, a positive integer (all genes when there are
        fewer).
    max_cells
        Cells per side for the distribution metrics (``None``: all).
    seed
        Seed of the subsampling.
    layer
        Layer to use instead of ``X`` (in every AnnData).
    source_key
        Column of ``obs`` with the source cell of each predicted (or observed) cell; cells
        with the same source are not paired in the within-sample terms. Where an AnnData
        has no such column, or with ``None``, identical rows count as one source.

    Returns
    -------
    DataFrame with columns ``condition``, ``method`` (``adata_pred.uns["pdae"]["method"]`` or
    ``"unknown"``), ``n_pred``, ``n_true`` and one column per metric (``energy_distance``,
    ``mmd``, ``mean_l2``, ``r2_mean``, ``pearson_delta``, ``pearson_delta_top{top_genes}``).

    Examples
    --------
    >>> import anndata as ad
    >>> rng = np.random.default_rng(0)
    >>> labels = ["ctrl"] * 20 + ["A+B"] * 20
    >>> obs = pd.DataFrame({"perturbation": labels}, index=[f"c{i}" for i in range(40)])
    >>> true = ad.AnnData(rng.normal(size=(40, 5)), obs=obs)
    >>> pred = ad.AnnData(rng.normal(size=(20, 5)), obs=obs.iloc[20:])
    >>> evaluate(pred, true)[["condition", "n_pred", "n_true"]]
      condition  n_pred  n_true
    0       A+B      20      20
    """
    if isinstance(top_genes, bool) or not isinstance(top_genes, int | np.integer) or top_genes < 1:
        raise ValueError(
            f"top_genes={top_genes!r}; use a positive number of genes for "
            "pearson_delta_top (e.g. 20)."
        )
    names = list(METRICS) if metrics is None else list(metrics)
    top_col = f"pearson_delta_top{top_genes}"
    names = ["pearson_delta_top" if n == top_col else n for n in names]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metrics {unknown}; valid names are {list(METRICS)}.")
    _check_genes(adata_pred, adata_true, "adata_true")
    if adata_control is not None:
        _check_genes(adata_pred, adata_control, "adata_control")

    def labels(adata: AnnData, name: str) -> tuple[pd.Series, pd.Series | None]:
        lab = _obs_column(adata, perturbation_key, name)
        dose = None if dosage_key is None else _obs_column(adata, dosage_key, name)
        return lab, dose

    sides = [("adata_true", adata_true), ("adata_pred", adata_pred)]
    labs = [labels(a, n) for n, a in sides]
    dose_all = None
    if dosage_key is not None:
        dose_all = np.concatenate([np.asarray(d, dtype=object) for _, d in labs])
    enc = encode_conditions(
        np.concatenate([np.asarray(lab, dtype=object) for lab, _ in labs]),
        control_group=control_group,
        delimiter=delimiter,
        dosages=dose_all,
        name=perturbation_key,
    )
    bounds = np.cumsum([0] + [a.n_obs for _, a in sides])
    codes = {n: enc.codes[bounds[i] : bounds[i + 1]] for i, (n, _) in enumerate(sides)}
    is_ctrl = ~enc.labels.any(axis=1)
    mats = {n: _matrix(a, layer, n) for n, a in sides}

    control_mean = _control_mean(
        adata_control,
        [(mats[n], np.flatnonzero(is_ctrl[codes[n]])) for n in ("adata_true", "adata_pred")],
        perturbation_key=perturbation_key,
        control_group=control_group,
        delimiter=delimiter,
        layer=layer,
    )

    pred_codes, true_codes = codes["adata_pred"], codes["adata_true"]
    shared = [c for c in pd.unique(pred_codes) if not is_ctrl[c] and (true_codes == c).any()]
    if not shared:
        raise ValueError(
            f"No non-control condition is present in both adata_pred "
            f"({sorted(set(adata_pred.obs[perturbation_key].astype(str)))[:10]}) and adata_true "
            f"({sorted(set(adata_true.obs[perturbation_key].astype(str)))[:10]})."
        )
    method = adata_pred.uns.get("pdae", {}).get("method", "unknown")
    rng = np.random.default_rng(seed)
    rows = []
    for c in shared:
        ip, it = np.flatnonzero(pred_codes == c), np.flatnonzero(true_codes == c)
        row = {"condition": enc.conditions[c], "method": method, "n_pred": len(ip)}
        row["n_true"] = len(it)
        mean_p = _rows_mean(mats["adata_pred"], ip)
        mean_t = _rows_mean(mats["adata_true"], it)
        for side, mean in (("adata_pred", mean_p), ("adata_true", mean_t)):
            if not np.isfinite(mean).all():
                warnings.warn(
                    f"{side} has NaN or Inf values in condition {enc.conditions[c]!r}; its "
                    "metrics are NaN or meaningless. Find them with "
                    f"~np.isfinite({side}.X).all(axis=1) and drop or fix those cells.",
                    UserWarning,
                    stacklevel=2,
                )
        if "energy_distance" in names or "mmd" in names:
            if max_cells is not None:
                ip = np.sort(rng.choice(ip, min(max_cells, len(ip)), replace=False))
                it = np.sort(rng.choice(it, min(max_cells, len(it)), replace=False))
            xp = _as_2d(mats["adata_pred"][ip], "adata_pred")
            xt = _as_2d(mats["adata_true"][it], "adata_true")
            gp = _sources(adata_pred, source_key, ip, xp)
            gt = _sources(adata_true, source_key, it, xt)
            enough = min(len(np.unique(gp)), len(np.unique(gt))) >= 2
            if not enough:
                warnings.warn(
                    f"Condition {enc.conditions[c]!r} has fewer than 2 distinct cells (sources) "
                    "on one side; its energy distance and MMD are NaN.",
                    UserWarning,
                    stacklevel=2,
                )
            pair_kw = {"groups_x": gp, "groups_y": gt}
            if "energy_distance" in names:
                row["energy_distance"] = energy_distance(xp, xt, **pair_kw) if enough else np.nan
            if "mmd" in names:
                row["mmd"] = mmd_rbf(xp, xt, **pair_kw) if enough else np.nan
        if "mean_l2" in names:
            row["mean_l2"] = float(np.linalg.norm(mean_p - mean_t))
        if "r2_mean" in names:
            row["r2_mean"] = _r2(mean_t, mean_p)
        if "pearson_delta" in names:
            row["pearson_delta"] = _pearson(mean_p - control_mean, mean_t - control_mean)
        if "pearson_delta_top" in names:
            top = np.argsort(-np.abs(mean_t - control_mean), kind="stable")[:top_genes]
            row[top_col] = _pearson(
                mean_p[top] - control_mean[top], mean_t[top] - control_mean[top]
            )
        rows.append(row)
    order = ["condition", "method", "n_pred", "n_true"]
    order += [top_col if n == "pearson_delta_top" else n for n in METRICS if n in names]
    return pd.DataFrame(rows, columns=order)
