"""Real single-cell inputs end to end: MuData with guides, label conventions, contexts, sparse
and backed matrices, raw counts."""

from __future__ import annotations

import logging
import tracemalloc
import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scvi

import pdae_sc as pdae
from pdae_sc.model import PDAE

# mudata 0.3 announces a change of MuData.update(); not ours to act on
pytestmark = [
    pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Cannot join columns with the same name:UserWarning"),
]

SMALL = {"n_latent": 4, "n_hidden": (16,), "n_noise": 2}
FIT = {"max_epochs": 1, "enable_progress_bar": False, "n_sources": 16}
GUIDES = ["P0_g1", "P0_g2", "P1_sgRNA1", "P2_guide1", "non-targeting_1"]
GUIDE_OF = {"P0": [0, 1], "P1": [2], "P2": [3]}


def _screen(seed: int = 0) -> tuple[md.MuData, np.ndarray]:
    """RNA (log1p + counts layer) and guide UMI counts; 6 cells unassigned, 3 multiplets."""
    sim = pdae.data.simulate(
        n_perturbations=3, n_latent=4, n_genes=20, n_cells_per_condition=20, counts=True, seed=seed
    )
    truth = sim.obs["perturbation"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    umi = rng.poisson(0.2, size=(sim.n_obs, len(GUIDES)))  # ambient guide reads, below 5
    for i, label in enumerate(truth):
        targets = [] if label == "ctrl" else label.split("+")
        if not targets:
            umi[i, 4] += 20
        for gene in targets:
            umi[i, rng.choice(GUIDE_OF[gene])] += 10 + rng.integers(10)
    odd = rng.choice(sim.n_obs, size=9, replace=False)
    umi[odd[:6]] = rng.poisson(0.2, size=(6, len(GUIDES)))  # no guide detected
    umi[odd[6:], :4] += 15  # three genes targeted: multiplets
    truth = truth.astype(object)
    truth[odd[:6]], truth[odd[6:]] = "unassigned", "multiplet"
    cells = pd.DataFrame(index=sim.obs_names.copy())
    rna = ad.AnnData(sim.X, obs=cells.copy(), var=sim.var.copy(), layers=dict(sim.layers))
    gdo = ad.AnnData(
        sp.csr_matrix(umi.astype(np.float32)), obs=cells, var=pd.DataFrame(index=GUIDES)
    )
    return md.MuData({"rna": rna, "gdo": gdo}), truth


# ---------------------------------------------------------------------------- MuData
def test_mudata_with_guides_end_to_end(tmp_path, caplog):
    mu = pytest.importorskip("muon")
    mdata, truth = _screen()
    mdata.write_h5mu(tmp_path / "screen.h5mu")
    mdata = mu.read_h5mu(tmp_path / "screen.h5mu")  # muon's reader
    x_before = mdata["rna"].X.copy()

    with caplog.at_level(logging.INFO, logger="pdae_sc"):
        train = PDAE.setup_mudata(
            mdata, rna="rna", guide_modality="gdo", min_counts=5, counts_layer="counts"
        )
    assert "6 unassigned, 3 multiplets, 0 missing" in caplog.text
    assert "131 of 140 cells" in caplog.text
    # the user's MuData keeps every cell, labelled by the documented rule
    assert mdata["rna"].n_obs == 140
    assert train.n_obs == 131
    np.testing.assert_array_equal(mdata["rna"].obs["perturbation"].astype(str), truth)
    assert mdata["rna"].obs["perturbation_assigned"].sum() == 131
    np.testing.assert_array_equal(mdata["rna"].X, x_before)
    assert mdata.uns["pdae_setup"]["modality"] == "rna"

    model = PDAE(mdata, **SMALL)  # the MuData itself
    assert model.adata is train
    model.train(**FIT)
    pred = model.predict(["P0+P1+P2"], n_cells=12, seed=0, scale="counts")
    assert isinstance(pred, ad.AnnData)
    assert pred.shape == (12, 20)
    assert set(pred.obs["pdae_source_cell"]) <= set(train.obs_names)

    for pull in (None, False):  # mudata's default now, and the default of mudata 0.4
        with md.set_options(pull_on_update=pull), warnings.catch_warnings():
            warnings.simplefilter("error")  # shared gene names are expected: no warning
            pdae.data.add_predictions_to_mudata(mdata, pred, key_added="pdae", overwrite=True)
        assert mdata["pdae"].n_obs == 12
        assert mdata.n_obs == 140 + 12
    with pytest.raises(ValueError, match="overwrite=True"):
        pdae.data.add_predictions_to_mudata(mdata, pred, key_added="pdae")
    pdae.data.add_predictions_to_mudata(mdata, pred, key_added="again")  # names taken: renamed
    assert pred.obs_names[0] == "P0+P1+P2_0_0"
    assert mdata["again"].obs_names[0] == "again:P0+P1+P2_0_0"
    mdata.write_h5mu(tmp_path / "with_pred.h5mu")
    back = mu.read_h5mu(tmp_path / "with_pred.h5mu")
    assert back["pdae"].n_obs == 12
    assert "pdae_setup" in back.uns


def test_mudata_with_label_column(tmp_path):
    mdata, truth = _screen()
    keep = ~np.isin(truth, ["unassigned", "multiplet"])
    mdata = mdata[keep].copy()
    mdata.obs["condition"] = truth[keep]  # labels only at the MuData level
    train = PDAE.setup_mudata(mdata, perturbation_key="condition", context_keys=None)
    assert train is mdata["rna"]  # every cell labelled: no copy
    assert mdata["rna"].obs["condition"].tolist() == list(truth[keep])
    model = PDAE(mdata, **SMALL)
    model.train(**FIT)
    assert model.predict(["P0+P1"], n_cells=5, seed=0).n_obs == 5


def test_backed_mudata(tmp_path):
    mdata, _ = _screen()
    mdata.write_h5mu(tmp_path / "screen.h5mu")
    backed = md.read_h5mu(tmp_path / "screen.h5mu", backed=True)
    assert backed["rna"].isbacked
    train = PDAE.setup_mudata(backed, guide_modality="gdo")
    # labelled cells, read into memory
    assert train.n_obs == 131
    assert not train.isbacked
    model = PDAE(backed, **SMALL)
    model.train(**FIT)
    assert model.predict(["P0"], n_cells=3, seed=0).shape == (3, 20)


def test_mudata_errors():
    mdata, _ = _screen()
    with pytest.raises(ValueError, match="exactly one"):
        PDAE.setup_mudata(mdata)
    with pytest.raises(ValueError, match="exactly one"):
        PDAE.setup_mudata(mdata, perturbation_key="p", guide_modality="gdo")
    with pytest.raises(KeyError, match="rna='RNA'"):
        PDAE.setup_mudata(mdata, rna="RNA", guide_modality="gdo")
    with pytest.raises(KeyError, match="perturbation_key='condition'"):
        PDAE.setup_mudata(mdata, perturbation_key="condition")
    with pytest.raises(ValueError, match="guide_modality="):
        PDAE.setup_mudata(mdata, perturbation_key="c", guide_kwargs={"min_fraction": 0.5})
    with pytest.raises(ValueError, match="No cell"):
        PDAE.setup_mudata(mdata, guide_modality="gdo", min_counts=1000)
    with pytest.raises(ValueError, match="setup_mudata"):
        PDAE(mdata)  # not set up
    with pytest.raises(TypeError, match="setup_mudata"):
        PDAE.setup_anndata(mdata, "perturbation", control_group="ctrl")
    PDAE.setup_mudata(mdata, guide_modality="gdo")
    mdata.uns["pdae_setup"]["adata_uuid"] = "from-another-session"
    with pytest.raises(ValueError, match="again"):
        PDAE(mdata)


# ---------------------------------------------------------------------------- conventions
def _in_convention(label: str, convention: str) -> str:
    genes = [] if label == "ctrl" else label.split("+")
    if convention == "gears":
        return "ctrl" if not genes else "+".join(genes) if len(genes) > 1 else f"{genes[0]}+ctrl"
    if convention == "scperturb":
        return "_".join(genes) or "control"
    if convention == "pertpy":
        return "+".join(genes) or "control"
    if convention == "guides":
        return "+".join(f"{g}_guide{i + 1}" for i, g in enumerate(genes)) or "non-targeting"
    return label  # cpa: plain labels, doses in a column


@pytest.mark.parametrize("convention", ["gears", "cpa", "scperturb", "pertpy", "guides"])
def test_label_conventions_end_to_end(convention):
    sim = pdae.data.simulate(
        n_perturbations=3, n_latent=4, n_genes=10, n_cells_per_condition=10, seed=0
    )
    truth = sim.obs.pop("perturbation").astype(str)
    sim.obs["raw"] = [_in_convention(t, convention) for t in truth]
    dose = None
    if convention == "cpa":
        sim.obs["raw_dose"] = ["+".join(["1.0"] * (t.count("+") + 1)) for t in truth]
        dose = "raw_dose"
    report = pdae.pp.standardize_perturbations(
        sim,
        "raw",
        convention="auto" if convention == "guides" else convention,
        dosage_key=dose,
    )
    assert set(report["standardized"]) == set(truth)
    assert sim.obs["perturbation"].astype(str).tolist() == truth.tolist()
    PDAE.setup_anndata(
        sim,
        "perturbation",
        control_group="ctrl",
        dosage_key="perturbation_dose" if dose else None,
    )
    model = PDAE(sim, **SMALL)
    model.train(**FIT)
    pred = model.predict(["P0+P1+P2"], n_cells=4, seed=0)
    assert pred.obs["perturbation"].tolist() == ["P0+P1+P2"] * 4


# ---------------------------------------------------------------------------- contexts
def _two_contexts(n_cells: int, seed: int = 0):
    """Contexts A and B, where B's basal state is A's shifted by a hidden perturbation P3
    (dose 2); P0 was measured in A only. Returns the training data and the held-out truth."""
    conds = ["ctrl", "P0", "P1", "P2", "P0+P1", "P3", "P1+P3", "P2+P3", "P0+P3"]
    doses = [None, None, None, None, None, "2", "1+2", "1+2", "1+2"]
    sim = pdae.data.simulate(
        n_perturbations=4,
        n_latent=4,
        n_genes=20,
        n_cells_per_condition=n_cells,
        conditions=conds,
        dosages=doses,
        seed=seed,
    )
    label = sim.obs.pop("perturbation").astype(str)
    sim.obs.pop("dose")
    sim.obs["cell_line"] = np.where(label.str.contains("P3"), "B", "A")
    sim.obs["perturbation"] = [
        "+".join(t for t in lab.split("+") if t != "P3") or "ctrl" for lab in label
    ]
    held = ((sim.obs["cell_line"] == "B") & (sim.obs["perturbation"] == "P0")).to_numpy()
    return sim[~held].copy(), sim[held].copy(), sim


def test_context_transfer_is_reported_and_uses_target_context():
    train, _, _ = _two_contexts(n_cells=12)
    PDAE.setup_anndata(train, "perturbation", control_group="ctrl", context_keys="cell_line")
    model = PDAE(train, **SMALL)
    model.train(**FIT)
    table = model.check_extrapolation(["P0", "P1", "P0+P2"], context="B")
    assert table["in_span"].all()
    assert table["seen"].tolist() == [True, True, False]
    assert table["seen_in_context"].tolist() == [False, True, False]
    assert table["status"].tolist() == [
        "seen in another context",
        "seen in training",
        "in span, in range",
    ]
    assert table["n_cells_in_context"].tolist() == [0, 12, 0]
    assert (table["n_source_cells"] == 36).all()
    assert "seen_in_context" not in model.check_extrapolation(["P0"]).columns
    assert model.check_extrapolation(["P0"], context="A")["status"].item() == "seen in training"

    pred = model.predict(["P0"], context="B", n_cells=20, seed=0)
    assert set(pred.obs["cell_line"]) == {"B"}
    assert set(train.obs.loc[pred.obs["pdae_source_cell"].astype(str), "cell_line"]) == {"B"}
    rec = pred.uns["pdae"]["extrapolation"].set_index("target")
    assert rec.loc["P0", "status"] == "seen in another context"
    with pytest.raises(ValueError, match="context='C'"):
        model.check_extrapolation(["P0"], context="C")


@pytest.mark.slow
def test_context_transfer_beats_wrong_context_and_control():
    """P0 predicted in context B from B's cells is closer to the held-out truth than P0 cells
    of context A (the shift without the context) and B's control cells (no shift)."""
    train, truth, full = _two_contexts(n_cells=60)
    scvi.settings.seed = 0
    PDAE.setup_anndata(train, "perturbation", control_group="ctrl", context_keys="cell_line")
    model = PDAE(train, n_latent=4, n_hidden=(32,), n_noise=4)
    model.train(max_epochs=30, enable_progress_bar=False, n_sources=64, n_conditions_per_batch=4)
    pred = model.predict(["P0"], context="B", n_cells=300, seed=0).X
    obs = full.obs
    a_p0 = full[(obs["cell_line"] == "A") & (obs["perturbation"] == "P0")].X
    b_ctrl = full[(obs["cell_line"] == "B") & (obs["perturbation"] == "ctrl")].X
    ed = pdae.tl.energy_distance
    d_pred, d_a, d_ctrl = ed(pred, truth.X), ed(a_p0, truth.X), ed(b_ctrl, truth.X)
    assert d_pred < 0.7 * min(d_a, d_ctrl), (d_pred, d_a, d_ctrl)


# ---------------------------------------------------------------------------- sparse, backed
def _nonneg(seed: int = 1) -> ad.AnnData:
    sim = pdae.data.simulate(
        n_perturbations=3, n_latent=4, n_genes=20, n_cells_per_condition=20, seed=seed
    )
    sim.X = np.clip(sim.X, 0, None).astype(np.float32)
    del sim.obsm["z"], sim.obsm["z_basal"]
    return sim


def _fit_predict(adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
    scvi.settings.seed = 0
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    model = PDAE(adata, **SMALL)
    model.train(**FIT)
    pred = model.predict(["P0+P1", "P2"], n_cells=30, seed=0, batch_size=7)
    return pred.X, model.get_latent_representation(batch_size=11)


def test_dense_csr_and_backed_give_the_same_model(tmp_path):
    dense = _nonneg()
    csr = dense.copy()
    csr.X = sp.csr_matrix(csr.X)
    csr.write_h5ad(tmp_path / "csr.h5ad")
    dense.write_h5ad(tmp_path / "dense.h5ad")
    ref_pred, ref_latent = _fit_predict(dense)
    for adata in (
        csr,
        ad.read_h5ad(tmp_path / "csr.h5ad", backed="r"),
        ad.read_h5ad(tmp_path / "dense.h5ad", backed="r"),
    ):
        pred, latent = _fit_predict(adata)
        np.testing.assert_allclose(pred, ref_pred, atol=1e-5)
        np.testing.assert_allclose(latent, ref_latent, atol=1e-5)
        if adata.isbacked:
            adata.file.close()


def _write_sparse(path, n_cells: int, n_genes: int = 1000, density: float = 0.1) -> int:
    rng = np.random.default_rng(n_cells)
    x = sp.random(n_cells, n_genes, density=density, format="csr", random_state=rng)
    x.data = np.log1p(1 + 10 * x.data).astype(np.float32)
    labels = np.array(["ctrl", "A", "B", "A+B"])[np.arange(n_cells) % 4]
    obs = pd.DataFrame({"perturbation": pd.Categorical(labels)})
    obs.index = [f"c{i}" for i in range(n_cells)]
    ad.AnnData(x.astype(np.float32), obs=obs).write_h5ad(path)
    return x.data.nbytes + x.indices.nbytes + x.indptr.nbytes


def _peak_bytes(adata: ad.AnnData) -> int:
    """Peak Python/numpy allocation of setup + train (3 steps) + predict (256 cells)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        model = PDAE(adata, **SMALL)
        # on the CPU: on a GPU, train copies the matrix onto the device by default
        # (data_device="auto"), which this bound on host memory is not about
        model.train(
            **FIT,
            accelerator="cpu",
            limit_train_batches=3,
            logger=False,
            enable_checkpointing=False,
        )
        model.predict(["A+B"], n_cells=256, seed=0, batch_size=64)
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_cells(tmp_path, monkeypatch):
    """4x the cells adds far less than a copy of the matrix: it is never densified or copied.

    Backed and in-memory CSR (read before measuring). The bound, 256 bytes per added cell
    (a few integer indices per cell), is below the CSR size of a cell here (~800 bytes) and
    far below its dense size (4,000 bytes). The setup scan reads chunks of a fixed size, made
    small here so that both data sizes span several chunks.
    """
    monkeypatch.setattr("pdae_sc.data._validation._CHUNK_ELEMENTS", 2**18)
    n = 3000
    _write_sparse(tmp_path / "warm.h5ad", 400)
    _peak_bytes(ad.read_h5ad(tmp_path / "warm.h5ad", backed="r"))  # imports and caches
    peaks = {True: [], False: []}
    for n_cells in (n, 4 * n):
        path = tmp_path / f"x{n_cells}.h5ad"
        csr_bytes = _write_sparse(path, n_cells)
        for backed in (True, False):
            adata = ad.read_h5ad(path, backed="r" if backed else None)
            peaks[backed].append(_peak_bytes(adata))
    assert csr_bytes / (4 * n) > 700
    for backed, (small, large) in peaks.items():
        per_cell = (large - small) / (3 * n)
        assert per_cell < 256, f"backed={backed}: peak grows by {per_cell:.0f} bytes per cell"


# ---------------------------------------------------------------------------- counts
def test_counts_in_and_out():
    sim = pdae.data.simulate(
        n_perturbations=3, n_latent=4, n_genes=20, n_cells_per_condition=20, counts=True, seed=2
    )
    sim.X = sim.layers.pop("counts")
    pdae.pp.normalize_counts(sim)  # the one call from counts to log1p
    PDAE.setup_anndata(sim, "perturbation", control_group="ctrl", counts_layer="counts")
    model = PDAE(sim, **SMALL)
    model.train(**FIT)
    pred = model.predict(["P0+P1"], n_cells=25, seed=0, scale="counts")
    counts = pred.layers["counts"]
    assert sp.issparse(counts)
    assert counts.shape == pred.shape
    values = counts.toarray()
    assert (values >= 0).all()
    assert np.array_equal(values, np.rint(values))
    src = pred.obs["pdae_source_cell"].astype(str)
    library = np.asarray(sim[src].layers["counts"].sum(axis=1)).ravel()
    factors = pred.obs["pdae_size_factor"].to_numpy()
    np.testing.assert_allclose(factors, library / 1e4, rtol=1e-4)
    # each count is drawn around its expected value (model/_counts_scale.py): the totals
    # of the genes follow the expected ones
    expected = np.clip(np.expm1(pred.X.astype(np.float64)), 0, None) * factors[:, None]
    np.testing.assert_allclose(values.sum(), expected.sum(), rtol=0.2)
    assert np.corrcoef(values.sum(axis=0), expected.sum(axis=0))[0, 1] > 0.9
    np.testing.assert_array_equal(
        model.predict(["P0+P1"], n_cells=25, seed=0).X, pred.X
    )  # X stays log1p


def test_counts_errors(small_adata):
    PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = PDAE(small_adata, **SMALL)
    model.train(**FIT)
    with pytest.raises(ValueError, match="counts_layer"):
        model.predict(["P0"], scale="counts")
    with pytest.raises(ValueError, match="scale='log'"):
        model.predict(["P0"], scale="log")
    with pytest.raises(KeyError, match="counts_layer='counts'"):
        PDAE.setup_anndata(
            small_adata, "perturbation", control_group="ctrl", counts_layer="counts"
        )
    small_adata.layers["counts"] = small_adata.X.copy()  # has negative values
    with pytest.raises(ValueError, match="negative"):
        PDAE.setup_anndata(
            small_adata, "perturbation", control_group="ctrl", counts_layer="counts"
        )
