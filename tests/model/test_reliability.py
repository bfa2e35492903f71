"""Reliability: the catalogue of bad inputs, training faults, persistence, reproducibility.

Every entry of the catalogue in ``docs/reliability.md`` has a test here that checks the error
type, the message and that the user's AnnData is unchanged afterwards.
"""

from __future__ import annotations

import copy
import os
import signal
import warnings
from pathlib import Path

import anndata as ad
import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from scvi.model.base import BaseModelClass

import pdae_sc as pdae
from pdae_sc.data._validation import check_matrix
from pdae_sc.model import PDAE, NonFiniteLossError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pdae_v0_1"
TRAIN = {"enable_progress_bar": False, "n_sources": 16, "accelerator": "cpu"}
TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}


def tiny_adata(**kwargs) -> ad.AnnData:
    """ctrl, 3 singles, 3 doubles; 10 cells each, 10 genes."""
    kwargs = {"n_perturbations": 3, "n_genes": 10, "n_cells_per_condition": 10, **kwargs}
    return pdae.data.simulate(n_latent=4, seed=0, **kwargs)


@pytest.fixture
def adata():
    return tiny_adata()


@pytest.fixture(scope="module")
def trained():
    """A PDAE trained for 1 epoch (shared by tests that do not change it)."""
    adata = tiny_adata()
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, **TRAIN)
    return model


def snapshot(adata: ad.AnnData) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicated names warn on copy
        return adata.copy()


SCVI_UNS = {"_scvi_uuid", "_scvi_manager_uuid"}


def assert_unchanged(before: ad.AnnData, after: ad.AnnData, *, registered: bool = False) -> None:
    """Same matrix (values, dtype, sparse format), layers, obs, var, names and uns keys.

    ``registered``: a successful setup may add scvi-tools' two ``uns`` keys, nothing else.
    """

    def same(a, b):
        assert type(a) is type(b)
        assert a.dtype == b.dtype
        if sp.issparse(a):
            assert a.format == b.format
            a, b = a.toarray(), b.toarray()
        np.testing.assert_array_equal(a, b)

    same(before.X, after.X)
    assert set(before.layers) == set(after.layers)
    for k in before.layers:
        same(before.layers[k], after.layers[k])
    pd.testing.assert_frame_equal(before.obs, after.obs)
    pd.testing.assert_frame_equal(before.var, after.var)
    assert list(before.obs_names) == list(after.obs_names)
    assert list(before.var_names) == list(after.var_names)
    assert set(before.uns) | (SCVI_UNS if registered else set()) == set(after.uns)


def _set_labels(mapping=None, where=None, value=None):
    """Change perturbation labels: replace whole labels, or set ``value`` at rows ``where``."""

    def change(a):
        labels = a.obs["perturbation"].astype(object)
        if mapping is not None:
            labels = labels.replace(mapping)
        if where is not None:
            labels = labels.where(~where(a), value)
        a.obs["perturbation"] = labels

    return change


def _is(label):
    return lambda a: (a.obs["perturbation"].astype(str) == label).to_numpy()


def _set_obs(column, fn):
    def change(a):
        obs = a.obs.copy()
        obs[column] = fn(obs)
        a.obs = obs

    return change


def _set_x(fn):
    def change(a):
        a.X = fn(a.X)

    return change


def _set_dose(label, dose):
    def change(a):
        a.obs["dose"] = np.where(a.obs["perturbation"].astype(str) == label, dose, "1")

    return change


def _dup_names(axis):
    def change(a):
        names = list(getattr(a, f"{axis}_names"))
        names[1] = names[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            setattr(a, f"{axis}_names", names)

    return change


def _nan_at_row3(a):
    x = a.X.copy()
    x[3, 2] = np.nan
    a.X = x


# (id, change to the AnnData, setup arguments, error type, message excerpt)
SETUP_CATALOGUE = [
    ("nan", _nan_at_row3, {}, ValueError, r"non-finite values \(NaN or Inf\)"),
    (
        "inf",
        _set_x(lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x)),
        {},
        ValueError,
        "non-finite",
    ),
    (
        "nan_layer",
        lambda a: a.layers.__setitem__("expr", np.full(a.shape, np.nan)),
        {"layer": "expr"},
        ValueError,
        r"adata.layers\['expr'\] contains",
    ),
    ("missing_layer", lambda a: None, {"layer": "expr"}, KeyError, "layer='expr'"),
    ("bool_matrix", _set_x(lambda x: x > 0), {}, TypeError, "dtype bool"),
    (
        "numeric_key",
        _set_obs("perturbation", lambda o: o["perturbation"].cat.codes.astype(int)),
        {},
        TypeError,
        "is numeric",
    ),
    (
        "missing_labels",
        _set_labels(where=_is("P1"), value=None),
        {},
        ValueError,
        "cells have a missing 'perturbation' label",
    ),
    (
        "missing_key",
        lambda a: None,
        {"perturbation_key": "guide"},
        KeyError,
        "perturbation_key='guide'",
    ),
    (
        "control_absent",
        _set_labels({"ctrl": "NT"}),
        {},
        ValueError,
        "control_group='ctrl' does not occur",
    ),
    (
        "control_only",
        _set_labels(where=lambda a: np.ones(a.n_obs, bool), value="ctrl"),
        {},
        ValueError,
        "holds only the control",
    ),
    (
        "single_condition",
        _set_labels(where=lambda a: np.ones(a.n_obs, bool), value="P0"),
        {},
        ValueError,
        "does not occur",
    ),
    (
        "control_case",
        _set_labels({"ctrl": "CTRL"}),
        {},
        ValueError,
        "'CTRL'.*differs from control_group='ctrl' only by letter case",
    ),
    (
        "case_variants",
        _set_labels({"P0": "p0"}, where=_is("P1"), value="P0"),
        {},
        ValueError,
        r"differ only by letter case: \[\['P0', 'p0'\]\]",
    ),
    ("whitespace", _set_labels({"P0": "P0 "}), {}, ValueError, "surrounding whitespace"),
    ("empty_token", _set_labels({"P0+P1": "P0++P1"}), {}, ValueError, "empty token.*'P0\\+P1'"),
    ("empty_label", _set_labels({"P0": ""}), {}, ValueError, "empty 'perturbation' label"),
    ("repeated_token", _set_labels({"P0+P1": "P1+P1"}), {}, ValueError, "appears twice"),
    (
        "dose_not_numeric",
        _set_dose("P0", "high"),
        {"dosage_key": "dose"},
        ValueError,
        "does not parse as numbers",
    ),
    (
        "dose_count",
        _set_dose("P0+P1", "1+2+3"),
        {"dosage_key": "dose"},
        ValueError,
        "has 3 values but condition 'P0\\+P1' has 2",
    ),
    (
        "dose_not_finite",
        _set_dose("P0", "inf"),
        {"dosage_key": "dose"},
        ValueError,
        "is not finite",
    ),
    ("missing_dosage_key", lambda a: None, {"dosage_key": "dose"}, KeyError, "dosage_key='dose'"),
    ("duplicated_obs_names", _dup_names("obs"), {}, ValueError, "obs_names_make_unique"),
    ("duplicated_var_names", _dup_names("var"), {}, ValueError, "var_names_make_unique"),
    (
        "too_few_cells",
        _set_labels(where=lambda a: np.arange(a.n_obs) == 0, value="P9"),
        {},
        ValueError,
        "min_cells_per_condition=2",
    ),
    (
        "context_missing",
        _set_obs("line", lambda o: ["K562"] * (len(o) - 1) + [None]),
        {"context_keys": ["line"]},
        ValueError,
        r"adata.obs\['line'\] has 1 missing",
    ),
    (
        "control_with_delimiter",
        _set_labels({"ctrl": "non+targeting"}),
        {"control_group": "non+targeting"},
        ValueError,
        "contains the delimiter",
    ),
]


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [pytest.param(*entry[1:], id=entry[0]) for entry in SETUP_CATALOGUE],
)
def test_setup_catalogue(adata, change, kwargs, error, match):
    change(adata)
    before = snapshot(adata)
    kwargs = {"perturbation_key": "perturbation", "control_group": "ctrl", **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(error, match=match):
            PDAE.setup_anndata(adata, **kwargs)
    assert_unchanged(before, adata)


def test_setup_rejects_non_anndata(adata):
    with pytest.raises(TypeError, match="adata must be an AnnData, got DataFrame"):
        PDAE.setup_anndata(adata.to_df(), "perturbation", control_group="ctrl")


def test_non_negative_head_on_negative_data(adata):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    before = snapshot(adata)
    assert adata.X.min() < 0
    with pytest.raises(ValueError, match=r"output_activation='relu' can only produce"):
        PDAE(adata, output_activation="relu", **TINY)
    assert_unchanged(before, adata)


# ---------------------------------------------------------------- matrix formats that work
@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda x: np.round(np.abs(x) * 3).astype(np.int32), id="int32"),
        pytest.param(lambda x: x.astype(np.float16), id="float16"),
        pytest.param(lambda x: sp.csc_matrix(x), id="csc"),
        pytest.param(np.asfortranarray, id="fortran_order"),
    ],
)
def test_matrix_formats_train(adata, convert, recwarn):
    adata.X = convert(adata.X)
    x = adata.X
    before = snapshot(adata)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, **TRAIN)
    pred = model.predict(["P0+P1"], n_cells=5, seed=0)
    assert pred.X.dtype == np.float32
    assert np.isfinite(pred.X).all()
    assert_unchanged(before, adata, registered=True)
    assert adata.X is x  # not rewritten in place (scvi-tools would make it C-contiguous)
    if sp.issparse(adata.X):
        assert sum("CSC" in str(w.message) and ".tocsr()" in str(w.message) for w in recwarn) == 1


def test_integer_counts_warn(adata):
    adata.X = np.round(np.abs(adata.X) * 100).astype(np.int64)
    with pytest.warns(UserWarning, match="looks like raw counts"):
        PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")


@pytest.mark.parametrize("fmt", ["coo", "lil", "dia"])
def test_other_sparse_formats_are_refused(fmt):
    # AnnData itself only stores CSR/CSC; a matrix passed on directly is checked too
    x = sp.random(5, 4, density=0.5, format=fmt, random_state=0)
    with pytest.raises(ValueError, match=rf"sparse {fmt.upper()} matrix.*\.tocsr\(\)"):
        check_matrix(x)


# ---------------------------------------------------------------- model-level catalogue
MODEL_CATALOGUE = [
    ("n_cells_zero", lambda m: m.predict(["P0"], n_cells=0), ValueError, "n_cells=0"),
    ("n_cells_negative", lambda m: m.predict(["P0"], n_cells=-5), ValueError, "n_cells=-5"),
    ("empty_targets", lambda m: m.predict([]), ValueError, "perturbations is empty"),
    ("empty_target_label", lambda m: m.predict([""]), ValueError, "'' is empty"),
    (
        "unknown_perturbation",
        lambda m: m.predict(["P0+Q7"]),
        KeyError,
        r"Unknown perturbation 'Q7'",
    ),
    (
        "case_variant_target",
        lambda m: m.predict(["p0"]),
        KeyError,
        r"Closest known names: \['P0'\]",
    ),
    (
        "unknown_context",
        lambda m: m.predict(["P0"], context="liver"),
        ValueError,
        r"context='liver' is unknown; known contexts: \['all'\]",
    ),
    ("unknown_source", lambda m: m.predict(["P0"], source="P2+P9"), KeyError, "'P9'"),
    (
        "dosage_count",
        lambda m: m.predict(["P0", "P1"], dosages=["1"]),
        ValueError,
        "1 dosages for 2 perturbations",
    ),
    ("max_epochs_zero", lambda m: m.train(max_epochs=0), ValueError, "max_epochs=0"),
    ("lr_zero", lambda m: m.train(max_epochs=1, lr=0.0), ValueError, "lr=0.0"),
    ("n_sources_one", lambda m: m.train(max_epochs=1, n_sources=1), ValueError, "n_sources=1"),
    (
        "missing_checkpoint",
        lambda m: m.train(max_epochs=1, ckpt_path="nope.ckpt"),
        FileNotFoundError,
        "ckpt_path='nope.ckpt'",
    ),
    ("load_missing_dir", lambda m: PDAE.load("no/such/dir"), FileNotFoundError, "No saved model"),
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [pytest.param(*entry[1:], id=entry[0]) for entry in MODEL_CATALOGUE],
)
def test_model_catalogue(trained, call, error, match):
    before = snapshot(trained.adata)
    with pytest.raises(error, match=match):
        call(trained)
    assert_unchanged(before, trained.adata)
    assert trained.is_trained


def test_predict_before_train(adata):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    with pytest.raises(RuntimeError, match=r"not trained yet; call model.train\(\)"):
        model.predict(["P0"])


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "model"
    trained.save(path)
    return path


def _renamed(a):
    a.var_names = [*a.var_names[:-1], "GENE_X"]
    return a


def _extra_gene(a):
    x = np.hstack([a.X, a.X[:, :1]])
    return ad.AnnData(x, obs=a.obs.copy(), var=pd.DataFrame(index=[*a.var_names, "GENE_X"]))


@pytest.mark.parametrize(
    ("other_genes", "match"),
    [
        pytest.param(
            lambda a: a[:, a.var_names[::-1]].copy(), "in a different order", id="reordered"
        ),
        pytest.param(
            lambda a: a[:, a.var_names[:-2]].copy(), "misses 2 of the 10 genes", id="subset"
        ),
        pytest.param(
            lambda a: _renamed(a.copy()), r"not trained on \(e.g. \['GENE_X'\]\)", id="renamed"
        ),
        pytest.param(_extra_gene, "keep only the model's genes", id="extra"),
    ],
)
def test_load_and_query_on_other_genes(trained, saved, other_genes, match):
    other = other_genes(trained.adata)
    for key in ("_scvi_uuid", "_scvi_manager_uuid"):
        other.uns.pop(key, None)
    before = snapshot(other)
    with pytest.raises(ValueError, match=match + r".*adata\[:, PDAE.load_var_names\("):
        PDAE.load(saved, adata=other)
    assert_unchanged(before, other)
    with pytest.raises(ValueError, match=match + r".*adata\[:, model.adata.var_names\]"):
        trained.get_latent_representation(other)
    assert_unchanged(before, other)


def test_save_refuses_overwrite(trained, saved):
    files = sorted(os.listdir(saved))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        trained.save(saved)
    assert sorted(os.listdir(saved)) == files
    assert not [p for p in os.listdir(saved.parent) if p.startswith(".pdae-save-")]


# ---------------------------------------------------------------- faults in training
class _Snapshot(pl.Callback):
    """Keep a copy of the weights at the start of every step."""

    def on_train_batch_start(self, trainer, plan, batch, batch_idx):
        self.state = copy.deepcopy(plan.module.state_dict())
        self.step = trainer.global_step


def _nan_at_call(module, call: int):
    forward, calls = module.forward, [0]

    def wrapped(batch):
        out = forward(batch)
        calls[0] += 1
        if calls[0] == call:
            out.loss = out.loss * float("nan")
        return out

    module.forward = wrapped


def test_nonfinite_loss_stops_and_keeps_last_good_weights(adata):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    _nan_at_call(model.module, 4)  # 5 steps per epoch
    snap = _Snapshot()
    with pytest.raises(
        NonFiniteLossError, match=r"(?s)train loss became nan.*epoch 0, step 3"
    ) as e:
        model.train(max_epochs=3, n_conditions_per_batch=1, callbacks=[snap], **TRAIN)
    assert "Lower the learning rate" in str(e.value)
    assert "lr=0.0003" in str(e.value)
    assert "data scale" in str(e.value)
    assert "log1p" in str(e.value)
    state = model.module.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in snap.state.items())
    assert all(torch.isfinite(v).all() for v in state.values())
    # the 3 finite updates count: the model is usable, its history has the epoch so far
    assert model.is_trained
    assert len(model.history["train_loss"]) == 1
    assert np.isfinite(model.predict(["P0+P1"], n_cells=5, seed=0).X).all()


def test_nonfinite_gradient_skips_update(adata):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    weight = next(model.module.parameters())
    weight.register_hook(lambda g: g * float("inf"))
    before = copy.deepcopy(model.module.state_dict())
    with pytest.raises(NonFiniteLossError, match="gradients became non-finite"):
        model.train(max_epochs=2, **TRAIN)
    assert all(torch.equal(v, model.module.state_dict()[k]) for k, v in before.items())
    assert not model.is_trained  # no update was made
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict(["P0"])


class _SendSigint(pl.Callback):
    def __init__(self, times: int = 1):
        self.times = times

    def on_train_batch_end(self, trainer, plan, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 1:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_gracefully(adata):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.warns(UserWarning, match="interrupted during epoch 2 of 5"):
        model.train(max_epochs=5, n_conditions_per_batch=2, callbacks=[_SendSigint()], **TRAIN)
    assert signal.getsignal(signal.SIGINT) is handler
    assert model.is_trained
    assert len(model.history["train_loss"]) == 2
    assert np.isfinite(model.predict(["P0+P1"], n_cells=5, seed=0).X).all()


def test_second_ctrl_c_aborts(adata):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="aborted"):
        model.train(max_epochs=5, n_conditions_per_batch=2, callbacks=[_SendSigint(2)], **TRAIN)
    # Lightning ignores SIGINT after an interrupt; the user's handler is back
    assert signal.getsignal(signal.SIGINT) is handler
    assert model.is_trained
    assert np.isfinite(model.predict(["P0+P1"], n_cells=5, seed=0).X).all()


def test_resume_from_lightning_checkpoint(adata, tmp_path):
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    first = PDAE(adata, **TINY)
    first.train(
        max_epochs=2, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)], **TRAIN
    )
    ckpt = tmp_path / "last.ckpt"
    assert ckpt.is_file()

    class Start(pl.Callback):
        def on_train_start(self, trainer, plan):
            self.epoch = trainer.current_epoch
            self.state = copy.deepcopy(plan.module.state_dict())

    start = Start()
    resumed = PDAE(adata, **TINY)
    callbacks = [start, ModelCheckpoint(dirpath=tmp_path, save_last=True)]
    resumed.train(max_epochs=4, ckpt_path=ckpt, callbacks=callbacks, **TRAIN)
    assert start.epoch == 2
    assert resumed.trainer.current_epoch == 4
    assert resumed.history["train_loss"].index.tolist() == [2, 3]
    final = first.module.state_dict()
    assert all(torch.equal(v.cpu(), final[k].cpu()) for k, v in start.state.items())


# ---------------------------------------------------------------- persistence
def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_failed_save_leaves_previous_model(trained, tmp_path, monkeypatch):
    path = tmp_path / "model"
    trained.save(path)
    old = _files(path)

    def partial_save(self, dir_path, **kwargs):
        os.makedirs(dir_path)
        Path(dir_path, "model.pt").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(BaseModelClass, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        trained.save(path, overwrite=True)
    assert _files(path) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary directory
    monkeypatch.undo()
    assert PDAE.load(path, adata=trained.adata).perturbations == trained.perturbations


def test_failed_final_rename_restores_previous_model(trained, tmp_path, monkeypatch):
    path = tmp_path / "model"
    trained.save(path)
    old = _files(path)
    replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # moving the new model into place
            raise OSError("rename failed")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="rename failed"):
        trained.save(path, overwrite=True)
    assert _files(path) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_saved_fixture_loads_and_predicts():
    """A model saved by pdae-sc 0.1 (tests/fixtures/make_fixture.py) loads in this version."""
    expected = np.load(FIXTURE / "expected.npz")
    model = PDAE.load(FIXTURE, accelerator="cpu")
    assert model.is_trained
    assert model.perturbations == expected["perturbations"].tolist()
    np.testing.assert_allclose(
        model.get_perturbation_embedding().to_numpy(), expected["shift"], rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        model.get_latent_representation(), expected["latent"], rtol=1e-5, atol=1e-5
    )
    assert list(PDAE.load_var_names(FIXTURE)) == [f"gene_{i}" for i in range(10)]
    pred = model.predict(["P0+P2", "P1"], n_cells=7, seed=0)
    assert pred.shape == (14, 10)
    assert np.isfinite(pred.X).all()
    # and on a user's copy of the data
    adata = ad.read_h5ad(FIXTURE / "adata.h5ad")
    for key in SCVI_UNS:
        adata.uns.pop(key, None)
    assert PDAE.load(FIXTURE, adata=adata, accelerator="cpu").perturbations == ["P0", "P1", "P2"]


# ---------------------------------------------------------------- reproducibility
def _run(seed: int, **train_kwargs):
    scvi.settings.seed = seed
    adata = tiny_adata()
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **TINY)
    model.train(max_epochs=2, **TRAIN, **train_kwargs)
    return model.history, model.predict(["P0+P1", "P2"], n_cells=20, seed=0).X


def test_same_seed_same_history_and_predictions():
    try:
        (h1, p1), (h2, p2), (_, p3) = _run(0), _run(0), _run(1)
    finally:
        scvi.settings.seed = 0
    assert set(h1) == set(h2)
    for key in h1:
        pd.testing.assert_frame_equal(h1[key], h2[key], check_exact=True)
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(p1, p3)


def test_deterministic_flags_reach_the_trainer(monkeypatch):
    """The GPU recipe of docs/reliability.md: train(deterministic=True, benchmark=False)
    reaches Lightning, which turns on torch's deterministic algorithms and turns off the
    cuDNN autotuner (same-seed equality on CPU is tested above)."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        assert not torch.are_deterministic_algorithms_enabled()
        _run(0, deterministic=True, benchmark=False)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = benchmark
        scvi.settings.seed = 0
