"""How strongly each measured group differs from its control cells, and picks spread over it.

Held-out conditions chosen at random from a screen are often all weak effects (most
knockouts change little), where returning the control cells is hard to beat and every
method looks alike. Both places that hold measured conditions out (``train``'s held-out
conditions and ``tl.cross_validate``'s folds) rank the candidates by :func:`mean_shifts`
and take them evenly spaced along that ranking (:func:`spread_over_effects`), so strong and
weak effects are both represented.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._sampler import group_sums

__all__ = ["mean_shifts", "rank_by_effect", "spread_over_effects"]


def mean_shifts(
    matrix,
    codes: np.ndarray,
    ctx_codes: np.ndarray,
    is_ctrl_cell: np.ndarray,
    groups: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Squared distance between each group's mean and its context's control-cell mean.

    The squared distance between two sample means is inflated by their sampling noise
    (the summed gene variances over the group size, and over the number of control cells),
    which would rank small groups as strong effects; that expected part is subtracted, so
    the value estimates the squared distance between the true means without bias (it can
    be slightly negative for a group without effect).

    Parameters
    ----------
    matrix
        Expression of the cells, ``(n_cells, n_genes)`` (dense, sparse or backed).
    codes, ctx_codes
        Condition code and context code of each cell.
    is_ctrl_cell
        Whether each cell is a control cell.
    groups
        ``(condition code, context code)`` pairs.

    Returns
    -------
    One value per group; NaN where the group's context has no control cells.
    """
    out = np.full(len(groups), np.nan)
    if not len(groups):
        return out
    n_ctx = int(ctx_codes.max()) + 1
    n_u = len(groups)
    # group of each cell: its group (0..n_u-1), its context's control cells (n_u + context),
    # or none (-1)
    group_of = {(int(c), int(k)): i for i, (c, k) in enumerate(groups)}
    row = np.array(
        [group_of.get((int(c), int(k)), -1) for c, k in zip(codes, ctx_codes, strict=True)]
    )
    row[is_ctrl_cell] = n_u + ctx_codes[is_ctrl_cell]
    sums, sizes = group_sums(matrix, row, n_u + n_ctx)
    squares, _ = group_sums(matrix, row, n_u + n_ctx, transform=np.square)
    means = sums / np.maximum(sizes, 1)[:, None]
    # summed gene variance of the mean of each group (0 for a group of one cell)
    spread = (squares.sum(1) - sizes * (means**2).sum(1)) / np.maximum(sizes - 1, 1)
    noise = np.where(sizes > 1, spread / np.maximum(sizes, 1), 0.0)
    ctrl = n_u + np.array([k for _, k in groups], dtype=np.int64)
    have = sizes[ctrl] > 0
    own = np.flatnonzero(have)
    distance = ((means[own] - means[ctrl[have]]) ** 2).sum(1)
    out[have] = distance - noise[own] - noise[ctrl[have]]
    return out


def rank_by_effect(effects: np.ndarray) -> np.ndarray:
    """Positions of the items, strongest effect first (NaN last, ties in their order)."""
    effects = np.asarray(effects, dtype=float)
    return np.argsort(-np.nan_to_num(effects, nan=-1.0), kind="stable")


def spread_over_effects(effects: np.ndarray, want: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``want`` items evenly spaced along the ranking by effect.

    The items are ranked by :func:`rank_by_effect`; the picks are every
    ``len(effects) / want``-th item from a random offset, strongest first. Returns all of
    them, ranked, when ``want`` is at least their number; draws from ``rng`` only when
    ``want`` and the items are not zero.
    """
    ranked = rank_by_effect(effects)
    want = min(len(ranked), int(want))
    if want <= 0:
        return ranked[:0]
    step = len(ranked) / want
    return ranked[(rng.uniform(0, step) + step * np.arange(want)).astype(int)]
