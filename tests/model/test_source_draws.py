"""Which source cells a prediction moves: distinct cells, stratified by condition."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pdae_sc as pdae
from pdae_sc.model._noise import draw_sources, stratified_counts


def test_one_group_is_the_plain_draw_to_the_bit():
    src = np.arange(100, 180)
    for n in (10, 80, 250):
        plain = draw_sources(src, n, np.random.default_rng(3))
        grouped = draw_sources(src, n, np.random.default_rng(3), np.zeros(80, dtype=int))
        np.testing.assert_array_equal(plain, grouped)


@pytest.mark.parametrize("n", [1, 7, 33, 100, 150])
def test_each_condition_gets_its_share_of_distinct_cells(n):
    rng = np.random.default_rng(0)
    sizes = np.array([50, 30, 15, 5])
    groups = np.repeat(np.arange(4), sizes)
    src = rng.permutation(1000)[: sizes.sum()]
    picks = draw_sources(src, n, np.random.default_rng(n), groups)
    assert len(picks) == n
    assert len(np.unique(picks)) == min(n, len(src))
    assert np.isin(picks, src).all()
    if n <= len(src):
        group_of = dict(zip(src.tolist(), groups.tolist(), strict=True))
        per_group = np.bincount([group_of[p] for p in picks.tolist()], minlength=4)
        np.testing.assert_array_less(np.abs(per_group - n * sizes / sizes.sum()), 1.0 + 1e-9)


def test_stratified_counts_add_up_and_break_ties_at_random():
    sizes = np.array([10, 10, 10])
    seen = set()
    for seed in range(20):
        counts = stratified_counts(sizes, 4, np.random.default_rng(seed))
        assert counts.sum() == 4
        assert counts.max() == 2
        assert counts.min() == 1
        seen.add(int(np.argmax(counts)))
    assert seen == {0, 1, 2}


def test_a_prediction_from_every_cell_moves_each_condition_in_proportion():
    adata = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=40, seed=0)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,), n_noise=2)
    model.train(max_epochs=1, enable_progress_bar=False, held_out_conditions=0)
    n_conditions = adata.obs["perturbation"].nunique()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = model.predict(["P0+P1"], n_cells=3 * n_conditions, source="all", seed=0)
    counts = pred.obs["pdae_source"].value_counts()
    assert len(counts) == n_conditions
    assert (counts == 3).all()
    assert pred.obs["pdae_source_cell"].is_unique
