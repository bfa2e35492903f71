"""The decoder option of PDAE, the gene shift start, and the post-training fit check."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scvi
import torch

import pdae_sc as pdae
from pdae_sc.model import PDAE, PoorFitWarning
from pdae_sc.model._diagnostics import check_after_training

TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}
TRAIN = {"enable_progress_bar": False, "n_sources": 32, "accelerator": "cpu"}


def _adata(**kw):
    kw = {"n_perturbations": 3, "n_genes": 12, "n_cells_per_condition": 40, "seed": 0, **kw}
    adata = pdae.data.simulate(**kw)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    return adata


def test_auto_decoder_follows_the_data():
    assert not PDAE(_adata(), **TINY).module.residual  # negative values: generative
    counts = _adata(counts=True)
    assert counts.X.min() >= 0
    assert PDAE(counts, **TINY).module.residual
    assert PDAE(counts, **TINY).init_params_["non_kwargs"]["decoder"] == "residual"
    with pytest.raises(ValueError, match="decoder='auto' chose 'generative'"):
        PDAE(_adata(), gene_shift=True, **TINY)


def test_residual_decoder_has_a_gene_shift_at_the_linear_effects():
    adata = _adata()
    model = PDAE(adata, decoder="residual", **TINY)
    assert model.module.residual
    assert model.module.gene_shift is not None
    assert model.init_params_["non_kwargs"]["decoder"] == "residual"  # saved with the model
    beta = model.module.gene_shift.weight.detach().numpy().T  # (K, genes)
    lab = adata.obs["perturbation"].astype(str).to_numpy()
    x = adata.X
    # least squares over singles and doubles: close to the single mean changes
    delta_p0 = x[lab == "P0"].mean(0) - x[lab == "ctrl"].mean(0)
    assert np.corrcoef(beta[0], delta_p0)[0, 1] > 0.9


def _two_context_cells(means: dict, n: int = 30) -> ad.AnnData:
    """One-gene means per condition in context L0, +1 in L1, spread over 6 genes, noisy."""
    rng = np.random.default_rng(0)
    labels = [c for c in means for _ in range(n)]
    base = np.array([means[c] for c in labels])
    x = np.r_[base, base + 1.0] + 0.3 * rng.normal(size=2 * len(labels))
    obs = pd.DataFrame(
        {"perturbation": labels * 2, "line": ["L0"] * len(labels) + ["L1"] * len(labels)},
        index=[f"c{i}" for i in range(2 * len(labels))],
    )
    return ad.AnnData(np.outer(x, np.linspace(0.5, 1.5, 6)).astype(np.float32), obs=obs)


@pytest.mark.parametrize("with_context", [False, True])
def test_linear_baseline_and_residual_decoder_start_share_one_fit(with_context):
    """The untrained gene shift moves control cells exactly as the ``linear`` baseline does."""
    # A+B and A+C are not the sums of their singles: a free intercept would fit differently
    means = {"ctrl": 0.0, "A": 2.0, "B": -1.0, "A+B": 3.0, "C": 0.5, "A+C": 1.0}
    adata = _two_context_cells(means)
    PDAE.setup_anndata(
        adata, "perturbation", control_group="ctrl", context_keys="line" if with_context else None
    )
    model = PDAE(adata, decoder="residual", **TINY)
    shift = model.module.gene_shift.weight.detach().numpy().T  # (K, genes)
    kw = {"context_key": "line", "context": "L1"} if with_context else {}
    pred = pdae.tl.predict_baseline(adata, ["B+C"], method="linear", n_cells=20, seed=0, **kw)
    source = adata[pred.obs["pdae_source_cell"].to_numpy()].X
    vocab = list(model.registration.vocabulary)
    expected = shift[vocab.index("B")] + shift[vocab.index("C")]
    np.testing.assert_allclose(pred.X - source, np.tile(expected, (20, 1)), atol=1e-5)


@pytest.mark.parametrize("decoder", ["residual", "multiplicative"])
def test_the_untrained_move_has_no_network_term(decoder):
    """``W`` starts at zero, so ``f(z + W (u - l)) - f(z)`` is zero before training."""
    adata = _adata(counts=True)  # non-negative: the residual move is clipped at zero
    model = PDAE(adata, decoder=decoder, **TINY)
    assert not model.module.shift.weight.any()
    x = torch.as_tensor(adata.X[:8], dtype=torch.float32)
    target = torch.zeros(model.module.gene_shift.in_features)
    target[0] = 1.0
    with torch.no_grad():
        moved = model.module.move(x, torch.zeros(8, len(target)), target)
        step = model.module.gene_shift.weight[:, 0]
    expected = (
        torch.relu(x + step) if decoder == "residual" else torch.log1p(torch.expm1(x) * step.exp())
    )
    torch.testing.assert_close(moved, expected)


@pytest.mark.parametrize("with_context", [False, True])
def test_the_untrained_model_predicts_the_linear_baseline(with_context):
    """Before training, ``predict`` from the control cells is the ``linear`` baseline."""
    means = {"ctrl": 0.0, "A": 2.0, "B": -1.0, "A+B": 3.0, "C": 0.5, "A+C": 1.0}
    adata = _two_context_cells(means)  # values of both signs: no clipping
    PDAE.setup_anndata(
        adata, "perturbation", control_group="ctrl", context_keys="line" if with_context else None
    )
    model = PDAE(adata, decoder="residual", **TINY)
    model.is_trained_ = True  # query the initial weights
    kw = {"context": "L1"} if with_context else {}
    pred = model.predict(["B+C"], n_cells=20, source="ctrl", method="pdae", seed=0, **kw)
    kw = {"context_key": "line", "context": "L1"} if with_context else {}
    base = pdae.tl.predict_baseline(adata, ["B+C"], method="linear", n_cells=20, seed=0, **kw)
    shift = np.asarray(base.X - adata[base.obs["pdae_source_cell"].to_numpy()].X)[0]
    source = adata[pred.obs["pdae_source_cell"].to_numpy()].X
    np.testing.assert_allclose(pred.X - source, np.tile(shift, (20, 1)), atol=1e-5)


def test_untrained_residual_model_moves_a_condition_to_itself_unchanged():
    adata = _adata()
    model = PDAE(adata, decoder="residual", **TINY)
    model.is_trained_ = True  # query the initial weights
    pred = model.predict(["P0"], n_cells=40, source="P0", seed=0)
    src = adata[pred.obs["pdae_source_cell"].to_numpy()].X
    np.testing.assert_allclose(pred.X, np.maximum(src, 0) if src.min() >= 0 else src, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"decoder": "vae"}, ValueError, "decoder='vae'"),
        ({"decoder": "generative", "gene_shift": True}, ValueError, "gene_shift=True needs"),
        ({"decoder": "multiplicative"}, ValueError, "log1p-normalised counts"),
    ],
)
def test_decoder_argument_errors(kwargs, error, match):
    adata = _adata()  # simulate() without counts has negative values
    with pytest.raises(error, match=match):
        PDAE(adata, **TINY, **kwargs)


def test_multiplicative_decoder_keeps_zeros():
    adata = pdae.data.simulate(
        n_perturbations=3, n_genes=20, n_cells_per_condition=30, counts=True, seed=0
    )
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, decoder="multiplicative", **TINY)
    model.train(max_epochs=2, check_fit=False, **TRAIN)
    pred = model.predict(["P0+P1"], n_cells=60, source="ctrl", seed=0)
    src = adata[pred.obs["pdae_source_cell"].to_numpy()].X
    assert (pred.X[src == 0] == 0).all()
    assert (pred.X >= 0).all()


def test_generative_decoder_is_the_papers():
    adata = _adata()
    model = PDAE(adata, decoder="generative", **TINY)
    assert not model.module.residual
    assert model.module.gene_shift is None


def test_check_fit_and_poor_fit_warning():
    adata = _adata(shift_scale=3.0)
    scvi.settings.seed = 0
    model = PDAE(adata, decoder="generative", **TINY)
    with pytest.warns(PoorFitWarning, match="further from the measured cells"):
        model.train(max_epochs=1, lr=1e-6, **TRAIN)  # learns nothing
    scvi.settings.seed = 0
    good = PDAE(adata, decoder="residual", **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoorFitWarning)
        good.train(max_epochs=30, **TRAIN)
    table = good.check_fit(n_conditions=4, n_cells=40)
    assert len(table) == 4
    assert table["pdae_better"].all()
    with pytest.raises(ValueError, match="n_cells=1"):
        good.check_fit(n_cells=1)


def test_saved_generative_model_loads_generative(tmp_path):
    adata = _adata()
    model = PDAE(adata, decoder="generative", **TINY)
    model.train(max_epochs=1, check_fit=False, **TRAIN)
    model.save(tmp_path / "m", save_anndata=True)
    loaded = PDAE.load(tmp_path / "m")  # on the GPU where there is one, as scvi-tools does
    assert not loaded.module.residual
    torch.testing.assert_close(
        loaded.module.shift_matrix.detach().cpu(), model.module.shift_matrix.detach().cpu()
    )


def test_model_saved_before_the_decoder_option_loads_generative():
    from pathlib import Path

    fixture = Path(__file__).parents[1] / "fixtures" / "pdae_v0_1"
    model = PDAE.load(fixture, accelerator="cpu")
    assert not model.module.residual
    assert model.module.gene_shift is None
    assert model.init_params_["non_kwargs"]["decoder"] == "generative"
    assert PDAE(model.adata, decoder="residual", **TINY).module.residual


def test_plan_kwargs_lr_is_used_and_conflicts_are_refused():
    adata = _adata()
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, check_fit=False, plan_kwargs={"lr": 1e-4}, **TRAIN)
    assert model.trainer.lightning_module.lr == 1e-4
    with pytest.raises(ValueError, match="disagree"):
        model.train(max_epochs=1, lr=1e-2, plan_kwargs={"lr": 1e-4}, **TRAIN)


def test_untrained_model_loads_untrained(tmp_path):
    adata = _adata()
    PDAE(adata, **TINY).save(tmp_path / "m", save_anndata=True)
    assert not PDAE.load(tmp_path / "m").is_trained_


# --------------------------------------------------------------- the default source set
def _fit_table(ctrl: float, every: float):
    return pd.DataFrame(
        {
            "condition": ["P0", "P1"],
            "context": ["", ""],
            "n_cells": [40, 40],
            "energy_distance_pdae": [ctrl, ctrl],
            "energy_distance_pdae_all": [every, every],
            "energy_distance_control": [1.0, 1.0],
            "pdae_better": [True, True],
        }
    )


def test_check_fit_moves_control_cells_and_every_other_cell():
    adata = _adata(counts=True)
    scvi.settings.seed = 0
    model = PDAE(adata, **TINY)
    model.train(max_epochs=5, **TRAIN)
    table = model.check_fit(n_conditions=16)  # what train() ran
    assert np.isfinite(table["energy_distance_pdae_all"]).all()
    # the two moves differ (other sources), and train() applied its rule to them
    every, ctrl = table["energy_distance_pdae_all"], table["energy_distance_pdae"]
    assert not np.allclose(every, ctrl)
    clearly = 4 * (every < ctrl).sum() >= 3 * len(table) and every.mean() < ctrl.mean()
    assert model.default_source_ == ("all" if clearly else "ctrl")
    best = table[["energy_distance_pdae", "energy_distance_pdae_all"]].min(axis=1)
    assert (table["pdae_better"] == (best < table["energy_distance_control"])).all()


def test_default_source_follows_the_check_and_is_saved(monkeypatch, tmp_path):
    adata = _adata()
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, check_fit=False, held_out_conditions=0, **TRAIN)
    assert model.default_source_ == "all"
    assert len(set(model.predict(["P0+P1"], n_cells=60, seed=0).obs["pdae_source"])) > 1
    monkeypatch.setattr(model, "check_fit", lambda **kw: _fit_table(ctrl=0.1, every=0.3))
    check_after_training(model)
    assert model.default_source_ == "ctrl"
    assert set(model.predict(["P0+P1"], n_cells=60, seed=0).obs["pdae_source"]) == {"ctrl"}
    model.save(tmp_path / "m")
    assert PDAE.load(tmp_path / "m", adata).default_source_ == "ctrl"
    monkeypatch.setattr(model, "check_fit", lambda **kw: _fit_table(ctrl=0.3, every=0.1))
    check_after_training(model)
    assert model.default_source_ == "all"
    # an explicit source still wins over the default
    assert set(model.predict(["P0"], n_cells=20, source="ctrl", seed=0).obs["pdae_source"]) == {
        "ctrl"
    }


def test_every_cell_must_be_closer_on_three_quarters_of_the_conditions(monkeypatch):
    adata = _adata()
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, check_fit=False, **TRAIN)
    table = pd.concat([_fit_table(ctrl=0.3, every=0.1), _fit_table(ctrl=0.2, every=0.25)])
    monkeypatch.setattr(model, "check_fit", lambda **kw: table)  # better mean, 2 of 4
    check_after_training(model)
    assert model.default_source_ == "ctrl"
    table = pd.concat([_fit_table(ctrl=0.3, every=0.1)] * 2 + [_fit_table(ctrl=0.2, every=0.25)])
    check_after_training(model)  # 4 of 6: still not three quarters
    assert model.default_source_ == "ctrl"
    table.iloc[4, table.columns.get_loc("energy_distance_pdae_all")] = 0.1  # 5 of 6
    check_after_training(model)
    assert model.default_source_ == "all"


def test_poor_fit_warning_judges_the_chosen_source_set(monkeypatch):
    adata = _adata()
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, check_fit=False, **TRAIN)
    table = _fit_table(ctrl=1.5, every=0.2)  # control sources lose, every cell wins
    table["pdae_better"] = True
    monkeypatch.setattr(model, "check_fit", lambda **kw: table)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoorFitWarning)
        check_after_training(model)
    monkeypatch.setattr(model, "check_fit", lambda **kw: _fit_table(ctrl=1.2, every=1.5))
    with pytest.warns(PoorFitWarning, match="on 2 of 2 conditions"):
        check_after_training(model)
    assert model.default_source_ == "ctrl"


def test_default_control_source_falls_back_to_every_cell_of_a_context_without_controls():
    adata = pdae.data.simulate(n_perturbations=3, n_genes=12, n_cells_per_condition=40, seed=0)
    rng = np.random.default_rng(0)
    line = np.where(rng.random(adata.n_obs) < 0.5, "A", "B").astype(object)
    line[(adata.obs["perturbation"] == "ctrl").to_numpy()] = "A"  # no controls in B
    adata.obs["line"] = line
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl", context_keys=["line"])
    model = PDAE(adata, **TINY)
    model.train(max_epochs=1, check_fit=False, **TRAIN)
    model.default_source_ = "ctrl"
    pred = model.predict(["P0+P1"], n_cells=40, context="B", seed=0)
    assert "ctrl" not in set(pred.obs["pdae_source"])
    src_line = adata.obs["line"].to_numpy()[
        adata.obs_names.get_indexer(pred.obs["pdae_source_cell"])
    ]
    assert set(src_line) == {"B"}
    assert set(model.predict(["P0"], n_cells=20, context="A", seed=0).obs["pdae_source"]) == {
        "ctrl"
    }
    with pytest.raises(ValueError, match="No source cells for source='ctrl'"):
        model.predict(["P0"], n_cells=20, context="B", source="ctrl", seed=0)
