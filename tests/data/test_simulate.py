import anndata as ad
import numpy as np
import pytest
from scipy import stats

import pdae_sc as pdae
from pdae_sc.data import encode_conditions, simulate
from pdae_sc.data._simulate import _apply_mixing


def _equal(a, b):
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.obsm["z"], b.obsm["z"])
    assert a.obs.equals(b.obs)


def test_shapes_and_annotations():
    adata = simulate(n_perturbations=4, n_latent=3, n_genes=20, n_cells_per_condition=7)
    n_cond = 1 + 4 + 6
    assert adata.shape == (n_cond * 7, 20)
    assert adata.X.dtype == np.float32
    assert adata.obs_names[0] == "cell_0"
    assert adata.var_names[-1] == "gene_19"
    assert adata.obs["perturbation"].cat.categories.tolist()[:3] == ["ctrl", "P0", "P1"]
    assert (adata.obs["perturbation"].value_counts() == 7).all()
    assert "dose" not in adata.obs
    assert adata.obs["n_perturbations"].tolist()[::7] == [0] + [1] * 4 + [2] * 6
    truth = adata.uns["simulation"]
    assert truth["W"].shape == (3, 4)
    assert truth["label_matrix"].shape == (n_cond, 4)
    assert truth["perturbations"] == ["P0", "P1", "P2", "P3"]
    assert adata.obsm["z_basal"].shape == adata.obsm["z"].shape == (adata.n_obs, 3)
    # obsm z is the basal latent shifted by W l.
    enc = encode_conditions(
        adata.obs["perturbation"], control_group="ctrl", vocabulary=truth["perturbations"]
    )
    shift = enc.labels[enc.codes] @ truth["W"].T
    np.testing.assert_allclose(adata.obsm["z"], adata.obsm["z_basal"] + shift)
    assert pdae.data.simulate is simulate


def test_keywords_and_control_always_included():
    assert simulate(n_perturbations=3, conditions="singles", n_cells_per_condition=2).n_obs == 8
    assert simulate(n_perturbations=3, conditions="doubles", n_cells_per_condition=2).n_obs == 8
    assert simulate(n_perturbations=3, conditions="control", n_cells_per_condition=2).n_obs == 2


def test_reproducible_and_seed_dependent():
    kw = dict(n_perturbations=3, n_genes=10, n_cells_per_condition=5, counts=True)
    _equal(simulate(seed=3, **kw), simulate(seed=3, **kw))
    assert not np.array_equal(simulate(seed=3, **kw).X, simulate(seed=4, **kw).X)


def test_mixing_is_f_of_z():
    adata = simulate(n_perturbations=3, n_noise=0, n_hidden=(16, 8), n_cells_per_condition=20)
    out = _apply_mixing(adata.uns["simulation"]["mixing"], adata.obsm["z"])
    np.testing.assert_allclose(adata.X, out, rtol=1e-5, atol=1e-5)
    noisy = simulate(n_perturbations=3, n_noise=2, n_hidden=(16, 8), n_cells_per_condition=20)
    np.testing.assert_array_equal(noisy.obsm["z"], adata.obsm["z"])  # same latents
    assert not np.allclose(noisy.X, adata.X)  # noise input changes x


def test_conditions_differ_in_mean():
    adata = simulate(n_perturbations=2, n_cells_per_condition=300, shift_scale=2.0)
    means = [adata[adata.obs["perturbation"] == c].X.mean(0) for c in ["ctrl", "P0", "P0+P1"]]
    assert np.linalg.norm(means[0] - means[1]) > 0.5
    assert np.linalg.norm(means[1] - means[2]) > 0.5


@pytest.mark.parametrize("basal", ["gaussian", "laplace", "uniform"])
def test_basal_scale(basal):
    adata = simulate(
        n_perturbations=1,
        conditions="control",
        n_cells_per_condition=20000,
        basal=basal,
        sigma_z=2.0,
    )
    np.testing.assert_allclose(adata.obsm["z_basal"].std(0), 2.0, rtol=0.05)


def test_basal_laws_differ_in_kurtosis():
    kurt = {
        b: stats.kurtosis(
            simulate(conditions="control", n_cells_per_condition=20000, basal=b)
            .obsm["z_basal"]
            .ravel()
        )
        for b in ["gaussian", "laplace", "uniform"]
    }
    assert kurt["laplace"] > 2
    assert abs(kurt["gaussian"]) < 0.3
    assert kurt["uniform"] < -1


def test_counts_layer():
    adata = simulate(
        n_perturbations=2, n_genes=30, n_cells_per_condition=50, counts=True, library_size=500
    )
    counts = adata.layers["counts"]
    assert np.issubdtype(counts.dtype, np.integer)
    assert counts.min() >= 0
    assert 200 < np.median(counts.sum(1)) < 1000
    expected = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(adata.X, expected, rtol=1e-5)
    assert adata.X.dtype == np.float32


def test_explicit_conditions_with_doses(tmp_path):
    adata = simulate(
        n_perturbations=2,
        conditions=["P0", "P0", "P0", "P1+P0"],
        dosages=[0.5, None, "2", "1+0.5"],
        n_cells_per_condition=4,
    )
    assert adata.n_obs == 5 * 4  # control prepended
    assert adata.obs["dose"].unique().tolist() == ["0", "0.5", "1", "2", "1+0.5"]
    labels = adata.uns["simulation"]["label_matrix"]
    np.testing.assert_array_equal(labels, [[0, 0], [0.5, 0], [1, 0], [2, 0], [0.5, 1]])
    enc = encode_conditions(
        adata.obs["perturbation"],
        dosages=adata.obs["dose"],
        control_group="ctrl",
        vocabulary=["P0", "P1"],
    )
    np.testing.assert_array_equal(enc.labels, labels)
    adata.write_h5ad(tmp_path / "sim.h5ad")  # uns is serialisable
    back = ad.read_h5ad(tmp_path / "sim.h5ad")
    np.testing.assert_array_equal(back.uns["simulation"]["W"], adata.uns["simulation"]["W"])


def test_fast():
    adata = simulate(n_perturbations=10, n_cells_per_condition=1100)
    assert adata.n_obs > 60000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(basal="cauchy"), "basal='cauchy'.*gaussian"),
        (dict(n_perturbations=0), "n_perturbations=0.*>= 1"),
        (dict(n_perturbations=1), "doubles.*n_perturbations >= 2"),
        (dict(conditions="singles+triples"), "triples.*control"),
        (dict(conditions=["P0", "P1"], dosages=[1]), "dosages.*1 entries.*2"),
        (dict(conditions="singles", dosages=[1]), "explicit list"),
        (dict(conditions=["P0", "P99"]), "P99"),
        (dict(conditions=["P0", "P0"]), "more than once"),
        (dict(sigma_z=-1), "sigma_z.*-1"),
        (dict(dispersion=0), "dispersion"),
        (dict(n_hidden=(8, 0)), "n_hidden"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(**kwargs)
