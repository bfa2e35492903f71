"""``model.predict(targets, adata=new_cells)``: cells of a context the model never registered.

Contexts that differ only in their basal state are simulated as in ``test_inputs``: a hidden
perturbation ``P3`` at dose 0 (line A), 2 (line B) and 1 (line C, never registered); the
model is trained on A and B and moves C's control cells.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
from hidden_contexts import hidden_contexts

import pdae_sc as pdae
from pdae_sc.model import PDAE

VISIBLE = ["ctrl", "P0", "P1", "P2", "P0+P1"]
HIDDEN_DOSE = {"A": None, "B": "2", "C": "1"}
TARGETS = ["P0", "P1", "P2", "P0+P1"]


def _lines(n_cells: int, *, n_genes: int = 12, n_latent: int = 3, counts: bool = False):
    """Lines A, B, C (``obs["line"]``), each with the conditions ``VISIBLE``."""
    return hidden_contexts(
        HIDDEN_DOSE,
        VISIBLE,
        token="P3",
        key="line",
        n_cells=n_cells,
        counts=counts,
        n_perturbations=4,
        n_latent=n_latent,
        n_genes=n_genes,
        seed=0,
    )


def _split(adata):
    """Training cells (lines A, B), C's control cells (unlabelled) and C's perturbed cells."""
    in_c = (adata.obs["line"] == "C").to_numpy()
    ctrl = (adata.obs["perturbation"] == "ctrl").to_numpy()
    new = adata[in_c & ctrl].copy()
    del new.obs["perturbation"]
    return adata[~in_c].copy(), new, adata[in_c & ~ctrl].copy()


def _fit(train, *, epochs: int = 1, network: dict | None = None, **setup):
    seed = scvi.settings.seed
    scvi.settings.seed = 0
    network = network or {"n_latent": 3, "n_hidden": (16,), "n_noise": 2}
    try:
        PDAE.setup_anndata(train, "perturbation", control_group="ctrl", **setup)
        model = PDAE(train, **network)
        model.train(
            max_epochs=epochs,
            enable_progress_bar=False,
            n_sources=16 if epochs == 1 else 32,
            check_fit=False,
            held_out_conditions=0,
        )
    finally:
        scvi.settings.seed = seed
    return model


@pytest.fixture(scope="module")
def lines():
    return _lines(20, counts=True)


@pytest.fixture(scope="module")
def fitted(lines):
    train, new, _ = _split(lines)
    return _fit(train, context_keys="line", counts_layer="counts"), train, new


def _snapshot(adata):
    return adata.copy(), list(adata.obs.columns), dict(adata.uns), list(adata.layers)


# ---------------------------------------------------------------------------- the format
def test_new_cells_come_back_like_predict(fitted):
    model, train, new = fitted
    pred = model.predict(TARGETS, adata=new, n_cells=15, seed=3, method="pdae")
    assert pred.n_obs == 15 * len(TARGETS)
    assert pred.var_names.equals(train.var_names)
    assert pred.obs["perturbation"].tolist() == [t for t in TARGETS for _ in range(15)]
    assert set(pred.obs["pdae_source"]) == {"ctrl"}
    assert pred.obs_names[0] == "P0_3_0"
    # every target moves 15 distinct new cells, named as in the user's AnnData
    for _, part in pred.obs.groupby("perturbation", observed=True):
        assert part["pdae_source_cell"].is_unique
        assert set(part["pdae_source_cell"]) <= set(new.obs_names)
    assert set(pred.obs["line"]) == {"C"}  # the user's context column, copied
    uns = pred.uns["pdae"]
    assert uns["method"] == "pdae"
    assert uns["new_cells"] is True
    table = uns["extrapolation"].set_index("target")
    assert table["context"].eq("C").all()
    assert not table["seen_in_context"].any()
    assert table.loc["P0", "status"] == "seen in another context"
    assert (table["n_cells_in_context"] == 0).all()
    assert (table["n_source_cells"] == new.n_obs).all()
    default = model.predict(["P0"], adata=new, seed=0)
    assert default.n_obs == new.n_obs  # n_cells defaults to the new cells, each once
    assert default.obs["pdae_source_cell"].is_unique
    assert default.uns["pdae"]["method"] == "additive"  # method="auto": the measured shift
    assert default.uns["pdae"]["new_cells"] is True


def test_without_a_context_column_the_context_is_new_cells(fitted):
    model, _, new = fitted
    bare = new.copy()
    del bare.obs["line"]
    pred = model.predict(["P0"], adata=bare, n_cells=5, seed=0)
    assert set(pred.obs["line"]) == {"new cells"}
    assert pred.uns["pdae"]["extrapolation"]["context"].tolist() == ["new cells"]


def test_registered_cells_passed_as_new_cells_give_the_registered_prediction(fitted):
    """The same cells, seed and targets: the new-cells path moves them exactly as predict
    moves the registered cells (unlabelled control cells, and labelled perturbed cells whose
    own shift is subtracted)."""
    model, train, _ = fitted
    obs = train.obs
    for source in ("ctrl", "P0"):
        cells = train[(obs["line"] == "A").to_numpy() & (obs["perturbation"] == source).to_numpy()]
        new = ad.AnnData(cells.X.copy(), obs=cells.obs.copy(), var=cells.var.copy())
        if source == "ctrl":
            del new.obs["perturbation"]
        ref = model.predict(
            ["P1", "P0+P1"], context="A", source=source, n_cells=cells.n_obs, seed=7, method="pdae"
        )
        ours = model.predict(
            ["P1", "P0+P1"],
            adata=new,
            source=None if source == "ctrl" else source,
            seed=7,
            method="pdae",
        )
        np.testing.assert_allclose(ours.X, ref.X, rtol=1e-5, atol=1e-5)
        assert ours.obs["pdae_source_cell"].tolist() == ref.obs["pdae_source_cell"].tolist()
        assert ours.obs["pdae_source"].tolist() == ref.obs["pdae_source"].tolist()


# ---------------------------------------------------------------------------- genes
def test_genes_are_matched_by_name(fitted):
    model, _, new = fitted
    ref = model.predict(TARGETS, adata=new, n_cells=10, seed=1, method="pdae")
    shuffled = new[:, new.var_names[::-1]].copy()
    ones = np.ones((new.n_obs, 3), dtype=np.float32)
    wider = ad.AnnData(  # three genes the model does not know, first; counts as CSR
        np.hstack([ones, shuffled.X]),
        obs=shuffled.obs.copy(),
        var=pd.DataFrame(index=["extra_0", "extra_1", "extra_2", *shuffled.var_names]),
        layers={"counts": sp.csr_matrix(np.hstack([ones, shuffled.layers["counts"]]))},
    )
    for other in (shuffled, wider):
        pred = model.predict(
            TARGETS, adata=other, n_cells=10, seed=1, scale="counts", method="pdae"
        )
        np.testing.assert_allclose(pred.X, ref.X, rtol=1e-6)
        assert pred.var_names.equals(ref.var_names)
    counts = model.predict(["P0"], adata=wider, n_cells=10, seed=1, scale="counts")
    ordered = model.predict(["P0"], adata=new, n_cells=10, seed=1, scale="counts")
    np.testing.assert_array_equal(
        counts.layers["counts"].toarray(), ordered.layers["counts"].toarray()
    )


def test_missing_genes_raise_with_the_names_and_the_fix(fitted):
    model, _, new = fitted
    missing = new[:, new.var_names[2:]].copy()
    with pytest.raises(ValueError, match=r"misses 2 of the 12 genes.*gene_0.*gene_1.*names"):
        model.predict(["P0"], adata=missing, seed=0)
    renamed = new.copy()
    renamed.var_names = [f"ENSG{i}" for i in range(new.n_vars)]
    with pytest.raises(ValueError, match=r"misses 12 of the 12 genes"):
        model.predict(["P0"], adata=renamed, seed=0)


def test_bad_new_cells_raise_clear_errors(fitted):
    model, _, new = fitted
    with pytest.raises(TypeError, match="AnnData"):
        model.predict(["P0"], adata=new.X, seed=0)
    with pytest.raises(ValueError, match="no cells"):
        model.predict(["P0"], adata=new[:0].copy(), seed=0)
    with pytest.raises(ValueError, match=r"context='A' picks registered cells"):
        model.predict(["P0"], adata=new, context="A", seed=0)
    no_counts = new.copy()
    del no_counts.layers["counts"]
    with pytest.raises(ValueError, match=r"adata.layers\['counts'\]"):
        model.predict(["P0"], adata=no_counts, scale="counts", seed=0)
    nan = new.copy()
    nan.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        model.predict(["P0"], adata=nan, seed=0)
    labelled = new.copy()
    labelled.obs["perturbation"] = ["ctrl"] * (new.n_obs - 2) + ["P9", "P9"]
    with pytest.raises(KeyError, match=r"P9.*the control cells"):
        model.predict(["P0"], adata=labelled, seed=0)
    with pytest.raises(ValueError, match=r"source='P1': no new cell"):
        model.predict(["P0"], adata=new, source="P1", seed=0)


def test_labelled_new_cells_default_to_their_control_cells(fitted, lines):
    model, _, _ = fitted
    in_c = lines[(lines.obs["line"] == "C").to_numpy()].copy()  # C's control and P0 ... cells
    pred = model.predict(["P1"], adata=in_c, seed=0)
    assert set(pred.obs["pdae_source"]) == {"ctrl"}
    assert pred.n_obs == int((in_c.obs["perturbation"] == "ctrl").sum())
    moved = model.predict(["P1"], adata=in_c, source="P0", seed=0)
    assert set(moved.obs["pdae_source"]) == {"P0"}
    every = model.predict(["P1"], adata=in_c, source="all", seed=0)
    assert every.n_obs == in_c.n_obs


def test_the_users_anndata_is_not_modified(fitted):
    model, _, new = fitted
    before, columns, uns, layers = _snapshot(new)
    new_view = new[:, new.var_names[::-1]]  # a view, reordered
    for method in ("pdae", "linear", "control"):
        model.predict(TARGETS, adata=new, seed=0, method=method, scale="counts")
        model.predict(["P0"], adata=new_view, seed=0, method=method)
    np.testing.assert_array_equal(new.X, before.X)
    np.testing.assert_array_equal(new.layers["counts"], before.layers["counts"])
    assert new.obs.equals(before.obs)
    assert new.var.equals(before.var)
    assert list(new.obs.columns) == columns
    assert dict(new.uns) == uns
    assert list(new.layers) == layers
    assert new_view.is_view


# ---------------------------------------------------------------------------- methods
def _measured_shift(train, label: str) -> np.ndarray:
    """Mean of ``label`` minus the control mean, in each line of ``train``, averaged."""
    x, obs = np.asarray(train.X, dtype=np.float64), train.obs
    deltas = []
    for line in obs["line"].unique():
        in_line = (obs["line"] == line).to_numpy()
        hit = x[in_line & (obs["perturbation"] == label).to_numpy()].mean(0)
        deltas.append(hit - x[in_line & (obs["perturbation"] == "ctrl").to_numpy()].mean(0))
    return np.mean(deltas, axis=0)


def test_baselines_shift_the_new_cells_by_the_mean_shift_measured_elsewhere(fitted):
    model, train, new = fitted
    control = model.predict(["P0"], adata=new, method="control", seed=0)
    rows = new.obs_names.get_indexer(control.obs["pdae_source_cell"])
    np.testing.assert_allclose(control.X, new.X[rows], rtol=1e-6)
    assert control.uns["pdae"]["method"] == "control"
    assert control.uns["pdae"]["new_cells"]
    # additive: a measured target (a single or a combination) gets its measured shift, a
    # combination never measured the sum of its singles' measured shifts
    expected = {
        "P0": _measured_shift(train, "P0"),
        "P0+P1": _measured_shift(train, "P0+P1"),
        "P1+P2": _measured_shift(train, "P1") + _measured_shift(train, "P2"),
    }
    for target, shift in expected.items():
        pred = model.predict([target], adata=new, method="additive", seed=0)
        rows = new.obs_names.get_indexer(pred.obs["pdae_source_cell"])
        np.testing.assert_allclose(pred.X, new.X[rows] + shift, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="method='pooled' draws the registered cells"):
        model.predict(["P0"], adata=new, method="pooled", seed=0)


def test_auto_moves_new_cells_by_a_baseline_where_the_network_is_not_clearly_closer(fitted):
    model, _, new = fitted
    saved = model.prediction_method_, model.held_out_scores_
    # held-out scores where the network is best; linear clearly closer than additive
    clear = pd.DataFrame(
        {"pdae": [0.1, 0.1], "linear": [0.2, 0.21], "additive": [0.3, 0.32]}
        | {"mean_response": [0.5, 0.5], "control": [0.9, 0.9], "pooled": [0.15, 0.15]}
    )
    # linear lower on the mean, but within a standard error of additive (one group each way)
    close = clear.assign(linear=[0.1, 0.45], additive=[0.3, 0.3])
    cases = [
        ("pdae", None, "additive"),  # no held-out scores: the sum of the singles' shifts
        ("pdae", clear, "linear"),  # a baseline clearly closer than additive
        ("pdae", close, "additive"),  # not clearly: additive
        ("linear", clear, "linear"),
        ("linear", close, "additive"),
        ("pooled", clear, "linear"),  # pooled draws registered cells: not for new ones
    ]
    try:
        for chosen, held, used in cases:
            model.prediction_method_, model.held_out_scores_ = chosen, held
            pred = model.predict(["P0"], adata=new, seed=0)
            assert pred.uns["pdae"]["method"] == used
            assert pred.uns["pdae"]["chosen_on_held_out_conditions"] is (used == chosen)
        # a target measured in training gets its measured shift, one never measured the
        # chosen baseline's (here the mean response, which differs from both)
        mean_best = clear.assign(mean_response=[0.01, 0.02])
        model.prediction_method_, model.held_out_scores_ = "mean_response", mean_best
        auto = model.predict(["P0+P1", "P1+P2"], adata=new, seed=0)
        shift = auto.uns["pdae"]["extrapolation"].set_index("target")["new_cells_shift"]
        assert shift.to_dict() == {"P0+P1": "measured in training", "P1+P2": "mean_response"}
        additive = model.predict(["P0+P1"], adata=new, method="additive", seed=0)
        mean_response = model.predict(["P1+P2"], adata=new, method="mean_response", seed=0)
        n = new.n_obs
        np.testing.assert_allclose(auto.X[:n], additive.X, rtol=1e-6)
        np.testing.assert_allclose(auto.X[n:], mean_response.X, rtol=1e-6)
        other = model.predict(["P0+P1"], adata=new, method="mean_response", seed=0)
        assert np.abs(auto.X[:n] - other.X).max() > 0.1
        network = model.predict(["P0"], adata=new, seed=0, method="pdae", n_cells=7)
        assert network.uns["pdae"]["method"] == "pdae"
        linear = model.predict(["P0"], adata=new, seed=0, method="linear", n_cells=7)
        source = network.obs["pdae_source_cell"].tolist()
        assert linear.obs["pdae_source_cell"].tolist() == source  # the same cells, paired
    finally:
        model.prediction_method_, model.held_out_scores_ = saved


def test_auto_moves_never_measured_targets_by_the_network_when_it_was_clearly_closer(fitted):
    model, _, new = fitted
    saved = model.prediction_method_, model.held_out_scores_
    # the network clearly closer than every baseline on the held-out conditions
    ahead = pd.DataFrame(
        {"pdae": [0.1, 0.12, 0.11], "linear": [0.3, 0.35, 0.31], "additive": [0.2, 0.25, 0.22]}
        | {"mean_response": [0.9] * 3, "control": [1.0] * 3, "pooled": [0.8] * 3}
    )
    # ahead on the mean, but within a standard error of additive (one group each way)
    close = ahead.assign(pdae=[0.0, 0.5, 0.2])
    targets = ["P0+P1", "P1+P2", "P0", "P0+P2"]  # measured, never, measured, never
    try:
        model.prediction_method_, model.held_out_scores_ = "pdae", ahead
        auto = model.predict(targets, adata=new, seed=4, n_cells=9)
        table = auto.uns["pdae"]["extrapolation"].set_index("target")
        assert table["new_cells_shift"].to_dict() == {
            "P0+P1": "measured in training",
            "P1+P2": "pdae",
            "P0": "measured in training",
            "P0+P2": "pdae",
        }
        assert auto.uns["pdae"]["method"] == "additive"  # the baseline of the other targets
        assert auto.obs["perturbation"].tolist() == [t for t in targets for _ in range(9)]
        # the never-measured targets' cells are the network's, target by target
        network = model.predict(["P1+P2", "P0+P2"], adata=new, seed=4, n_cells=9, method="pdae")
        np.testing.assert_allclose(auto.X[9:18], network.X[:9], rtol=1e-6)
        np.testing.assert_allclose(auto.X[27:], network.X[9:], rtol=1e-6)
        assert (
            auto.obs["pdae_source_cell"].tolist()[27:]
            == network.obs["pdae_source_cell"].tolist()[9:]
        )
        # the measured ones keep their measured shift, from the same draws as without them
        measured = model.predict(["P0+P1", "P0"], adata=new, seed=4, n_cells=9)
        np.testing.assert_allclose(auto.X[:9], measured.X[:9], rtol=1e-6)
        np.testing.assert_allclose(auto.X[18:27], measured.X[9:], rtol=1e-6)
        # on the count scale too, each cell on its own source cell's counts
        counts = model.predict(targets, adata=new, seed=4, n_cells=9, scale="counts")
        assert counts.obs["pdae_source_cell"].tolist() == auto.obs["pdae_source_cell"].tolist()
        drawn = counts.layers["counts"].toarray()
        assert drawn.shape == auto.shape
        assert np.array_equal(drawn, np.rint(drawn))
        # not clearly closer: the baseline moves every never-measured target
        model.held_out_scores_ = close
        shift = model.predict(targets, adata=new, seed=4, n_cells=9).uns["pdae"]
        assert "pdae" not in set(shift["extrapolation"]["new_cells_shift"])
    finally:
        model.prediction_method_, model.held_out_scores_ = saved


def test_a_model_without_contexts_moves_new_cells():
    adata = _lines(15)
    train, new, _ = _split(adata)
    model = _fit(train[(train.obs["line"] == "A").to_numpy()].copy())
    pred = model.predict(["P0+P1"], adata=new, seed=0)
    assert list(pred.obs.columns) == ["perturbation", "pdae_source", "pdae_source_cell"]
    linear = model.predict(["P0+P1"], adata=new, method="linear", seed=0)
    assert linear.shape == pred.shape


def test_networks_of_several_seeds_pool_every_control_cell_once(small_adata):
    """The user guide's *Several training seeds*: shares of the control cells, one a seed."""
    pdae.model.PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    models = []
    for seed in (0, 1):
        scvi.settings.seed = seed
        model = PDAE(small_adata, n_latent=4, n_hidden=(16,), n_noise=4)
        model.train(max_epochs=1, enable_progress_bar=False, check_fit=False)
        models.append(model)
    control = small_adata[small_adata.obs["perturbation"] == "ctrl"]
    shares = np.array_split(np.random.default_rng(0).permutation(control.n_obs), len(models))
    pred = ad.concat(
        [
            model.predict(["P0+P1"], adata=control[np.sort(share)].copy(), method="pdae", seed=k)
            for k, (model, share) in enumerate(zip(models, shares, strict=True))
        ]
    )
    assert pred.obs_names.is_unique
    assert pred.n_obs == control.n_obs
    assert sorted(pred.obs["pdae_source_cell"]) == sorted(control.obs_names)
    assert (pred.obs["perturbation"] == "P0+P1").all()


# ---------------------------------------------------------------------------- accuracy
def test_new_cells_of_a_basal_only_context_are_moved_towards_the_truth():
    """Trained for seconds on lines A and B, PDAE moves C's control cells to 0.44x the
    unchanged cells' energy distance from C's perturbed cells (at this seed); the same
    model moving them to their own label (no shift) gives 0.86x, so the bound fails when
    the target's shift is not applied to the new cells."""
    train, new, truth = _split(_lines(60, n_genes=10))
    network = {"n_latent": 4, "n_hidden": (32,)}
    model = _fit(train, epochs=30, network=network, context_keys="line")
    pred = model.predict(TARGETS, adata=new, seed=0, method="pdae")
    same = model.predict(TARGETS, adata=new, seed=0, method="control")

    def energy(p):
        scores = pdae.tl.evaluate(p, truth, adata_control=new, metrics=["energy_distance"])
        return float(scores["energy_distance"].mean())

    ours, unchanged = energy(pred), energy(same)
    assert ours < 0.6 * unchanged, (ours, unchanged)


def test_doses_and_several_context_keys():
    sim = pdae.data.simulate(
        n_perturbations=2,
        n_latent=3,
        n_genes=8,
        n_cells_per_condition=20,
        conditions=["P0", "P0", "P1", "P0+P1"],
        dosages=[0.5, 2, None, "1+0.5"],
        seed=0,
    )
    sim.obs["plate"] = np.where(np.arange(sim.n_obs) % 2, "p1", "p2")
    sim.obs["line"] = "A"
    model = _fit(sim, dosage_key="dose", context_keys=["line", "plate"])
    new = sim[(sim.obs["perturbation"] == "ctrl").to_numpy()].copy()
    new = ad.AnnData(new.X, obs=new.obs[["plate"]].copy(), var=new.var)  # no line, no labels
    pred = model.predict(["P0", "P0+P1"], dosages=[2, "0.5+2"], adata=new, seed=0)
    assert pred.obs["dose"].unique().tolist() == ["2", "0.5+2"]
    assert set(pred.obs["line"]) == {"new cells"}
    assert set(pred.obs["plate"]) == {"p1", "p2"}
    assert set(pred.uns["pdae"]["extrapolation"]["context"]) == {"new cells"}  # two contexts
    additive = model.predict(["P0"], dosages=[2], adata=new, method="additive", seed=0)
    rows = new.obs_names.get_indexer(additive.obs["pdae_source_cell"])
    obs, x = sim.obs, np.asarray(sim.X, dtype=np.float64)
    deltas = []
    for plate in ("p1", "p2"):
        on = (obs["plate"] == plate).to_numpy()
        p0 = on & (obs["perturbation"] == "P0").to_numpy() & (obs["dose"] == "2").to_numpy()
        ctrl = on & (obs["perturbation"] == "ctrl").to_numpy()
        deltas.append(x[p0].mean(0) - x[ctrl].mean(0))
    expected = new.X[rows] + np.mean(deltas, axis=0)
    np.testing.assert_allclose(additive.X, expected, rtol=1e-4, atol=1e-5)
    linear = model.predict(["P0+P1"], dosages=["0.5+2"], adata=new, method="linear", seed=0)
    assert linear.obs["perturbation"].unique().tolist() == ["P0+P1"]
