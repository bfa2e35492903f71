"""normalize_counts (counts -> log1p in one call) and its inverse for count-scale predictions."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

import pdae_sc as pdae
from pdae_sc.pp._counts import normalize_counts, size_factors, to_counts


def _dense(m) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def _counts(as_sparse: bool = False, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    x = rng.negative_binomial(2, 0.3, size=(40, 15)).astype(np.int64)
    x[0] = 0  # an empty cell
    return ad.AnnData(sp.csr_matrix(x) if as_sparse else x)


@pytest.mark.parametrize("as_sparse", [False, True])
def test_matches_scanpy_and_keeps_counts(as_sparse):
    adata = _counts(as_sparse)
    raw = adata.X.copy()
    ref = adata.copy()
    ref.X = ref.X.astype(np.float32)
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    assert normalize_counts(adata) is None
    np.testing.assert_array_equal(_dense(adata.layers["counts"]), _dense(raw))
    np.testing.assert_allclose(_dense(adata.X), _dense(ref.X), rtol=1e-6)
    assert adata.X.dtype == np.float32
    assert sp.issparse(adata.X) == as_sparse
    assert "log1p" in adata.uns
    assert list(adata.obs.columns) == []


def test_counts_from_existing_layer_and_copy():
    adata = _counts()
    adata.layers["umi"] = adata.X.copy()
    adata.X = np.zeros(adata.shape, dtype=np.float32)  # e.g. scaled data; ignored
    out = normalize_counts(adata, counts_layer="umi", target_sum=100, copy=True)
    assert np.all(adata.X == 0)  # the original is untouched
    totals = np.expm1(out.X).sum(axis=1)
    np.testing.assert_allclose(totals[1:], 100, rtol=1e-4)
    assert set(out.layers) == {"umi"}


def test_setup_accepts_the_result():
    adata = pdae.data.simulate(
        n_perturbations=2, n_genes=10, n_cells_per_condition=10, counts=True, seed=0
    )
    adata.X = adata.layers.pop("counts")
    normalize_counts(adata)
    pdae.model.PDAE.setup_anndata(
        adata, "perturbation", control_group="ctrl", counts_layer="counts"
    )


def test_errors():
    with pytest.raises(TypeError, match="AnnData"):
        normalize_counts(np.ones((2, 2)))
    neg = _counts()
    neg.X[1, 1] = -1
    with pytest.raises(ValueError, match="negative"):
        normalize_counts(neg)
    with pytest.raises(ValueError, match="target_sum"):
        normalize_counts(_counts(), target_sum=0)
    done = _counts()
    normalize_counts(done, counts_layer="umi")
    with pytest.raises(ValueError, match="normalised already"):
        normalize_counts(done)  # X is log1p now and no 'counts' layer: refuse
    frac = _counts()
    frac.X = frac.X * 0.5
    with pytest.warns(UserWarning, match="non-integer"):
        normalize_counts(frac)


def test_backed_is_refused(tmp_path):
    _counts().write_h5ad(tmp_path / "c.h5ad")
    backed = ad.read_h5ad(tmp_path / "c.h5ad", backed="r")
    with pytest.raises(ValueError, match="to_memory"):
        normalize_counts(backed)


def test_inverse_recovers_counts_even_after_gene_selection():
    adata = _counts()
    normalize_counts(adata)
    genes = np.arange(0, 15, 2)  # a gene subset, as after highly-variable gene selection
    x, counts = np.asarray(adata.X)[:, genes], np.asarray(adata.layers["counts"])[:, genes]
    factors = size_factors(x, counts)
    totals = np.asarray(adata.layers["counts"]).sum(axis=1)
    ok = counts.sum(axis=1) > 0
    np.testing.assert_allclose(factors[ok], totals[ok] / 1e4, rtol=1e-5)
    assert np.isnan(factors[~ok]).all()
    np.testing.assert_array_equal(to_counts(x[ok], factors[ok]), counts[ok])
