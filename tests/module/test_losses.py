"""Each loss against a brute-force float64 numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdae_sc.module import (
    all_pairs_energy_score,
    energy_distance_to_normal,
    group_sparsity,
    grouped_energy_score,
    pairwise_distances,
    reconstruction_energy_score,
)


def _d(a, b, beta):
    return np.linalg.norm(a - b) ** beta


def _es_numpy(x, y, beta):
    """Unbiased energy score of the set y against each row of x, averaged over x."""
    n, m = len(x), len(y)
    cross = sum(_d(x[i], y[j], beta) for i in range(n) for j in range(m)) / (n * m)
    div = sum(_d(y[j], y[k], beta) for j in range(m) for k in range(m) if j != k) / (m * (m - 1))
    return cross - 0.5 * div


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("beta", [1.0, 0.5, 1.7])
def test_pairwise_distances(rng, beta):
    a, b = rng.normal(size=(2, 5, 7)), rng.normal(size=(2, 4, 7))
    got = pairwise_distances(torch.tensor(a), torch.tensor(b), beta).numpy()
    want = np.array(
        [[[_d(a[g, i], b[g, j], beta) for j in range(4)] for i in range(5)] for g in range(2)]
    )
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_pairwise_distances_gradient_finite_at_zero():
    a = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    pairwise_distances(a, a).sum().backward()
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("beta", [1.0, 1.5])
def test_grouped_energy_score(rng, beta):
    x, y = rng.normal(size=(3, 4, 6)), rng.normal(size=(3, 5, 6)) + 0.3
    got = grouped_energy_score(torch.tensor(x), torch.tensor(y), beta).item()
    want = np.mean([_es_numpy(x[g], y[g], beta) for g in range(3)])
    assert got == pytest.approx(want, rel=1e-10)


def test_grouped_energy_score_weights(rng):
    x, y = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 4))
    w = np.array([1.0, 3.0])
    got = grouped_energy_score(torch.tensor(x), torch.tensor(y), 1.0, torch.tensor(w)).item()
    per = [_es_numpy(x[g], y[g], 1.0) for g in range(2)]
    assert got == pytest.approx((per[0] + 3 * per[1]) / 4, rel=1e-10)


def test_all_pairs_energy_score(rng):
    b, p = 5, 3
    x, y = rng.normal(size=(b, p)), rng.normal(size=(b, b, p))
    got = all_pairs_energy_score(torch.tensor(x), torch.tensor(y)).item()
    want = np.mean([_es_numpy(x[i : i + 1], np.delete(y[i], i, axis=0), 1.0) for i in range(b)])
    assert got == pytest.approx(want, rel=1e-10)


def test_reconstruction_energy_score(rng):
    x, a, b = (rng.normal(size=(6, 5)) for _ in range(3))
    got = reconstruction_energy_score(*(torch.tensor(v) for v in (x, a, b))).item()
    want = np.mean(
        [0.5 * (_d(x[i], a[i], 1) + _d(x[i], b[i], 1)) - 0.5 * _d(a[i], b[i], 1) for i in range(6)]
    )
    assert got == pytest.approx(want, rel=1e-10)


def test_energy_distance_to_normal(rng):
    z, n = rng.normal(size=(6, 3)) + 1.0, rng.normal(size=(5, 3))
    got = energy_distance_to_normal(torch.tensor(z), torch.tensor(n)).item()
    cross = np.mean([[_d(a, b, 1) for b in n] for a in z])
    zz = sum(_d(z[i], z[j], 1) for i in range(6) for j in range(6) if i != j) / 30
    nn = sum(_d(n[i], n[j], 1) for i in range(5) for j in range(5) if i != j) / 20
    assert got == pytest.approx(2 * cross - zz - nn, rel=1e-10)


def test_group_sparsity(rng):
    w = rng.normal(size=(4, 3))
    assert group_sparsity(torch.tensor(w)).item() == pytest.approx(
        np.linalg.norm(w, axis=1).sum(), rel=1e-10
    )


def test_energy_score_is_proper():
    """The score of the true distribution is lower than that of a shifted one."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 400, 5, generator=g)
    same = torch.randn(1, 400, 5, generator=g)
    shifted = same + 0.5
    wider = same * 2.0
    assert grouped_energy_score(x, same) < grouped_energy_score(x, shifted)
    assert grouped_energy_score(x, same) < grouped_energy_score(x, wider)


def test_too_few_predictions():
    with pytest.raises(ValueError, match="at least 2"):
        grouped_energy_score(torch.zeros(1, 2, 3), torch.zeros(1, 1, 3))
