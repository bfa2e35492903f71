"""The linear model's effects: the control mean as intercept, or fitted ones with contexts."""

import numpy as np
import pandas as pd
from scipy import sparse

import pdae_sc as pdae
from pdae_sc.data._least_squares import linear_effects


def _cells(means: dict, context: str, n: int = 4):
    """``n`` identical one-gene cells per condition at the given means."""
    labels = [c for c in means for _ in range(n)]
    x = np.array([[means[c]] for c in labels])
    obs = pd.DataFrame({"perturbation": labels, "line": context})
    return x, obs


def test_the_intercept_is_the_measured_control_mean_not_a_fitted_one():
    # inconsistent with any additive model: ctrl 1, A 5 (+4), B 3 (+2), A+B 9 (+8)
    x = np.array([[0.0], [2.0], [5.0], [3.0], [9.0]])
    codes = np.array([0, 0, 1, 2, 3])
    labels = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    beta = linear_effects(x, codes, np.zeros(5, dtype=int), labels).ravel()
    # anchored: least squares of [4, 2, 8] on [[1, 0], [0, 1], [1, 1]]
    expected = np.linalg.lstsq(labels[1:], np.array([4.0, 2.0, 8.0]), rcond=None)[0]
    np.testing.assert_allclose(beta, expected)
    # a free intercept would fit the control row too, and give another answer
    free = np.linalg.lstsq(np.c_[np.ones(4), labels], np.array([1.0, 5, 3, 9]), rcond=None)[0]
    assert not np.allclose(free[1:], expected)


def test_with_several_contexts_each_gets_a_fitted_intercept():
    # L0 is not additive (A+B = 9, not 2 + 3); L1 has control cells and A; L2 has none
    x0, obs0 = _cells({"ctrl": 0.0, "A": 2.0, "B": 3.0, "A+B": 9.0}, context="L0")
    x1, obs1 = _cells({"ctrl": 10.0, "A": 12.0}, context="L1")
    x2, obs2 = _cells({"A": 102.0, "B": 104.0}, context="L2")
    x = np.vstack([x0, x1, x2])
    obs = pd.concat([obs0, obs1, obs2], ignore_index=True)
    enc = pdae.data.encode_conditions(obs["perturbation"], control_group="ctrl")
    assert enc.vocabulary == ["A", "B"]
    ctx = pd.Categorical(obs["line"]).codes.astype(np.int64)
    beta = linear_effects(x, enc.codes, ctx, enc.labels)[:, 0]
    # groups: (intercepts L0 L1 L2, A, B) -> mean
    design = np.array(
        [
            [1, 0, 0, 0, 0],
            [1, 0, 0, 1, 0],
            [1, 0, 0, 0, 1],
            [1, 0, 0, 1, 1],
            [0, 1, 0, 0, 0],
            [0, 1, 0, 1, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 1, 0, 1],
        ]
    )
    means = np.array([0.0, 2, 3, 9, 10, 12, 102, 104])
    np.testing.assert_allclose(beta, np.linalg.lstsq(design, means, rcond=None)[0][3:])
    # anchoring each context at its control mean would fit another beta
    anchored = np.linalg.lstsq(design[[1, 2, 3, 5], 3:], np.array([2.0, 3, 9, 2]), rcond=None)
    assert not np.allclose(beta, anchored[0], atol=0.05)
    sparse_beta = linear_effects(x, enc.codes, ctx, sparse.csr_matrix(enc.labels), dense_limit=0)
    np.testing.assert_allclose(sparse_beta[:, 0], beta, atol=1e-6)
