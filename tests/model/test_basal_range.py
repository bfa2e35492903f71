"""The basal-range check of ``predict(targets, adata=new_cells)`` (``model/_basal_range.py``).

Contexts differ only in their basal state, simulated as in ``test_new_cells``: a hidden
perturbation ``P2`` at dose 0 (context A) and 1 (context B) in training; the new cells are
the control cells of a context with ``P2`` at dose 0.5 (between A and B) or 4 (far beyond B).
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scvi
from hidden_contexts import hidden_contexts

from pdae_sc.model import PDAE, ExtrapolationWarning
from pdae_sc.model._basal_range import (
    OUTSIDE_P,
    OUTSIDE_RELATIVE,
    ControlCells,
    basal_range,
    degrees_of_freedom,
    distance_to_hull,
)
from pdae_sc.model._new_cells import read_new_cells

VISIBLE = ["ctrl", "P0", "P1", "P0+P1"]
TRAINING = {"A": None, "B": "1"}
OUTSIDE_TEXT = "outside the range of the registered contexts"


def _cells(hidden: dict) -> ad.AnnData:
    """The conditions ``VISIBLE`` in each context of ``hidden`` (context -> dose of ``P2``)."""
    return hidden_contexts(
        hidden,
        VISIBLE,
        token="P2",
        key="line",
        n_cells=60,
        n_perturbations=3,
        n_latent=3,
        n_genes=12,
        seed=0,
    )


#: One simulation: the training contexts and two new ones, "inside" (between A and B) and
#: "outside" (far beyond B), whose control cells are the new cells.
ALL = {**TRAINING, "inside": "0.5", "outside": "4"}


@pytest.fixture(scope="module")
def cells() -> ad.AnnData:
    return _cells(ALL)


def _new_control_cells(cells: ad.AnnData, context: str) -> ad.AnnData:
    """Unlabelled control cells of ``context``."""
    keep = (cells.obs["line"] == context) & (cells.obs["perturbation"] == "ctrl")
    new = cells[keep.to_numpy()].copy()
    del new.obs["perturbation"]
    return new


@pytest.fixture(scope="module")
def model(cells):
    train = cells[cells.obs["line"].isin(list(TRAINING)).to_numpy()].copy()
    seed = scvi.settings.seed
    scvi.settings.seed = 0
    try:
        PDAE.setup_anndata(train, "perturbation", control_group="ctrl", context_keys="line")
        fitted = PDAE(train, n_latent=3, n_hidden=(16,), n_noise=2)
        fitted.train(
            max_epochs=1,
            enable_progress_bar=False,
            n_sources=16,
            check_fit=False,
            held_out_conditions=0,
        )
    finally:
        scvi.settings.seed = seed
    return fitted


def _basal_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if OUTSIDE_TEXT in str(w.message)]


def test_distance_to_hull_of_a_triangle():
    triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    distance, w = distance_to_hull(triangle, np.array([0.2, 0.3]))  # inside
    assert distance == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(w @ triangle, [0.2, 0.3], atol=1e-6)
    distance, w = distance_to_hull(triangle, np.array([1.0, 1.0]))  # beyond the long side
    assert distance == pytest.approx(np.sqrt(0.5), abs=1e-6)
    np.testing.assert_allclose(w, [0.0, 0.5, 0.5], atol=1e-6)
    distance, w = distance_to_hull(triangle, np.array([-1.0, -2.0]))  # nearest a corner
    assert distance == pytest.approx(np.sqrt(5.0), abs=1e-6)
    np.testing.assert_allclose(w, [1.0, 0.0, 0.0], atol=1e-6)
    distance, w = distance_to_hull(triangle[:1] + 5.0, np.array([2.0, 1.0]))  # one point
    assert distance == pytest.approx(5.0)
    assert w.tolist() == [1.0]


def _control_cells(x: np.ndarray) -> ControlCells:
    return ControlCells(lambda idx: x[idx], np.arange(len(x)), x.mean(0), x.var(0, ddof=1).sum())


def test_degrees_of_freedom_count_the_directions_the_noise_spreads_over():
    rng = np.random.default_rng(0)
    isotropic = rng.normal(size=(300, 40))
    one_direction = rng.normal(size=(300, 1)) * rng.normal(size=(1, 40))
    ten = rng.normal(size=(300, 10)) @ rng.normal(size=(10, 40))
    assert degrees_of_freedom([(1.0, _control_cells(isotropic))]) == pytest.approx(40, rel=0.15)
    assert degrees_of_freedom([(1.0, _control_cells(one_direction))]) == pytest.approx(1, rel=0.05)
    assert 4 < degrees_of_freedom([(1.0, _control_cells(ten))]) < 11
    # two independent groups in orthogonal directions: the dimensions add up
    a = np.hstack([rng.normal(size=(300, 20)), np.zeros((300, 20))])
    b = np.hstack([np.zeros((300, 20)), rng.normal(size=(300, 20))])
    both = degrees_of_freedom([(1.0, _control_cells(a)), (1.0, _control_cells(b))])
    assert both == pytest.approx(40, rel=0.15)


def test_new_cells_between_the_registered_contexts_do_not_warn(model, cells):
    new = _new_control_cells(cells, "inside")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = model.predict(["P0", "P0+P1"], adata=new, seed=0)
    assert _basal_warnings(caught) == []
    table = pred.uns["pdae"]["basal_range"]
    documented = PDAE.predict.__doc__
    assert all(f"``{column}``" in documented for column in table.columns), table.columns
    assert table["context"].tolist() == ["inside"]
    assert table["n_control_cells"].tolist() == [new.n_obs]
    row = table.iloc[0]
    assert row["p_value"] > OUTSIDE_P, row
    assert row["relative_distance"] < OUTSIDE_RELATIVE, row
    assert not row["outside"]
    assert 1.0 <= row["dof"] <= new.n_vars


def test_new_cells_far_beyond_the_registered_contexts_warn(model, cells, tmp_path):
    new = _new_control_cells(cells, "outside")
    before = new.copy()
    with pytest.warns(ExtrapolationWarning, match=OUTSIDE_TEXT) as caught:
        pred = model.predict(["P0", "P0+P1"], adata=new, seed=0)
    assert "'outside'" in _basal_warnings(caught)[0]
    row = pred.uns["pdae"]["basal_range"].iloc[0]
    assert row["p_value"] < OUTSIDE_P, row
    assert row["relative_distance"] > OUTSIDE_RELATIVE, row
    assert row["outside"]
    assert row["nearest"] == "B"  # the registered context closest to dose 4 of P2
    # the check only reads: the prediction and the user's cells are as without it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = model.predict(["P0", "P0+P1"], adata=new, seed=0)
    np.testing.assert_array_equal(pred.X, again.X)
    np.testing.assert_array_equal(new.X, before.X)
    assert new.obs.equals(before.obs)
    path = tmp_path / "pred.h5ad"
    pred.write_h5ad(path)
    back = ad.read_h5ad(path).uns["pdae"]["basal_range"]
    assert back["ratio"].iloc[0] == pytest.approx(row["ratio"])


def test_halves_of_a_registered_context_stay_inside(cells):
    """The null: control cells drawn from a registered context, held out of registration."""
    cells = cells[cells.obs["line"].isin(list(TRAINING)).to_numpy()]
    ctrl = np.flatnonzero((cells.obs["perturbation"] == "ctrl").to_numpy())
    ratios = []
    for draw in range(5):
        held = np.random.default_rng(draw).permutation(ctrl)[: len(ctrl) // 2]
        keep = np.ones(cells.n_obs, dtype=bool)
        keep[held] = False
        train = cells[keep].copy()
        PDAE.setup_anndata(train, "perturbation", control_group="ctrl", context_keys="line")
        registration = PDAE(train, n_latent=3, n_hidden=(16,), n_noise=2).registration
        new = cells[held].copy()
        del new.obs["perturbation"]
        new.obs["line"] = "half"
        table = basal_range(
            registration,
            read_new_cells(registration, new, source=None, scale="log1p"),
            batch_size=16,
        )
        assert table["context"].tolist() == ["half"]
        ratios.append(float(table["ratio"].iloc[0]))
        assert table["relative_distance"].iloc[0] < OUTSIDE_RELATIVE, table
    assert max(ratios) < 2.5, ratios


def test_new_cells_without_control_cells_have_no_basal_row(model, cells):
    new = _new_control_cells(cells, "outside")
    new.obs["perturbation"] = "P0"  # every new cell perturbed: no basal state to check
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = model.predict(["P0+P1"], adata=new, source="all", seed=0)
    assert _basal_warnings(caught) == []
    assert len(pred.uns["pdae"]["basal_range"]) == 0
