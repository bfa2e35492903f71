"""The per-condition batch sampler, the row gatherer and the data splitter."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from pdae_sc.data._sampler import ConditionBatchSampler, PerturbationDataSplitter, RowGatherer


def test_row_gatherer_dense_sparse_backed(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(10, 4)
    idx = np.array([7, 2, 2, 9, 0])
    for m in (x, sp.csr_matrix(x), sp.csc_matrix(x)):
        out = RowGatherer(m)(idx)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, x[idx])
    path = tmp_path / "a.h5ad"
    ad.AnnData(sp.csr_matrix(x)).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    np.testing.assert_array_equal(RowGatherer(backed.X)(idx), x[idx])
    backed.file.close()


def test_condition_sampler_layout():
    codes = np.repeat(np.arange(5), [50, 10, 10, 3, 10])
    contexts = np.zeros(len(codes), dtype=int)
    rng = np.random.default_rng(0)
    s = ConditionBatchSampler(
        codes, contexts, np.arange(len(codes)), n_conditions=3, n_cells=4, n_sources=20, rng=rng
    )
    for _ in range(20):
        anchors, conds, sources = s.sample()
        assert anchors.shape == (3, 4)
        assert conds.shape == (3,)
        assert len(sources) == 20
        assert len(set(conds)) == 3
        for row, c in zip(anchors, conds, strict=True):
            assert (codes[row] == c).all()
        assert not set(sources) & set(anchors.ravel())


def test_condition_sampler_balances_conditions():
    codes = np.repeat([0, 1], [1000, 20])  # a large control and a rare perturbation
    s = ConditionBatchSampler(
        codes,
        np.zeros(1020, int),
        np.arange(1020),
        n_conditions=1,
        n_cells=2,
        n_sources=4,
        rng=np.random.default_rng(0),
    )
    drawn = [s.sample()[1][0] for _ in range(400)]
    assert 0.4 < np.mean(drawn) < 0.6


def test_condition_sampler_keeps_contexts_apart():
    codes = np.tile(np.repeat([0, 1], 10), 2)
    contexts = np.repeat([0, 1], 20)
    s = ConditionBatchSampler(
        codes,
        contexts,
        np.arange(40),
        n_conditions=2,
        n_cells=3,
        n_sources=5,
        rng=np.random.default_rng(1),
    )
    for _ in range(20):
        anchors, _, sources = s.sample()
        ctx = set(contexts[anchors.ravel()]) | set(contexts[sources])
        assert len(ctx) == 1


def test_splitter_batches_and_validation():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(4), 25)
    x = rng.normal(size=(100, 6)).astype(np.float32)
    labels = np.vstack([np.zeros(3), np.eye(3)])
    dm = PerturbationDataSplitter(
        x,
        codes,
        np.zeros(100, int),
        labels,
        validation_size=0.2,
        n_conditions_per_batch=2,
        n_cells_per_condition=3,
        n_sources=8,
        n_source_conditions=4,
    )
    assert dm.n_val == 20
    assert dm.n_train == 80
    assert not set(dm.train_idx) & set(dm.val_idx)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x_anchor"].shape == (2, 3, 6)
    assert batch["label_anchor"].shape == (2, 3)
    # 4 source blocks of 2 cells, each of one condition
    assert batch["x_source"].shape == (4, 2, 6)
    assert batch["label_source"].shape == (4, 2, 3)
    for block in batch["label_source"]:
        assert (block == block[0]).all()
    assert len(dm.train_dataloader()) == len(list(dm.train_dataloader()))
    v1 = [b["x_anchor"] for b in dm.val_dataloader()]
    v2 = [b["x_anchor"] for b in dm.val_dataloader()]
    assert all((a == b).all() for a, b in zip(v1, v2, strict=True))


def test_splitter_draws_one_mixed_source_block_when_asked():
    codes = np.repeat(np.arange(4), 25)
    dm = PerturbationDataSplitter(
        np.zeros((100, 6), np.float32),
        codes,
        np.zeros(100, int),
        np.vstack([np.zeros(3), np.eye(3)]),
        n_conditions_per_batch=2,
        n_cells_per_condition=3,
        n_sources=8,
        n_source_conditions=None,
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["x_source"].shape == (8, 6)
    assert batch["label_source"].shape == (8, 3)


def test_source_blocks_are_one_condition_each_and_never_anchors():
    codes = np.repeat(np.arange(5), [50, 10, 10, 3, 10])
    contexts = np.zeros(len(codes), dtype=int)
    s = ConditionBatchSampler(
        codes,
        contexts,
        np.arange(len(codes)),
        n_conditions=3,
        n_cells=4,
        n_sources=20,
        n_source_conditions=4,
        rng=np.random.default_rng(0),
    )
    seen = set()
    for _ in range(200):
        anchors, _, sources = s.sample()
        assert sources.shape == (4, 5)
        for block in sources:
            assert len(set(codes[block])) == 1
            seen.add(int(codes[block[0]]))
            # a condition with enough cells besides the anchors gives none of them
            free = np.setdiff1d(np.flatnonzero(codes == codes[block[0]]), anchors)
            if len(free) >= 2:
                assert not set(block) & set(anchors.ravel())
    assert seen == set(range(5))  # every condition, the small one too, serves as a source


def test_source_blocks_stay_in_the_context_and_use_the_source_rows():
    codes = np.tile(np.repeat([0, 1], 10), 2)
    contexts = np.repeat([0, 1], 20)
    train = np.flatnonzero(np.arange(40) % 4 != 0)  # the sources: training rows only
    s = ConditionBatchSampler(
        codes,
        contexts,
        np.arange(40),
        n_conditions=2,
        n_cells=2,
        n_sources=6,
        n_source_conditions=2,
        rng=np.random.default_rng(1),
        source_index=train,
        source_contexts=contexts[train],
        source_codes=codes[train],
    )
    for _ in range(50):
        anchors, _, sources = s.sample()
        assert len(set(contexts[anchors.ravel()]) | set(contexts[sources.ravel()])) == 1
        assert set(sources.ravel()) <= set(train)


def test_source_blocks_need_two_cells_each():
    with pytest.raises(ValueError, match="n_source_conditions"):
        ConditionBatchSampler(
            np.zeros(10, int),
            np.zeros(10, int),
            np.arange(10),
            n_conditions=1,
            n_cells=2,
            n_sources=6,
            n_source_conditions=4,
            rng=np.random.default_rng(0),
        )


def test_splitter_rejects_bad_validation_size():
    with pytest.raises(ValueError, match="validation_size"):
        PerturbationDataSplitter(
            np.zeros((4, 2)),
            np.zeros(4, int),
            np.zeros(4, int),
            np.zeros((1, 1)),
            validation_size=1.5,
        )
