"""Measured conditions held out of training decide between PDAE and a simple baseline."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import pdae_sc as pdae
from pdae_sc.model import PDAE, BaselineFavouredWarning
from pdae_sc.model._selection import SIMPLE_METHODS, choose_method, pick_held_out

TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}
TRAIN = {"enable_progress_bar": False, "n_sources": 16, "accelerator": "cpu"}


def _adata(n_cells=50):
    """ctrl, 4 singles and their 6 doubles; one double held out of the data."""
    adata = pdae.data.simulate(
        n_perturbations=4, n_genes=15, n_cells_per_condition=n_cells, seed=0
    )
    adata = adata[adata.obs["perturbation"] != "P0+P1"].copy()
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    return adata


def test_pick_held_out_takes_combinations_that_stay_in_the_span():
    # ctrl, singles A, B, C, doubles A+B, A+C, B+C: every double stays in the span
    rows = sp.csr_matrix(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]],
        dtype=np.float32,
    )
    codes = np.repeat(np.arange(7), 50)
    held = pick_held_out(rows, codes, np.zeros_like(codes), 2, np.random.default_rng(0))
    assert len(held) == 2
    assert all(c >= 4 for c, _ in held)  # doubles first
    # singles only, one context: removing one leaves its perturbation unmeasured
    single = sp.csr_matrix(np.vstack([np.zeros(3), np.eye(3)]), dtype=np.float32)
    codes = np.repeat(np.arange(4), 50)
    assert (
        pick_held_out(single, codes, np.zeros_like(codes), "auto", np.random.default_rng(0)) == []
    )
    # a single measured in two contexts can be held out in one of them, never in both
    codes = np.repeat(np.arange(4), 100)
    contexts = np.tile([0, 1], 200)
    held = pick_held_out(single, codes, contexts, 3, np.random.default_rng(0))
    assert len(held) == 3
    assert sorted(c for c, _ in held) == [1, 2, 3]
    # too few cells: not a candidate
    codes = np.repeat(np.arange(7), 40)
    assert pick_held_out(rows, codes, np.zeros_like(codes), 2, np.random.default_rng(0)) == []


def test_choose_method_keeps_pdae_on_a_tie_and_takes_a_clearly_better_baseline():
    import pandas as pd

    scores = pd.DataFrame({"pdae": [0.1, 0.3], **{m: [0.2, 0.2] for m in SIMPLE_METHODS}})
    assert choose_method(scores) == "pdae"  # 0.2 each: a tie
    scores["linear"] = [0.05, 0.1]
    assert choose_method(scores) == "linear"  # lower on both: 0.125 ahead, se 0.075
    scores["pooled"] = [0.04, 0.09]
    assert choose_method(scores) == "pooled"  # the lowest of the baselines
    scores["linear"] = scores["pooled"] = [0.15, 0.1]
    assert choose_method(scores) == "pdae"  # 0.075 ahead on the mean, but se 0.125
    assert choose_method(scores.iloc[:0]) == "pdae"


def test_held_out_conditions_are_spread_over_the_range_of_effects():
    # ctrl and 8 singles measured in two contexts; single i shifts every gene by i
    n_genes, per_group = 5, 50
    single = sp.csr_matrix(np.vstack([np.zeros(8), np.eye(8)]), dtype=np.float32)
    codes = np.repeat(np.arange(9), 2 * per_group)
    contexts = np.tile(np.repeat([0, 1], per_group), 9)
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(len(codes), n_genes)) * 0.01 + codes[:, None].astype(float)
    for seed in range(5):
        held = pick_held_out(
            single, codes, contexts, 4, np.random.default_rng(seed), matrix=matrix
        )
        strength = sorted(c for c, _ in held)
        # one from each quarter of the ranking: strong and weak effects both held out
        assert len(held) == 4
        assert [(c - 1) // 2 for c in strength] == [0, 1, 2, 3], strength
    # the effect sizes: squared shift of the mean from the context's control cells
    from pdae_sc.data._effects import mean_shifts

    is_ctrl = codes == 0
    shifts = mean_shifts(matrix, codes, contexts, is_ctrl, [(3, 0), (8, 1)])
    np.testing.assert_allclose(shifts, [9 * n_genes, 64 * n_genes], rtol=1e-3)


def test_held_out_cells_are_not_trained_on_and_a_better_baseline_is_used():
    adata = _adata()
    model = PDAE(adata, **TINY)
    with pytest.warns(BaselineFavouredWarning, match="predict\\(\\.\\.\\., method='pdae'\\)"):
        model.train(max_epochs=1, lr=1e-5, **TRAIN)  # an untrained network loses
    held = [c for c, _ in model.held_out_conditions_]
    assert len(held) >= 2
    assert all("+" in c for c in held)
    held_cells = np.flatnonzero(adata.obs["perturbation"].isin(held).to_numpy())
    assert not set(held_cells) & set(model.train_indices)
    assert set(held_cells) <= set(model.validation_indices)
    scores = model.held_out_scores_
    assert sorted(scores["condition"]) == sorted(held)
    chosen = model.prediction_method_
    assert chosen in SIMPLE_METHODS
    assert scores[chosen].mean() < scores["pdae"].mean()
    # predict uses the chosen baseline, fitted on every registered cell
    pred = model.predict(["P0+P1"], n_cells=25, seed=3)
    expected = pdae.tl.predict_baseline(adata, ["P0+P1"], method=chosen, n_cells=25, seed=3)
    np.testing.assert_allclose(pred.X, expected.X)
    assert pred.uns["pdae"]["method"] == chosen
    assert list(pred.uns["pdae"]["extrapolation"]["status"]) == ["in span, in range"]
    assert pred.obs_names[0] == "P0+P1_3_0"
    own = model.predict(["P0+P1"], n_cells=25, seed=3, method="pdae")
    assert own.uns["pdae"]["method"] == "pdae"
    assert not np.allclose(own.X, pred.X)
    with pytest.raises(ValueError, match="method='transfer'"):
        model.predict(["P0+P1"], method="transfer")


def test_the_choice_is_saved_and_loaded(tmp_path):
    adata = _adata()
    model = PDAE(adata, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=1, lr=1e-5, **TRAIN)
    model.save(tmp_path / "m")
    loaded = PDAE.load(tmp_path / "m", adata)
    assert loaded.prediction_method_ == model.prediction_method_
    assert loaded.held_out_conditions_ == model.held_out_conditions_
    assert loaded.held_out_scores_.equals(model.held_out_scores_)
    a = model.predict(["P0+P1"], n_cells=10, seed=0)
    np.testing.assert_allclose(loaded.predict(["P0+P1"], n_cells=10, seed=0).X, a.X)


def test_held_out_conditions_zero_trains_on_everything():
    adata = _adata()
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, held_out_conditions=0, **TRAIN)
    assert model.held_out_conditions_ == []
    assert model.held_out_scores_ is None
    assert model.prediction_method_ == "pdae"
    assert len(model.validation_indices) == 0
    assert model.predict(["P0+P1"], n_cells=5, seed=0).uns["pdae"]["method"] == "pdae"
    for bad in (-1, 1.5, "some", True):
        with pytest.raises(ValueError, match="held_out_conditions="):
            PDAE(adata, **TINY).train(max_epochs=1, held_out_conditions=bad, **TRAIN)


def test_nothing_is_held_out_when_nothing_stays_in_the_span():
    adata = pdae.data.simulate(
        n_perturbations=3,
        n_genes=10,
        n_cells_per_condition=30,
        conditions=["ctrl", "P0", "P1"],
        seed=0,
    )
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, **TRAIN)
    assert model.held_out_conditions_ == []
    assert model.prediction_method_ == "pdae"


def test_a_baseline_prediction_on_the_count_scale_uses_each_source_cells_size():
    adata = pdae.data.simulate(
        n_perturbations=3, n_genes=20, n_cells_per_condition=30, counts=True, seed=0
    )
    raw = adata.copy()
    raw.X = raw.layers["counts"].copy()
    pdae.pp.normalize_counts(raw)
    PDAE.setup_anndata(raw, "perturbation", control_group="ctrl", counts_layer="counts")
    model = PDAE(raw, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=1, **TRAIN)
    pred = model.predict(["P0+P1"], n_cells=20, seed=0, scale="counts", method="control")
    counts = pred.layers["counts"].toarray()
    src = raw[pred.obs["pdae_source_cell"].to_numpy()]
    # "control" moves nothing: the counts are the source cells' own
    ref = src.layers["counts"]
    ref = ref.toarray() if hasattr(ref, "toarray") else np.asarray(ref)
    np.testing.assert_allclose(counts, ref)
    assert np.isfinite(pred.obs["pdae_size_factor"]).all()
