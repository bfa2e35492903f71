"""Energy-score losses of the PDAE, as short pure functions on tensors.

All distances are Euclidean and raised to the power ``beta`` (``0 < beta < 2`` keeps the
energy score strictly proper; ``beta = 1`` is the default). Within-sample ("diversity")
terms are U-statistics: self-pairs are excluded and the sum is divided by ``m (m - 1)``.
"""

from __future__ import annotations

import torch

__all__ = [
    "all_pairs_energy_score",
    "energy_distance_to_normal",
    "group_sparsity",
    "grouped_energy_score",
    "pairwise_distances",
    "reconstruction_energy_score",
]

_EPS = 1e-12


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Batched ``||a_i - b_j||^beta`` by the matmul expansion, clamped for a safe gradient.

    Parameters
    ----------
    a
        Points, shape ``(..., n, p)``.
    b
        Points, shape ``(..., m, p)``.
    beta
        Exponent of the distance.

    Returns
    -------
    Distances, shape ``(..., n, m)``. The squared distance is clamped at ``1e-12`` before the
    root, so coincident points give a finite (zero) gradient. Computed in at least float32,
    also under mixed-precision autocast (which is switched off here: the expansion
    ``|a|^2 + |b|^2 - 2 a.b`` cancels catastrophically in half precision).

    Examples
    --------
    >>> import torch
    >>> import pdae_sc as pdae
    >>> a = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    >>> d = pdae.module.pairwise_distances(a, a)
    >>> d.shape
    torch.Size([2, 2])
    >>> round(float(d[0, 1]), 3), round(float(d[0, 0]), 3)
    (5.0, 0.0)
    >>> round(float(pdae.module.pairwise_distances(a, a, beta=1.5)[0, 1]), 3)
    11.18

    Leading dimensions are batch dimensions:

    >>> gen = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(3, 4, 2, generator=gen), torch.randn(3, 5, 2, generator=gen)
    >>> pdae.module.pairwise_distances(x, y).shape
    torch.Size([3, 4, 5])
    """
    with torch.autocast(a.device.type, enabled=False):
        same = b is a
        a = _at_least_float32(a)
        b = a if same else _at_least_float32(b)
        a2 = _sq_norms(a)
        return _distances(a, a2, b, a2 if same else _sq_norms(b), beta)


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _sq_norms(a: torch.Tensor) -> torch.Tensor:
    return a.pow(2).sum(-1)


class _Gram(torch.autograd.Function):
    """``a @ a^T`` with a one-matmul backward, ``(g + g^T) @ a`` (autograd would use two)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a)
        return a @ a.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (a,) = ctx.saved_tensors
        with torch.autocast(a.device.type, enabled=False):  # float32, like the forward
            return (grad + grad.transpose(-1, -2)) @ a


def _distances(
    a: torch.Tensor, a2: torch.Tensor, b: torch.Tensor, b2: torch.Tensor, beta: float
) -> torch.Tensor:
    """``||a_i - b_j||^beta`` from the points and their squared norms ``a2``, ``b2``."""
    prod = _Gram.apply(a) if b is a else a @ b.transpose(-1, -2)
    sq = (a2.unsqueeze(-1) + b2.unsqueeze(-2) - 2.0 * prod).clamp_min(_EPS)
    return sq.sqrt() if beta == 1.0 else sq.pow(beta / 2.0)


def _mean_offdiagonal(d: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of ``(..., m, m)``: ``sum_{j != k} d_jk / (m (m-1))``."""
    m = d.shape[-1]
    off = d.sum((-1, -2)) - torch.diagonal(d, dim1=-2, dim2=-1).sum(-1)
    return off / (m * (m - 1))


def grouped_energy_score(
    x: torch.Tensor, y: torch.Tensor, beta: float = 1.0, weights: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Energy score of predicted sets against observed cells, grouped by condition.

    For group ``g`` with observed cells ``x_{g,1..n}`` and predicted cells ``y_{g,1..m}``

    .. math::
        ES_g = \frac{1}{n m}\sum_{i,j} \lVert x_{gi} - y_{gj}\rVert^\beta
             - \frac{1}{2 m (m-1)} \sum_{j \ne k} \lVert y_{gj} - y_{gk}\rVert^\beta ,

    the unbiased estimate of ``E ES(P̂_g, x)`` over the observed cells of the group. Groups
    are averaged with equal weight (or ``weights``), so a condition's contribution does not
    depend on its number of cells.

    Parameters
    ----------
    x
        Observed cells, shape ``(G, n, p)``.
    y
        Predicted cells, shape ``(G, m, p)``, ``m >= 2``.
    beta
        Exponent of the distance, ``0 < beta < 2``.
    weights
        Optional group weights, shape ``(G,)``; normalised to sum to one.

    Returns
    -------
    Scalar loss.

    Examples
    --------
    Predicted sets drawn from the law of the observed cells score lower than shifted ones:

    >>> import torch
    >>> import pdae_sc as pdae
    >>> gen = torch.Generator().manual_seed(0)
    >>> x = torch.randn(4, 64, 3, generator=gen)  # 4 conditions x 64 observed cells
    >>> y = torch.randn(4, 64, 3, generator=gen)  # 64 predicted cells per condition
    >>> matching = pdae.module.grouped_energy_score(x, y)
    >>> shifted = pdae.module.grouped_energy_score(x, y + 2.0)
    >>> matching.shape
    torch.Size([])
    >>> bool(matching < shifted)
    True
    """
    if y.shape[-2] < 2:
        raise ValueError("grouped_energy_score needs at least 2 predicted cells per group.")
    with torch.autocast(y.device.type, enabled=False):  # distances in float32 (see above)
        x, y = _at_least_float32(x), _at_least_float32(y)
        y2 = _sq_norms(y)  # once for both terms
        cross = _distances(x, _sq_norms(x), y, y2, beta).mean((-1, -2))
        diversity = _mean_offdiagonal(_distances(y, y2, y, y2, beta))
    per_group = cross - 0.5 * diversity
    if weights is None:
        return per_group.mean()
    return (per_group * weights).sum() / weights.sum()


def all_pairs_energy_score(x: torch.Tensor, y: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    r"""The authors' all-pairs energy score: each cell against every other cell moved to it.

    Cell ``i`` of a batch of ``B`` is scored against the set ``{y_{ij} : j != i}`` of the other
    cells moved to its label,

    .. math::
        ES_i = \frac{1}{B-1}\sum_{j\ne i}\lVert x_i - y_{ij}\rVert^\beta
             - \frac{1}{2(B-1)(B-2)}\sum_{j\ne k;\, j,k\ne i}\lVert y_{ij}-y_{ik}\rVert^\beta ,

    averaged over ``i``. Costs ``B^2`` decodes and ``B^3`` distances.

    Parameters
    ----------
    x
        Observed cells, shape ``(B, p)``.
    y
        ``y[i, j]`` = cell ``j`` moved to the label of cell ``i``, shape ``(B, B, p)``; the
        diagonal is ignored.
    beta
        Exponent of the distance.

    Returns
    -------
    Scalar loss.

    Examples
    --------
    With a single condition, moving cell ``j`` to the label of cell ``i`` should give back a
    cell like the observed ones; a biased prediction scores worse:

    >>> import torch
    >>> import pdae_sc as pdae
    >>> gen = torch.Generator().manual_seed(0)
    >>> x = torch.randn(32, 3, generator=gen)
    >>> y = torch.randn(32, 32, 3, generator=gen)  # y[i, j]: cell j moved to cell i's label
    >>> matching = pdae.module.all_pairs_energy_score(x, y)
    >>> shifted = pdae.module.all_pairs_energy_score(x, y + 2.0)
    >>> bool(matching < shifted)
    True
    """
    b = x.shape[0]
    if b < 3:
        raise ValueError("all_pairs_energy_score needs a batch of at least 3 cells.")
    # Drop the diagonal without a boolean mask (static shapes, friendly to torch.compile):
    # in the flattened (B*B) rows the diagonal sits every B+1 rows from row 0.
    p = y.shape[-1]
    y_off = y.reshape(b * b, p)[1:].reshape(b - 1, b + 1, p)[:, :b].reshape(b, b - 1, p)
    return grouped_energy_score(x.unsqueeze(1), y_off, beta)


def reconstruction_energy_score(
    x: torch.Tensor, x_hat: torch.Tensor, x_hat2: torch.Tensor, beta: float = 1.0
) -> torch.Tensor:
    r"""Two-sample energy score of a cell against two independent decodes of its latent.

    .. math:: \tfrac12(\lVert x-\hat x\rVert^\beta + \lVert x-\hat x'\rVert^\beta)
              - \tfrac12\lVert \hat x-\hat x'\rVert^\beta

    Parameters
    ----------
    x, x_hat, x_hat2
        Observed cells and two decodes, each of shape ``(n, p)``.
    beta
        Exponent of the distance.

    Returns
    -------
    Scalar mean over cells.

    Examples
    --------
    Decodes scattered around the observed cells score lower than biased ones:

    >>> import torch
    >>> import pdae_sc as pdae
    >>> gen = torch.Generator().manual_seed(0)
    >>> x = torch.randn(256, 5, generator=gen)
    >>> x_hat = x + 0.1 * torch.randn(256, 5, generator=gen)
    >>> x_hat2 = x + 0.1 * torch.randn(256, 5, generator=gen)
    >>> good = pdae.module.reconstruction_energy_score(x, x_hat, x_hat2)
    >>> biased = pdae.module.reconstruction_energy_score(x, x_hat + 1.0, x_hat2 + 1.0)
    >>> bool(good < biased)
    True
    """

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        diff = a - b
        if diff.dtype in (torch.float16, torch.bfloat16):
            diff = diff.float()
        return diff.pow(2).sum(-1).clamp_min(_EPS).pow(beta / 2.0)

    return (0.5 * (dist(x, x_hat) + dist(x, x_hat2)) - 0.5 * dist(x_hat, x_hat2)).mean()


def energy_distance_to_normal(
    z: torch.Tensor, noise: torch.Tensor, beta: float = 1.0
) -> torch.Tensor:
    r"""Energy distance between latents and draws from the fixed basal law (e.g. N(0, I)).

    .. math:: 2E\lVert Z-N\rVert^\beta - E\lVert Z-Z'\rVert^\beta - E\lVert N-N'\rVert^\beta

    with U-statistics for the within-sample terms.

    Parameters
    ----------
    z
        Latents, shape ``(n, d)``.
    noise
        Reference draws, shape ``(m, d)``.
    beta
        Exponent of the distance.

    Returns
    -------
    Scalar.

    Examples
    --------
    Latents that follow ``N(0, I)`` are close to it; shifted latents are not:

    >>> import torch
    >>> import pdae_sc as pdae
    >>> gen = torch.Generator().manual_seed(0)
    >>> noise = torch.randn(256, 4, generator=gen)
    >>> z = torch.randn(256, 4, generator=gen)
    >>> near = pdae.module.energy_distance_to_normal(z, noise)
    >>> far = pdae.module.energy_distance_to_normal(z + 2.0, noise)
    >>> round(float(near), 1), bool(far > 1.0)
    (0.0, True)
    """
    cross = pairwise_distances(z, noise, beta).mean()
    return (
        2.0 * cross
        - _mean_offdiagonal(pairwise_distances(z, z, beta))
        - _mean_offdiagonal(pairwise_distances(noise, noise, beta))
    )


def group_sparsity(w: torch.Tensor) -> torch.Tensor:
    """Sum over latent dimensions of the L2 norm of the shift matrix's row.

    Parameters
    ----------
    w
        Shift matrix, shape ``(n_latent, n_perturbations)``.

    Returns
    -------
    Scalar ``sum_r ||W[r, :]||_2``.

    Examples
    --------
    A latent dimension that no perturbation uses (an all-zero row) costs nothing:

    >>> import torch
    >>> import pdae_sc as pdae
    >>> w = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    >>> round(float(pdae.module.group_sparsity(w)), 3)
    7.0
    """
    return w.pow(2).sum(1).clamp_min(_EPS).sqrt().sum()
