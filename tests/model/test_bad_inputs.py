"""Bad inputs, round two: data loss, invented data, silent surprises and cryptic errors.

Each test is a row of ``docs/reliability.md``: it checks the error (or warning) type, the
message and that the user's AnnData and files are unchanged.
"""

from __future__ import annotations

import os
import warnings

import anndata as ad
import numpy as np
import pytest
from test_reliability import TINY, TRAIN, assert_unchanged, snapshot, tiny_adata

from pdae_sc.model import PDAE, ExtrapolationWarning


def _fit(adata, **setup):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", **setup)
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, **TRAIN)
    return model


@pytest.fixture(scope="module")
def model():
    """A PDAE trained for 1 epoch on ctrl, 3 singles and 3 doubles (shared, not changed)."""
    return _fit(tiny_adata())


def _files(path) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(d, f), path): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(path)
        for f in files
    }


# ---------------------------------------------------------------- 1. overwrite only a model
def test_save_overwrite_refuses_a_directory_that_is_not_a_model(model, tmp_path):
    target = tmp_path / "res"
    target.mkdir()
    (target / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match=r"is not a saved pdae-sc model.*notes\.txt"):
        model.save(target, overwrite=True)
    assert _files(target) == {"notes.txt": b"my notes"}
    assert sorted(os.listdir(tmp_path)) == ["res"]  # no temporary directory left


def test_save_overwrite_refuses_an_existing_file(model, tmp_path):
    target = tmp_path / "data.h5ad"
    target.write_bytes(b"not a model")
    with pytest.raises(FileExistsError, match="exists and is not a directory"):
        model.save(target, overwrite=True)
    assert target.is_file()
    assert target.read_bytes() == b"not a model"


def test_save_overwrite_replaces_a_saved_model(model, tmp_path):
    target = tmp_path / "model"
    model.save(target, save_anndata=True)
    model.save(target, overwrite=True)  # a saved model (with its AnnData) is replaced
    assert sorted(os.listdir(target)) == ["model.pt"]


# ---------------------------------------------------------------- 2. size arguments
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        pytest.param(
            lambda m: m.predict(["P0"], n_cells=5, batch_size=-1),
            ValueError,
            r"batch_size=-1; use an integer >= 1",
            id="predict_negative",
        ),
        pytest.param(
            lambda m: m.predict(["P0"], n_cells=5, batch_size=0),
            ValueError,
            "batch_size=0",
            id="predict_zero",
        ),
        pytest.param(
            lambda m: m.predict(["P0"], n_cells=5, batch_size=2.5),
            TypeError,
            "batch_size=2.5 has type float",
            id="predict_float",
        ),
        pytest.param(
            lambda m: m.get_latent_representation(batch_size=-1),
            ValueError,
            "batch_size=-1",
            id="latent_negative",
        ),
        pytest.param(
            lambda m: m.get_counterfactual(perturbation="P0", batch_size=0),
            ValueError,
            "batch_size=0",
            id="counterfactual_zero",
        ),
    ],
)
def test_size_arguments_are_validated(model, call, error, match):
    before = snapshot(model.adata)
    with pytest.raises(error, match=match):
        call(model)
    assert_unchanged(before, model.adata)


# ---------------------------------------------------------------- 3. save keeps obs dtypes
def test_save_with_anndata_keeps_object_columns(tmp_path):
    adata = tiny_adata()
    adata.obs["donor"] = np.where(np.arange(adata.n_obs) % 2, "d1", "d2").astype(object)
    adata.obs["perturbation"] = adata.obs["perturbation"].astype(str).astype(object)
    model = _fit(adata)
    before = snapshot(adata)
    model.save(tmp_path / "model", save_anndata=True)
    assert adata.obs["donor"].dtype == object
    assert adata.obs["perturbation"].dtype == object
    assert_unchanged(before, adata)
    saved = ad.read_h5ad(tmp_path / "model" / "adata.h5ad")
    assert list(saved.obs["donor"]) == list(adata.obs["donor"])


# ---------------------------------------------------------------- 4. NaN dose
def test_nan_dose_of_perturbed_cells_is_refused():
    adata = tiny_adata()
    dose = np.ones(adata.n_obs)
    dose[(adata.obs["perturbation"] == "P0").to_numpy().nonzero()[0][:3]] = np.nan
    adata.obs["dose"] = dose
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"The dose of 'P0' in 'P0' is missing \(NaN\)"):
        PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", dosage_key="dose")
    assert_unchanged(before, adata)


def test_nan_dose_of_control_cells_is_accepted():
    adata = tiny_adata()
    adata.obs["dose"] = np.where(adata.obs["perturbation"] == "ctrl", np.nan, 2.0)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", dosage_key="dose")
    assert PDAE(adata, **TINY).target_labels(["P0"], dosages=[2.0]).max() == 2.0


# ---------------------------------------------------------------- 5. contexts with the joiner
@pytest.mark.parametrize(
    ("k1", "k2"), [pytest.param("a | b", "c", id="first"), pytest.param("a", "b | c", id="second")]
)
def test_context_values_with_the_joiner_are_refused(k1, k2):
    adata = tiny_adata()
    half = np.arange(adata.n_obs) % 2 == 0
    adata.obs["k1"] = np.where(half, k1, "a")
    adata.obs["k2"] = np.where(half, k2, "b")
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"contain the context joiner ' \| '"):
        PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", context_keys=["k1", "k2"])
    assert_unchanged(before, adata)


def test_single_context_key_with_the_joiner_still_works():
    adata = tiny_adata()
    adata.obs["line"] = np.where(np.arange(adata.n_obs) % 2 == 0, "a | b", "c")
    model = _fit(adata, context_keys=["line"])
    pred = model.predict(["P0"], n_cells=4, context="a | b", seed=0)
    assert set(pred.obs["line"]) == {"a | b"}


# ---------------------------------------------------------------- 6. dosages container
@pytest.mark.parametrize("dosages", ["123", "0.5", 0.5])
def test_dosages_must_be_a_list(model, dosages):
    before = snapshot(model.adata)
    with pytest.raises(TypeError, match=r"dosages=.* must be a list with one dose per target"):
        model.predict(["P0", "P1", "P2"], dosages=dosages, n_cells=4)
    assert_unchanged(before, model.adata)


# ---------------------------------------------------------------- 7. dose 0 and large doses
def test_dose_zero_is_reported_as_the_control(model):
    with pytest.warns(UserWarning, match=r"'P0' at dose 0 is 'ctrl'"):
        pred = model.predict(["P0", "P1"], dosages=[0, "0"], n_cells=4, seed=0)
    assert set(pred.obs["perturbation"]) == {"ctrl"}
    with pytest.warns(UserWarning, match=r"'P0\+P1' at dose '0\+1' is 'P1'"):
        pred = model.predict(["P0+P1"], dosages=["0+1"], n_cells=4, seed=0)
    assert set(pred.obs["perturbation"]) == {"P1"}


def test_dose_beyond_the_training_range_warns(model):
    with pytest.warns(ExtrapolationWarning, match=r"doses outside the range seen in training"):
        model.predict(["P0"], dosages=[1e6], n_cells=4, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        model.predict(["P0"], dosages=[0.5], n_cells=4, seed=0)  # in range: no warning


# ---------------------------------------------------------------- 8. memory estimate
def test_prediction_too_large_is_refused_with_an_estimate(model, monkeypatch):
    monkeypatch.setattr(PDAE, "max_prediction_bytes", 10_000)
    with pytest.raises(ValueError, match=r"about 0\.0 GiB.*max_prediction_bytes.*in chunks"):
        model.predict(["P0", "P1"], n_cells=1000)
    big = 10**9 // (model.adata.n_vars * 4) * 4  # about 4 GB of float32
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"about 3\.7 GiB"):
        model.predict(["P0"], n_cells=big)


# ---------------------------------------------------------------- 9. model sizes, seed, targets
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_latent": 0}, ValueError, "n_latent=0; use an integer >= 1"),
        ({"n_latent": -1}, ValueError, "n_latent=-1"),
        ({"n_hidden": (0,)}, ValueError, r"n_hidden=\(0,\) has widths \[0\]"),
        ({"n_hidden": 16}, TypeError, "n_hidden=16; give the hidden widths as a sequence"),
        ({"n_noise": -2}, ValueError, "n_noise=-2; use an integer >= 0"),
    ],
    ids=["n_latent_zero", "n_latent_negative", "n_hidden_zero", "n_hidden_int", "n_noise"],
)
def test_model_sizes_are_validated(kwargs, error, match):
    adata = tiny_adata()
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    before = snapshot(adata)
    with pytest.raises(error, match=match):
        PDAE(adata, **{**TINY, **kwargs})
    assert_unchanged(before, adata)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m.predict(["P0"], n_cells=4, seed=-1), ValueError, "seed=-1; use None or"),
        (lambda m: m.predict(["P0"], n_cells=4, seed=1.5), TypeError, "seed=1.5 has type"),
        (lambda m: m.predict(None), TypeError, r"perturbations=None; name the targets"),
    ],
    ids=["seed_negative", "seed_float", "targets_none"],
)
def test_prediction_arguments_are_validated(model, call, error, match):
    before = snapshot(model.adata)
    with pytest.raises(error, match=match):
        call(model)
    assert_unchanged(before, model.adata)


# ---------------------------------------------------------------- 11. labels edited after setup
def test_labels_edited_after_training_are_refused():
    adata = tiny_adata()
    model = _fit(adata)
    labels = adata.obs["perturbation"].copy()
    adata.obs["perturbation"] = labels.astype(str).replace({"P0": "P1", "P1": "P0"})
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"\['perturbation'\] changed after setup_anndata"):
        model.predict(["P0"], n_cells=4)
    assert_unchanged(before, adata)
    adata.obs["perturbation"] = labels  # restored: works again
    assert model.predict(["P0"], n_cells=4).n_obs == 4


# ---------------------------------------------------------------- 13. a perturbation "all"
def test_perturbation_named_all_can_be_the_source():
    adata = tiny_adata()
    adata.obs["perturbation"] = adata.obs["perturbation"].astype(str).replace({"P2": "all"})
    model = _fit(adata)
    pred = model.predict(["P0"], n_cells=4, source="all", seed=0)
    assert set(pred.obs["pdae_source"]) == {"all"}
    # a default source set of "all" (chosen after training) still means every cell
    model.default_source_ = "all"
    assert len(set(model.predict(["P0"], n_cells=40, seed=0).obs["pdae_source"])) > 1


# ---------------------------------------------------------------- 14. early stopping, tiny data
def test_early_stopping_without_validation_cells_explains_why():
    adata = tiny_adata(n_cells_per_condition=2)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    before = snapshot(adata)
    with pytest.raises(ValueError, match=r"validation_size=0.5 holds out none.*has 2 cells"):
        model.train(max_epochs=1, early_stopping=True, validation_size=0.5, **TRAIN)
    assert_unchanged(before, adata)


# ---------------------------------------------------------------- 15. source, context values
def test_source_missing_from_the_loaded_anndata_is_explained(model, tmp_path):
    model.save(tmp_path / "m")
    other = model.adata[model.adata.obs["perturbation"] != "ctrl"].copy()
    for key in ("_scvi_uuid", "_scvi_manager_uuid"):
        other.uns.pop(key, None)
    loaded = PDAE.load(tmp_path / "m", other)
    before = snapshot(other)
    with pytest.raises(ValueError, match=r"source='ctrl' is a training condition, but the"):
        loaded.predict(["P0"], source="ctrl", n_cells=4)
    assert_unchanged(before, other)


def test_integer_context_values_are_accepted():
    adata = tiny_adata()
    adata.obs["plate"] = np.where(np.arange(adata.n_obs) % 2 == 0, 1, 2)
    model = _fit(adata, context_keys=["plate"])
    pred = model.predict(["P0"], n_cells=4, context=1, seed=0)
    assert set(pred.obs["plate"]) == {"1"}
    table = model.check_extrapolation(["P0"], context=np.int64(2))
    assert table["context"].tolist() == ["2"]


def test_context_tuple_for_several_keys():
    adata = tiny_adata()
    adata.obs["k1"] = np.where(np.arange(adata.n_obs) % 2 == 0, "a", "b")
    adata.obs["k2"] = "c"
    model = _fit(adata, context_keys=["k1", "k2"])
    pred = model.predict(["P0"], n_cells=4, context=("a", "c"), seed=0)
    assert set(pred.obs["k1"]) == {"a"}
    with pytest.raises(ValueError, match=r"has 1 values but the model has 2 context_keys"):
        model.predict(["P0"], n_cells=4, context=("a",))


# ---------------------------------------------------------------- 16. broken saved models
def test_load_garbage_model_file(model, tmp_path):
    path = tmp_path / "m"
    path.mkdir()
    (path / "model.pt").write_bytes(b"garbage, not a torch file")
    with pytest.raises(ValueError, match=r"model.pt' is not a readable pdae-sc model file"):
        PDAE.load(path)
    assert (path / "model.pt").read_bytes() == b"garbage, not a torch file"


def test_load_directory_without_model_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"No saved model file .*\['notes.txt'\]"):
        PDAE.load(tmp_path)


def test_load_without_saved_anndata_says_what_to_pass(model, tmp_path):
    model.save(tmp_path / "m")
    with pytest.raises(ValueError, match=r"saved without its AnnData.*PDAE.load\(.*, adata\)"):
        PDAE.load(tmp_path / "m")
    assert PDAE.load(tmp_path / "m", model.adata.copy()).is_trained
