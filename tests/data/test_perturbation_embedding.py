"""The perturbation embedding: checks of a user's table, the built-in PCA, the ridge map."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from pdae_sc.data._perturbation_embedding import (
    EmbeddingMap,
    PerturbationEmbedding,
    check_embedding_table,
    embedding_label_rows,
    expression_embedding,
)


def test_table_checks_name_the_problem_and_leave_the_input_alone():
    table = pd.DataFrame({"d0": [1.0, 2.0], "d1": [0.0, 1.0]}, index=["A", "B"])
    before = table.copy()
    out = check_embedding_table(table)
    pd.testing.assert_frame_equal(table, before)
    assert out.index.tolist() == ["A", "B"]
    assert out.shape == (2, 2)
    mapped = check_embedding_table({"A": [1.0, 0.0], "B": [2.0, 1.0]})
    np.testing.assert_array_equal(mapped.to_numpy(), [[1.0, 0.0], [2.0, 1.0]])
    with pytest.raises(TypeError, match=r"pandas\.DataFrame"):
        check_embedding_table(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="more than once"):
        check_embedding_table(pd.DataFrame({"d": [1.0, 2.0]}, index=["A", "A"]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_embedding_table(pd.DataFrame({"d": [1.0, np.nan]}, index=["A", "B"]))
    with pytest.raises(TypeError, match="not numeric"):
        check_embedding_table(pd.DataFrame({"d": ["x", "y"]}, index=["A", "B"]))
    with pytest.raises(ValueError, match="different lengths"):
        check_embedding_table({"A": [1.0], "B": [1.0, 2.0]})
    with pytest.raises(ValueError, match="empty"):
        check_embedding_table(pd.DataFrame(index=["A"]))
    with pytest.raises(TypeError, match="names"):
        check_embedding_table(pd.DataFrame({"d": [1.0]}, index=[3]))


def test_expression_embedding_is_the_pca_loadings_dense_or_sparse():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(300, 3)) * [3.0, 2.0, 1.0]
    axes = np.linalg.qr(rng.normal(size=(20, 3)))[0].T  # orthonormal rows
    x = scores @ axes + 0.05 * rng.normal(size=(300, 20)) + 5.0
    genes = [f"g{i}" for i in range(20)]
    dense = expression_embedding(x, genes, n_components=3)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = vt[:3].T * s[:3] / np.sqrt(299)
    assert dense.shape == (20, 3)
    assert dense.index.tolist() == genes
    np.testing.assert_allclose(np.abs(dense.to_numpy()), np.abs(expected), atol=1e-6)
    sparse_x = sparse.csr_matrix(np.where(x > 5.5, x, 0.0))
    from_sparse = expression_embedding(sparse_x, genes, n_components=3)
    reference = expression_embedding(sparse_x.toarray(), genes, n_components=3)
    np.testing.assert_allclose(from_sparse.to_numpy(), reference.to_numpy(), atol=1e-6)


def _effects(embeddings, rng, noise=0.0):
    m = rng.normal(size=(embeddings.shape[1], 30))
    return 1.0 + embeddings @ m + noise * rng.normal(size=(len(embeddings), 30))


def test_map_learns_effects_that_follow_the_embedding():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(13, 4))
    y = 1.0 + e @ rng.normal(size=(4, 30))  # effects linear in the embedding
    fitted = EmbeddingMap.fit([f"P{i}" for i in range(12)], e[:12], y[:12])
    assert np.isfinite(fitted.penalty)
    assert fitted.penalty <= 0.1
    w = fitted.weights(e[12:])
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    predicted = w @ y[:12]
    mean_only = y[:12].mean(axis=0)
    assert np.linalg.norm(predicted - y[12]) < 0.05 * np.linalg.norm(mean_only - y[12])


def test_map_falls_back_to_the_mean_effect_when_the_embedding_says_nothing():
    rng = np.random.default_rng(2)
    e = rng.normal(size=(10, 4))
    y = rng.normal(size=(10, 30)) + 2.0  # effects unrelated to the embedding
    fitted = EmbeddingMap.fit([f"P{i}" for i in range(10)], e, y)
    assert np.isinf(fitted.penalty)
    np.testing.assert_allclose(fitted.weights(rng.normal(size=(3, 4))), 0.1)


def test_map_uses_the_mean_of_every_measured_perturbation_unless_the_embedding_is_clearly_better():
    rng = np.random.default_rng(4)
    e = rng.normal(size=(6, 4))
    y = rng.normal(size=(6, 30)) + 2.0  # unrelated to the embedding
    others = rng.normal(size=(9, 30)) + 2.0  # measured, without an embedding
    names = [f"O{i}" for i in range(9)]
    measured = [f"P{i}" for i in range(6)]
    fitted = EmbeddingMap.fit(measured, e, y, other_names=names, other_effects=others)
    assert fitted.penalty is None
    assert fitted.names[6:] == names
    np.testing.assert_allclose(fitted.weights(rng.normal(size=(2, 4))), 1.0 / 15)
    # the same perturbations with effects that follow the embedding: the ridge fit is used
    y = 2.0 + e @ rng.normal(size=(4, 30))
    fitted = EmbeddingMap.fit(measured, e, y, other_names=names, other_effects=others)
    assert fitted.penalty is not None
    assert np.isfinite(fitted.penalty)
    np.testing.assert_allclose(fitted.weights(e[:1])[0, 6:], 0.0)


def test_map_takes_the_simplest_candidate_within_one_standard_error_of_the_best():
    rng = np.random.default_rng(5)
    e = rng.normal(size=(5, 3))
    y = _effects(e, rng, noise=3.0)  # a weak signal under noise, five perturbations
    fitted = EmbeddingMap.fit([f"P{i}" for i in range(5)], e, y)
    errors, se = fitted.loo_errors, fitted.loo_standard_error
    best = min(errors.values())
    assert se > 0
    assert errors[fitted.penalty] <= best + se
    simpler = [c for c in errors if c > fitted.penalty]  # larger penalties are simpler
    assert all(errors[c] > best + se for c in simpler)


def test_leave_one_out_error_equals_refitting_without_each_perturbation():
    rng = np.random.default_rng(3)
    e = rng.normal(size=(8, 3))
    y = _effects(e, rng, noise=0.5)
    fitted = EmbeddingMap.fit([f"P{i}" for i in range(8)], e, y, penalties=(1.0,))
    scale = np.trace((e - e.mean(0)).T @ (e - e.mean(0))) / 3
    brute = []
    for i in range(8):
        keep = np.arange(8) != i
        ek, yk = e[keep], y[keep]
        ec = ek - ek.mean(0)
        coef = np.linalg.solve(ec.T @ ec + scale * np.eye(3), ec.T @ (yk - yk.mean(0)))
        pred = yk.mean(0) + (e[i] - ek.mean(0)) @ coef
        brute.append(((y[i] - pred) ** 2).sum())
    # the penalty is fixed from all perturbations, as in the closed form
    assert fitted.loo_errors[1.0] == pytest.approx(np.mean(brute), rel=1e-8)


def test_map_needs_a_measured_perturbation_with_an_embedding():
    with pytest.raises(ValueError, match="No measured perturbation has an embedding"):
        EmbeddingMap.fit([], np.zeros((0, 3)), np.zeros((0, 5)))


def test_label_rows_place_new_perturbations_and_refuse_unknown_ones():
    emb = PerturbationEmbedding(["A", "B", "C", "N"], np.eye(4)[:, :3] + 0.1, "table")
    fitted = EmbeddingMap.fit(["A", "B", "C"], emb.rows(["A", "B", "C"]), np.eye(3))
    rows, placed = embedding_label_rows(
        [{"A": 1.0}, {"A": 1.0, "N": 2.0}], ["A", "B", "C", "X"], emb, fitted
    )
    np.testing.assert_allclose(rows[0], [1, 0, 0, 0])
    assert placed == [[], ["N"]]
    np.testing.assert_allclose(rows[1, :3].sum(), 1.0 + 2.0)  # the new one's weights sum to 1
    assert rows[1, 3] == 0.0  # X has no embedding: it takes no weight
    with pytest.raises(KeyError, match="never measured and has no row"):
        embedding_label_rows([{"Z": 1.0}], ["A", "B", "C", "X"], emb, fitted)
