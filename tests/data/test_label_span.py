"""The factorised span check and the label tolerance against their dense definitions.

``LabelSpan`` factorises the training label matrix by blocks of perturbations linked by
combinations; these tests compare it, on many random small label matrices (binary, dose
valued, rank deficient, with duplicate and zero rows, unused perturbations, several
contexts stacked), with the dense definition that pdae-sc used before: one SVD of the whole
matrix, the rank cut of ``numpy.linalg.matrix_rank`` and the residual of the projection.

Float tolerance: the two computations differ only by round-off, of order ``eps * ||l||``
(about 1e-15 here), while the span test compares the distance with ``1e-6 * max(1, ||l||)``
and every target is built either exactly in the span (distance ~1e-15) or with a component
of at least 0.1 outside it. So ``in_span`` must agree exactly and the distances to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pdae_sc.data._labels import LABEL_TOL, as_label_rows, match_labels
from pdae_sc.data._span import LabelSpan, training_span
from pdae_sc.tl import extrapolation_table


def dense_reference(train: np.ndarray, targets: np.ndarray, rtol: float = 1e-6):
    """The span, range and seen checks as pdae-sc computed them before (dense SVD)."""
    if train.size:
        _, s, vt = np.linalg.svd(train, full_matrices=False)
        tol = s.max(initial=0.0) * max(train.shape) * np.finfo(np.float64).eps
        basis = vt[s > tol]
    else:
        basis = np.zeros((0, train.shape[1]))
    residual = targets - (targets @ basis.T) @ basis
    distance = np.linalg.norm(residual, axis=1)
    in_span = distance <= rtol * np.maximum(1.0, np.linalg.norm(targets, axis=1))
    lo = np.minimum(train.min(axis=0, initial=0.0), 0.0)
    hi = np.maximum(train.max(axis=0, initial=0.0), 0.0)
    slack = rtol * np.maximum(1.0, np.abs(hi - lo))
    in_range = np.all((targets >= lo - slack) & (targets <= hi + slack), axis=1)
    return in_span, distance, in_range, basis.shape[0]


def dense_match(targets: np.ndarray, rows: np.ndarray, tol: float = LABEL_TOL) -> np.ndarray:
    """Dense definition of "the same label vector", ``(n_targets, n_rows)``."""
    a, b = targets[:, None, :], rows[None, :, :]
    scale = np.maximum(np.abs(a), np.abs(b))  # relative: any nonzero dose differs from 0
    return np.all(np.abs(a - b) <= tol * scale, axis=2)


def random_case(rng: np.random.Generator, doses: bool):
    """A random training label matrix and targets in and out of its span."""
    k = int(rng.integers(1, 9))
    n = int(rng.integers(0, 12))
    density = rng.uniform(0.1, 0.6)
    train = (rng.random((n, k)) < density).astype(float)
    if doses:
        train *= rng.choice([0.1, 0.25, 0.5, 1.0, 2.0, 10.0, -1.0], size=(n, k))
    if n and rng.random() < 0.3:  # duplicate rows and the control
        train = np.vstack([train, train[: int(rng.integers(1, n + 1))], np.zeros((1, k))])
    if n and rng.random() < 0.3:  # a dependent row: the sum of two others
        i, j = rng.integers(0, len(train), size=2)
        train = np.vstack([train, train[i] + train[j]])
    train = train.reshape(-1, k)
    # in the span: integer and dose combinations of the training rows
    m = 6
    coef = rng.choice([0.0, 1.0, -1.0, 0.5, 3.0], size=(m, len(train)))
    inside = coef @ train if len(train) else np.zeros((m, k))
    # off the span (or not, when the span is everything): random vectors and unit vectors
    outside = np.vstack([rng.choice([0.0, 1.0, 0.5, -2.0], size=(4, k)), np.eye(k)])
    seen = train[: min(3, len(train))]
    return train, np.vstack([inside, outside, seen, np.zeros((1, k))])


@pytest.mark.parametrize("doses", [False, True], ids=["binary", "doses"])
def test_span_matches_dense_definition(doses):
    rng = np.random.default_rng(1 if doses else 0)
    n_inside = n_outside = 0
    for _ in range(300):
        train, targets = random_case(rng, doses)
        ref_span, ref_dist, ref_range, ref_rank = dense_reference(train, targets)
        for labels in (train, sp.csr_matrix(train)):
            table = extrapolation_table(labels, targets)
            np.testing.assert_array_equal(table["in_span"].to_numpy(), ref_span)
            np.testing.assert_allclose(table["span_distance"], ref_dist, rtol=0, atol=1e-9)
            np.testing.assert_array_equal(table["in_range"].to_numpy(), ref_range & ref_span)
            assert (table["rank_train"] == ref_rank).all()
            assert LabelSpan(labels).rank == ref_rank == np.linalg.matrix_rank(train)
            seen = dense_match(targets, train).any(axis=1)
            np.testing.assert_array_equal(table["seen"].to_numpy(), seen)
        n_inside += int(ref_span.sum())
        n_outside += int((~ref_span).sum())
    # both answers are exercised
    assert n_inside > 500
    assert n_outside > 500


def test_span_of_blocks_linked_by_combinations():
    # A, B measured; C+D measured but neither alone; E only as E+A; F never
    names = ["A", "B", "C", "D", "E", "F"]
    train = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0],
            [0, 1, 0, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [1, 0, 0, 0, 1, 0],
        ],
        dtype=float,
    )
    targets = {
        "A+B": [1, 1, 0, 0, 0, 0],
        "E": [0, 0, 0, 0, 1, 0],  # E+A minus A
        "C": [0, 0, 1, 0, 0, 0],  # only C+D is identified
        "2C+2D": [0, 0, 2, 2, 0, 0],
        "F": [0, 0, 0, 0, 0, 1],
    }
    table = extrapolation_table(train, np.array(list(targets.values()), float), names=targets)
    assert table["in_span"].to_dict() == {
        "A+B": True,
        "E": True,
        "C": False,
        "2C+2D": True,
        "F": False,
    }
    assert table.loc["2C+2D", "status"] == "in span, out of range"
    assert table["rank_train"].iloc[0] == 4
    assert len(names) == train.shape[1]


def test_contexts_stack_the_labels_of_every_context():
    # two contexts measured different singles; the span is that of both
    ctx_a = np.array([[0, 0, 0], [1, 0, 0]], float)
    ctx_b = np.array([[0, 0, 0], [0, 1, 0]], float)
    train = np.vstack([ctx_a, ctx_b])
    targets = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], float)
    table = extrapolation_table(train, targets, context_train_labels=ctx_a)
    ref_span, *_ = dense_reference(train, targets)
    np.testing.assert_array_equal(table["in_span"].to_numpy(), ref_span)
    assert table["seen_in_context"].tolist() == [False, False, False]
    assert table["status"].tolist()[1] == "seen in another context"


def test_empty_training_matrix_has_empty_span():
    table = extrapolation_table(np.zeros((0, 3)), np.array([[0, 0, 0], [1, 0, 0.0]]))
    assert table["in_span"].tolist() == [True, False]
    assert table["rank_train"].tolist() == [0, 0]


def test_match_labels_tolerance_matches_dense_definition():
    rng = np.random.default_rng(2)
    for _ in range(200):
        k = int(rng.integers(1, 6))
        rows = rng.choice([0.0, 1.0, 0.5, 1000.0, 1e-7], size=(int(rng.integers(0, 8)), k))
        noise = rng.choice([0.0, 5e-7, 2e-6, 5e-4], size=(4, k)) * rng.choice([-1, 1], (4, k))
        picks = rows[rng.integers(0, len(rows), 4)] if len(rows) else np.zeros((4, k))
        targets = np.vstack([picks + noise, np.zeros((1, k))])
        got = match_labels(targets, rows).toarray()
        np.testing.assert_array_equal(got, dense_match(targets, rows))


def test_match_labels_is_relative_for_large_doses():
    rows = np.array([[1000.0, 0.0], [0.3, 0.0]])
    assert match_labels(np.array([1000.0005, 0.0]), rows).toarray().tolist() == [[True, False]]
    assert match_labels(np.array([1000.01, 0.0]), rows).toarray().tolist() == [[False, False]]
    assert match_labels(np.array([0.1 + 0.2, 0.0]), rows).toarray().tolist() == [[False, True]]
    assert match_labels(np.array([0.3, 2e-6]), rows).nnz == 0  # a dose beyond the tolerance


def test_as_label_rows_refuses_a_mismatched_width():
    with pytest.raises(ValueError, match="3 columns but 2"):
        as_label_rows(np.zeros((1, 3)), 2)


def test_training_span_is_factorised_once_per_matrix():
    labels = sp.csr_matrix(np.eye(3))
    assert training_span(labels) is training_span(labels)
    assert training_span(labels.copy()) is not training_span(labels)
