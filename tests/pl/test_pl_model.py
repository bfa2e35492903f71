"""pl.history and pl.perturbation_embedding on a real (briefly trained) PDAE."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

import pdae_sc as pdae
from pdae_sc import pl


def test_plots_of_a_trained_model(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    adata = pdae.data.simulate(n_perturbations=3, n_genes=20, n_cells_per_condition=20, seed=0)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(16,))
    model.train(max_epochs=2, enable_progress_bar=False, n_sources=16)
    w_before = model.get_perturbation_embedding()
    n_figs = len(plt.get_fignums())
    try:
        ax = pl.history(model)
        assert isinstance(ax, Axes)
        assert [line.get_label() for line in ax.lines] == ["train_loss"]
        assert len(ax.lines[0].get_xdata()) == 2

        ax = pl.history(model, keys=["energy_train", "reconstruction_train"], log=True)
        assert len(ax.lines) == 2

        ax = pl.perturbation_embedding(model, combinations=["P0+P1"])
        assert isinstance(ax, Axes)
        assert len(ax.patches) == 3 + 1
        np.testing.assert_array_equal(model.get_perturbation_embedding(), w_before)
        assert len(plt.get_fignums()) == n_figs + 3
    finally:
        plt.close("all")
