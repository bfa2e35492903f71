"""Tests of pl.perturbation_embedding, pl.history, tl.joint_embedding and pl.embedding."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import pdae_sc as pdae
from pdae_sc import pl


@pytest.fixture
def shifts():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        rng.normal(size=(4, 5)),
        index=pd.Index([f"P{i}" for i in range(4)], name="perturbation"),
        columns=[f"latent_{i}" for i in range(5)],
    )


def label_xy(ax, text):
    (ann,) = [t for t in ax.texts if t.get_text() == text]
    return np.asarray(ann.xy, dtype=float)


def test_perturbation_embedding_pca(shifts):
    before = shifts.copy()
    ax = pl.perturbation_embedding(shifts, combinations=["P0+P1", "P2+ctrl+P3"])
    assert isinstance(ax, Axes)
    assert len(ax.patches) == 4 + 2
    assert {t.get_text() for t in ax.texts} == {"P0", "P1", "P2", "P3", "P0+P1", "P2+ctrl+P3"}
    # The projection is linear: a combination's arrow is the sum of its parts' arrows.
    np.testing.assert_allclose(label_xy(ax, "P0+P1"), label_xy(ax, "P0") + label_xy(ax, "P1"))
    np.testing.assert_allclose(label_xy(ax, "P2+ctrl+P3"), label_xy(ax, "P2") + label_xy(ax, "P3"))
    assert ax.get_xlabel().startswith("PC1")
    assert ax.get_ylabel().startswith("PC2")
    pd.testing.assert_frame_equal(shifts, before)


def test_perturbation_embedding_dims_and_ax(shifts):
    _, ax = plt.subplots()
    out = pl.perturbation_embedding(shifts, dims=["latent_3", 1], max_labels=2, ax=ax)
    assert out is ax
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("latent_3", "latent_1")
    assert len(ax.texts) == 2
    for text in ax.texts:
        row = shifts.loc[text.get_text()]
        np.testing.assert_allclose(text.xy, (row["latent_3"], row["latent_1"]))


def test_perturbation_embedding_errors(shifts):
    with pytest.raises(KeyError, match="P7"):
        pl.perturbation_embedding(shifts, combinations=["P0+P7"])
    with pytest.raises(ValueError, match="two"):
        pl.perturbation_embedding(shifts, dims=["latent_0"])
    with pytest.raises(KeyError, match="latent_9"):
        pl.perturbation_embedding(shifts, dims=["latent_0", "latent_9"])
    with pytest.raises(TypeError, match="get_perturbation_embedding"):
        pl.perturbation_embedding(np.zeros((3, 2)))


def per_epoch(name, values):
    return pd.DataFrame({name: values}, index=pd.Index(range(len(values)), name="epoch"))


@pytest.fixture
def hist():
    return {
        "train_loss": per_epoch("train_loss", [3.0, 2.0, 1.5, 1.2]),
        "validation_loss": per_epoch("validation_loss", [3.2, 2.4, 1.9, 1.8]),
        "energy_train": per_epoch("energy_train", [1.0, 0.5, -0.1, -0.2]),
    }


def test_history_default_keys(hist):
    ax = pl.history(hist)
    assert isinstance(ax, Axes)
    assert [line.get_label() for line in ax.lines] == ["train_loss", "validation_loss"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [3.0, 2.0, 1.5, 1.2])
    assert ax.get_xlabel() == "epoch"
    assert ax.get_yscale() == "linear"
    assert set(hist) == {"train_loss", "validation_loss", "energy_train"}


def test_history_keys_log_and_ax(hist):
    _, ax = plt.subplots()
    assert pl.history(hist, keys="train_loss", log=True, ax=ax) is ax
    assert ax.get_yscale() == "log"
    ax = pl.history(hist, keys=["energy_train"], log=True)
    assert ax.get_yscale() == "symlog"  # a value is negative
    with pytest.raises(KeyError, match="available"):
        pl.history(hist, keys=["nope"])
    with pytest.raises(ValueError, match="keys="):
        pl.history({"energy_train": hist["energy_train"]})


@pytest.fixture(scope="module")
def data():
    adata = pdae.data.simulate(n_perturbations=3, n_genes=20, n_cells_per_condition=20, seed=0)
    pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=30)
    return adata, pred


def test_joint_embedding_pca_and_embedding(data):
    adata, pred = data
    x, obs, uns = adata.X.copy(), adata.obs.copy(), set(adata.uns)
    joint = pdae.tl.joint_embedding(pred, adata, basis="pca", n_pcs=50, key_added="source")
    assert joint.n_obs == adata.n_obs + pred.n_obs
    assert joint.obsm["X_pca"].shape == (joint.n_obs, adata.n_vars - 1)  # n_pcs clipped
    assert "X_umap" not in joint.obsm
    assert joint.obs["source"].value_counts().to_dict() == {"observed": 140, "additive": 30}
    np.testing.assert_array_equal(adata.X, x)
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert set(adata.uns) == uns
    assert not adata.obsm.keys() - {"z_basal", "z"}

    _, ax = plt.subplots()
    assert pl.embedding(joint, color="source", basis="pca", ax=ax) is ax
    assert len(ax.collections) > 0
    axes = pl.embedding(joint, color=["source", "perturbation"], basis="X_pca")
    assert isinstance(axes, list)
    assert all(isinstance(a, Axes) for a in axes)
    fig = pl.embedding(joint, color=["source", "perturbation"], basis="X_pca", return_fig=True)
    assert isinstance(fig, Figure)
    assert len(fig.axes) >= 2
    assert pl.embedding(joint, color="source", basis="pca", ax=ax, return_fig=True) is ax.figure
    with pytest.raises(KeyError, match="X_umap"):
        pl.embedding(joint, color="source")
    with pytest.raises(ValueError, match="one color"):
        pl.embedding(joint, color=["source", "perturbation"], basis="pca", ax=ax)


def test_joint_embedding_umap(data):
    adata, pred = data
    joint = pdae.tl.joint_embedding(pred, adata, n_pcs=5, seed=1)
    assert joint.obsm["X_umap"].shape == (joint.n_obs, 2)
    assert "connectivities" in joint.obsp
    assert "X_umap" not in adata.obsm
    assert "X_umap" not in pred.obsm
    ax = pl.embedding(joint, color="origin")
    assert isinstance(ax, Axes)
    assert ax.get_xlabel() == "UMAP1"
    with pytest.raises(ValueError, match="basis"):
        pdae.tl.joint_embedding(pred, adata, basis="tsne")
    with pytest.raises(TypeError, match="random_state"):
        pdae.tl.joint_embedding(pred, adata, random_state=0)


def test_pl_joint_embedding_is_a_deprecated_alias_with_the_old_order(data):
    adata, pred = data
    with pytest.warns(FutureWarning, match=r"pdae\.tl\.joint_embedding\(adata_pred, adata"):
        old = pl.joint_embedding(adata, pred, basis="pca", n_pcs=5, random_state=3)
    new = pdae.tl.joint_embedding(pred, adata, basis="pca", n_pcs=5, seed=3)
    assert "joint_embedding" not in pl.__all__
    assert list(old.obs_names) == list(new.obs_names)
    assert old.obs["origin"].iloc[0] == "observed"
    assert old.obs["origin"].iloc[-1] == "additive"
    np.testing.assert_allclose(old.obsm["X_pca"], new.obsm["X_pca"])
