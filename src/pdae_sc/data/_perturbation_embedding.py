"""Perturbations never measured, placed by a prior embedding of the perturbations.

The PDAE guarantee covers only targets in the span of the training labels: a perturbation
that was never measured has no column of ``W`` (or of the gene shift). A prior embedding
(one vector per perturbation: gene loadings from expression, protein language models, text
models, interaction networks) still gives an estimate: a perturbation is expected to act
like the measured perturbations whose embeddings it resembles.

:class:`EmbeddingMap` learns that resemblance on the measured perturbations. It regresses
their effects (the per-gene mean changes of the linear least-squares fit, one row per
measured perturbation with an embedding) on their embeddings by ridge regression with an
unpenalised intercept. A new perturbation's predicted effect is then a weighted sum of the
measured effects, with weights that sum to one, so it is written as a label vector over the
measured perturbations: the PDAE moves cells with ``W a`` and the linear baseline shifts
them by ``a beta``. The simplest estimate, the mean effect of every measured perturbation
(those without an embedding too), competes with the ridge fits on leave-one-perturbation-out
error, and the simplest candidate within one standard error of the best is used: the
embedding is used only where it predicts the measured effects clearly better than their mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse.linalg import LinearOperator, svds

__all__ = [
    "EMBEDDING_FROM_EXPRESSION",
    "EmbeddingMap",
    "PerturbationEmbedding",
    "check_embedding_table",
    "embedding_label_rows",
    "expression_embedding",
    "fit_embedding_map",
]

#: ``setup_anndata(perturbation_embedding="expression")``: each target gene's loadings in a
#: PCA of the registered cells (no download, needs the target genes among the measured ones).
EMBEDDING_FROM_EXPRESSION = "expression"
#: Principal components of the built-in expression embedding.
EXPRESSION_COMPONENTS = 10
#: Cells the built-in PCA reads at most (an even subsample of larger data).
EXPRESSION_MAX_CELLS = 20_000
#: Penalties tried, relative to the mean eigenvalue of the centred embedding's Gram matrix;
#: ``inf`` is the mean of the measured effects.
RELATIVE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, np.inf)


@dataclass(frozen=True)
class PerturbationEmbedding:
    """One vector per perturbation name (read-only).

    Parameters
    ----------
    names
        Perturbation names.
    vectors
        Their vectors, shape ``(n_names, n_dims)``.
    source
        ``"expression"`` (built from the registered cells) or ``"table"`` (the user's).
    """

    names: list[str]
    vectors: np.ndarray = field(repr=False)
    source: str

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def _index(self) -> dict[str, int]:
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {n: i for i, n in enumerate(self.names)}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def rows(self, names: list[str]) -> np.ndarray:
        """The vectors of ``names`` (all known), shape ``(len(names), n_dims)``."""
        return self.vectors[[self._index[n] for n in names]]

    def to_frame(self) -> pd.DataFrame:
        """The embedding as a table (index: names), the form ``perturbation_embedding`` takes."""
        return pd.DataFrame(self.vectors, index=list(self.names))


def check_embedding_table(table: object, *, what: str = "perturbation_embedding") -> pd.DataFrame:
    """A user's embedding as a float DataFrame (index: perturbation names), checked.

    Accepts a :class:`pandas.DataFrame` (one row per perturbation, numeric columns) or a
    mapping ``{name: vector}``. Raises ``TypeError`` / ``ValueError`` naming the problem:
    not a table, empty, names not unique or not strings, non-numeric or non-finite values,
    vectors of unequal length. The input is not changed.
    """
    if isinstance(table, Mapping):
        try:
            lengths = {len(np.atleast_1d(np.asarray(v))) for v in table.values()}
        except TypeError as error:
            raise TypeError(f"{what}: every value of the mapping must be a vector.") from error
        if len(lengths) > 1:
            raise ValueError(
                f"{what}: the vectors have different lengths {sorted(lengths)}; give every "
                "perturbation a vector of the same length."
            )
        table = pd.DataFrame({k: np.atleast_1d(np.asarray(v)) for k, v in table.items()}).T
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"{what} must be a pandas.DataFrame (index: perturbation names, one numeric "
            f"column per dimension), a mapping {{name: vector}}, or "
            f"{EMBEDDING_FROM_EXPRESSION!r}; got {type(table).__name__}."
        )
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {table.shape}); give one row per perturbation.")
    names = pd.Index(table.index)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"{what}: the index must hold perturbation names (str), e.g. "
            f"table.index = table.index.astype(str); got {names[:3].tolist()}."
        )
    if names.has_duplicates:
        raise ValueError(
            f"{what}: perturbation names occur more than once, e.g. "
            f"{names[names.duplicated()].unique()[:5].tolist()}; keep one row per name."
        )
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric or any(pd.api.types.is_bool_dtype(table[c]) for c in table.columns):
        raise TypeError(
            f"{what}: columns {non_numeric[:5] or list(table.columns[:5])} are not numeric; "
            "an embedding holds numbers only (move names and notes to the index)."
        )
    values = table.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{what}: {int(bad.sum())} rows hold NaN or infinite values, e.g. "
            f"{names[bad][:5].tolist()}; drop those rows or fill them."
        )
    return pd.DataFrame(values, index=names.astype(str), columns=table.columns)


def expression_embedding(
    matrix,
    genes: list[str],
    *,
    n_components: int = EXPRESSION_COMPONENTS,
    max_cells: int = EXPRESSION_MAX_CELLS,
    seed: int = 0,
) -> pd.DataFrame:
    """Each gene's loadings in a PCA of the cells: the built-in perturbation embedding.

    A genetic perturbation is embedded by the loadings of its target gene (the rows of the
    principal axes, scaled by the components' standard deviations), as the linear model of
    Ahlmann-Eltze, Huber & Anders (2025) does. The PCA is centred and reads at most
    ``max_cells`` cells (evenly spaced rows); a sparse matrix is centred implicitly, never
    densified.

    Parameters
    ----------
    matrix
        Expression, ``(n_cells, n_genes)``: dense, sparse or backed.
    genes
        The gene names (columns of ``matrix``).
    n_components
        Principal components (at most ``min(n_cells, n_genes) - 1``).
    max_cells
        Cells read at most.
    seed
        Start vector of the iterative SVD.

    Returns
    -------
    DataFrame ``(n_genes, n_components)`` indexed by gene, columns ``PC1``, ``PC2``, ...
    """
    n_cells = matrix.shape[0]
    rows = np.unique(np.linspace(0, n_cells - 1, min(n_cells, max_cells)).astype(np.int64))
    x = matrix[rows]
    if hasattr(x, "tocsr"):
        x = x.tocsr().astype(np.float64)
    else:
        x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(x.mean(axis=0)).ravel()
    k = int(min(n_components, min(x.shape) - 1))
    if k < 1:
        raise ValueError(
            f"The expression embedding needs at least 2 cells and 2 genes; got {x.shape}."
        )
    ones = np.ones(x.shape[0])
    centred = LinearOperator(
        x.shape,
        matvec=lambda v: x @ np.ravel(v) - ones * (mu @ np.ravel(v)),
        rmatvec=lambda u: x.T @ np.ravel(u) - mu * (ones @ np.ravel(u)),
        dtype=np.float64,
    )
    v0 = np.random.default_rng(seed).standard_normal(min(x.shape))
    _, s, vt = svds(centred, k=k, v0=v0)
    order = np.argsort(s)[::-1]
    s, vt = s[order], vt[order]
    signs = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])  # deterministic signs
    loadings = (vt * signs[:, None]).T * (s / np.sqrt(max(1, x.shape[0] - 1)))
    return pd.DataFrame(
        loadings, index=pd.Index(genes, dtype=object), columns=[f"PC{i + 1}" for i in range(k)]
    )


@dataclass(frozen=True)
class EmbeddingMap:
    """Ridge regression from measured perturbations' embeddings to their effects.

    Built by :meth:`fit`; :meth:`weights` writes a new perturbation as a weighted sum of
    the measured ones (weights summing to one).

    Parameters
    ----------
    names
        The measured perturbations the weights run over: those with an embedding, then
        those without one.
    centre
        Mean embedding of the measured perturbations with one, ``(n_dims,)``.
    base
        Weights of a perturbation at the centre, ``(n_names,)``, summing to one: the mean
        effect of every measured perturbation (``penalty=None``) or of those with an
        embedding (a ridge fit).
    solve
        ``(E_c^T E_c + lambda I)^-1 E_c^T`` padded with zero columns for the perturbations
        without an embedding, ``(n_dims, n_names)``; zero at ``lambda = inf`` and for
        ``penalty=None``.
    penalty
        The relative penalty chosen; ``inf``: the mean effect of the perturbations with an
        embedding; ``None``: the mean effect of every measured perturbation (the embedding
        is not used).
    loo_errors
        Leave-one-perturbation-out squared error (summed over genes, mean over the
        perturbations with an embedding) of every candidate tried, ``{penalty: error}``.
    loo_standard_error
        Standard error of the lowest of those errors (over the perturbations).
    """

    names: list[str]
    centre: np.ndarray = field(repr=False)
    base: np.ndarray = field(repr=False)
    solve: np.ndarray = field(repr=False)
    penalty: float | None
    loo_errors: dict = field(repr=False)
    loo_standard_error: float = field(repr=False)

    @classmethod
    def fit(
        cls,
        names: list[str],
        embeddings: np.ndarray,
        effects: np.ndarray,
        penalties: tuple[float, ...] = RELATIVE_PENALTIES,
        *,
        other_names: list[str] = (),
        other_effects: np.ndarray | None = None,
    ) -> EmbeddingMap:
        """Fit on measured perturbations: ``embeddings`` ``(m, d)``, ``effects`` ``(m, g)``.

        ``other_names`` / ``other_effects`` ``(o, g)``: measured perturbations without an
        embedding; they enter only the mean of every measured perturbation.

        The candidates, from the simplest: the mean effect of every measured perturbation
        (only with ``other_names``), then a ridge fit with an unpenalised intercept for each
        penalty ``lambda = c * trace(E_c^T E_c) / d`` (``c`` in ``penalties``, largest
        first; ``inf`` is the mean effect of the perturbations with an embedding). Each is
        scored by its exact leave-one-out error over the perturbations with an embedding
        (for the ridge fits from the hat matrix ``1 1^T / m + E_c (E_c^T E_c + lambda I)^-1
        E_c^T``). The simplest candidate within one standard error of the lowest error wins
        (the one-standard-error rule of Hastie, Tibshirani & Friedman, *The Elements of
        Statistical Learning*, 7.10): with a few measured perturbations the leave-one-out
        error is noisy, and a map that is not clearly better than the mean would add that
        noise to every new perturbation. Needs at least one measured perturbation with an
        embedding; with fewer than three the ridge fits are skipped.
        """
        e = np.asarray(embeddings, dtype=np.float64)
        y = np.asarray(effects, dtype=np.float64)
        m, d = e.shape
        if m == 0:
            raise ValueError(
                "No measured perturbation has an embedding, so a perturbation that was never "
                "measured cannot be placed; the embedding's names must include perturbations "
                "of the training data."
            )
        others = np.zeros((0, y.shape[1])) if other_effects is None else other_effects
        others = np.asarray(others, dtype=np.float64).reshape(len(other_names), y.shape[1])
        n_all = m + len(others)
        centre = e.mean(axis=0)
        ec = e - centre
        gram = ec.T @ ec
        scale = float(np.trace(gram)) / d
        # candidate -> (per-perturbation leave-one-out errors, base weights, solve)
        candidates: dict = {}
        if len(others) and m > 1:
            total = y.sum(axis=0) + others.sum(axis=0)
            resid = y - (total - y) / (n_all - 1)
            base = np.full(n_all, 1.0 / n_all)
            candidates[None] = ((resid**2).sum(axis=1), base, np.zeros((d, n_all)))
        usable = m >= 3 and scale > 0
        for c in sorted(penalties, reverse=True):
            if np.isinf(c):
                solve = np.zeros((d, m))
            elif not usable:
                continue
            else:
                solve = np.linalg.solve(gram + c * scale * np.eye(d), ec.T)
            hat = np.full((m, m), 1.0 / m) + ec @ solve
            leverage = np.clip(1.0 - np.diag(hat), 1e-12, None)
            resid = (y - hat @ y) / leverage[:, None]
            errors = (resid**2).sum(axis=1) if m > 1 else np.zeros(m)
            base = np.r_[np.full(m, 1.0 / m), np.zeros(len(others))]
            padded = np.hstack([solve, np.zeros((d, len(others)))])
            candidates[float(c)] = (errors, base, padded)
        means = {c: float(err.mean()) for c, (err, _, _) in candidates.items()}
        lowest = min(means, key=means.get)
        spread = candidates[lowest][0]
        se = float(spread.std(ddof=1) / np.sqrt(m)) if m > 1 else 0.0
        chosen = next(c for c in candidates if means[c] <= means[lowest] + se)
        _, base, solve = candidates[chosen]
        return cls(list(names) + list(other_names), centre, base, solve, chosen, means, se)

    def weights(self, vectors: np.ndarray) -> np.ndarray:
        """Weights over :attr:`names` of new perturbations ``(t, d)``: ``(t, n)``, rows sum 1."""
        v = np.atleast_2d(np.asarray(vectors, dtype=np.float64)) - self.centre
        return self.base[None, :] + v @ self.solve


def fit_embedding_map(
    embedding: PerturbationEmbedding, vocabulary: list[str], effects: np.ndarray
) -> EmbeddingMap:
    """:meth:`EmbeddingMap.fit` on the perturbations of ``vocabulary``.

    ``effects``: the per-gene effect of every perturbation of ``vocabulary``, ``(K, g)``
    (e.g. :func:`pdae_sc.data._least_squares.linear_effects`). Those that ``embedding``
    has are regressed on their vectors; the others enter the mean of every measured
    perturbation.
    """
    effects = np.asarray(effects)
    measured = [p for p in vocabulary if p in embedding]
    others = [p for p in vocabulary if p not in embedding]
    return EmbeddingMap.fit(
        measured,
        embedding.rows(measured),
        effects[[vocabulary.index(p) for p in measured]],
        other_names=others,
        other_effects=effects[[vocabulary.index(p) for p in others]],
    )


def embedding_label_rows(
    parsed: list[dict[str, float]],
    vocabulary: list[str],
    embedding: PerturbationEmbedding,
    embedding_map: EmbeddingMap,
) -> tuple[np.ndarray, list[list[str]]]:
    """Label vectors over ``vocabulary`` of targets that may hold never-measured perturbations.

    A known perturbation at dose ``d`` adds ``d`` to its own column; one that is not in
    ``vocabulary`` but in ``embedding`` adds ``d`` times its :meth:`EmbeddingMap.weights`
    over the measured perturbations. Returns the ``(n_targets, K)`` rows and, per target,
    the perturbations placed by the embedding (empty for the others). A name in neither
    raises ``KeyError``.
    """
    index = {p: k for k, p in enumerate(vocabulary)}
    columns = [index[p] for p in embedding_map.names]
    rows = np.zeros((len(parsed), len(vocabulary)))
    placed: list[list[str]] = []
    for t, label in enumerate(parsed):
        new = []
        for token, dose in label.items():
            if token in index:
                rows[t, index[token]] += dose
            elif token in embedding:
                rows[t, columns] += dose * embedding_map.weights(embedding.rows([token]))[0]
                new.append(token)
            else:
                raise KeyError(
                    f"Perturbation {token!r} was never measured and has no row in the "
                    f"perturbation embedding ({embedding.source}); give it a vector in the "
                    "table passed as setup_anndata(perturbation_embedding=...), or predict "
                    f"only known perturbations ({len(vocabulary)}, e.g. {vocabulary[:5]})."
                )
        placed.append(new)
    return rows, placed
