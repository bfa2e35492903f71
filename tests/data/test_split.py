import numpy as np
import pandas as pd
import pytest

from pdae_sc.data import describe_split, simulate, split_perturbations


@pytest.fixture(scope="module")
def combos():
    return simulate(n_perturbations=8, n_genes=5, n_cells_per_condition=3)


@pytest.fixture(scope="module")
def doses():
    return simulate(
        n_perturbations=2,
        conditions=["P0", "P0", "P0", "P0", "P1"],
        dosages=[0.5, 1, 2, 4, 1],
        n_genes=5,
        n_cells_per_condition=3,
    )


def _test_rows(adata, split, **kw):
    table = describe_split(adata, split, **kw)
    return table, table[table["split"] == "test"]


def test_doubles_default(combos):
    before = combos.copy()
    split = split_perturbations(combos, n_holdout=5, seed=1)
    assert split.index.equals(combos.obs_names)
    assert split.cat.categories.tolist() == ["train", "test"]
    table, test = _test_rows(combos, split)
    assert len(test) == 5
    assert (test["n_perturbations"] == 2).all()
    assert (test["n_seen_singles"] == 2).all()
    assert (test["kind"] == "combo_seen2").all()
    assert table.loc[table["condition"] == "ctrl", "split"].item() == "train"
    assert table["n_cells"].sum() == combos.n_obs
    # untouched without key_added
    assert combos.obs.equals(before.obs)
    assert np.array_equal(combos.X, before.X)
    assert combos.uns.keys() == before.uns.keys()


def test_fraction_and_determinism(combos):
    a = split_perturbations(combos, fraction=0.25, seed=7)
    b = split_perturbations(combos, fraction=0.25, seed=7)
    c = split_perturbations(combos, fraction=0.25, seed=8)
    assert a.equals(b)
    assert not a.equals(c)
    n_test_conditions = combos.obs.loc[a == "test", "perturbation"].nunique()
    assert n_test_conditions == 7  # round(0.25 * 28)


@pytest.mark.parametrize("levels", [(0,), (1,), (0, 1, 2)])
def test_seen_singles(combos, levels):
    split = split_perturbations(combos, n_holdout=6, seen_singles=levels, seed=2)
    _, test = _test_rows(combos, split)
    held_combos = test[test["n_perturbations"] == 2]
    assert len(held_combos) == 6
    assert set(held_combos["n_seen_singles"]) == set(levels)
    if 2 not in levels:  # some singles must be held out too
        assert (test["n_perturbations"] == 1).any()
    assert "ctrl" not in set(test["condition"])


def test_key_added_and_order_invariance(combos):
    adata = combos.copy()
    perts = adata.obs["perturbation"].astype(str)
    adata.obs["perturbation"] = perts.where(perts != "P1+P2", "P2+P1")
    split = split_perturbations(
        adata, holdout="conditions", conditions=["P1+P2", "P3"], key_added="split"
    )
    assert adata.obs["split"].equals(
        pd.Series(split.to_numpy(), index=adata.obs_names, name="split")
    )
    held = set(adata.obs.loc[split == "test", "perturbation"])
    assert held == {"P2+P1", "P3"}
    table = describe_split(adata, "split")
    assert table.set_index("condition").loc["P3", "kind"] == "single"


def test_doses(doses):
    split = split_perturbations(
        doses, dosage_key="dose", holdout="doses", doses_interpolation=[1], doses_extrapolation=[4]
    )
    table, test = _test_rows(doses, split, dosage_key="dose")
    kinds = dict(
        zip(test["dose"].fillna("1") + "@" + test["condition"], test["kind"], strict=True)
    )
    assert kinds == {
        "1@P0": "interpolation",
        "4@P0": "extrapolation",
        "1@P1": "unseen_perturbation",
    }
    assert table.loc[table["condition"] == "ctrl", "split"].item() == "train"


def test_doses_warns_on_misplaced_dose(doses):
    with pytest.warns(UserWarning, match="not interpolation"):
        split_perturbations(doses, dosage_key="dose", holdout="doses", doses_interpolation=[4])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(perturbation_key="guide"), KeyError, "guide.*available columns"),
        (dict(control_group="control"), ValueError, "control_group='control'"),
        (dict(holdout="random"), ValueError, "holdout='random'.*doubles"),
        (dict(n_holdout=100), ValueError, r"n_holdout.*\[1, 28\].*100"),
        (dict(fraction=1.5), ValueError, "fraction"),
        (dict(seen_singles=(3,)), ValueError, "No combination"),
        (dict(holdout="doses"), ValueError, "doses_interpolation"),
        (dict(holdout="doses", doses_interpolation=[0.5]), ValueError, "dosage_key"),
        (dict(holdout="conditions"), ValueError, "non-empty"),
        (dict(holdout="conditions", conditions=["ctrl"]), ValueError, "never held out"),
        (dict(holdout="conditions", conditions=["P1+P99"]), ValueError, "P1\\+P99"),
    ],
)
def test_bad_arguments(combos, kwargs, error, match):
    with pytest.raises(error, match=match):
        split_perturbations(combos, **kwargs)


def test_doubles_needs_combinations():
    with pytest.raises(ValueError, match="no combinations"):
        split_perturbations(
            simulate(n_perturbations=3, conditions="singles", n_cells_per_condition=2)
        )
