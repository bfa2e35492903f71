"""pdae.pp holds the preprocessing helpers; their 0.1 names in pdae.data warn for one release."""

from __future__ import annotations

import warnings

import pytest

import pdae_sc as pdae

MOVED = [
    "normalize_counts",
    "standardize_perturbations",
    "assign_guides",
    "add_guide_assignment",
    "CONTROL_VALUES",
    "GUIDE_PATTERN",
]


@pytest.mark.parametrize("name", MOVED)
def test_moved_to_pp_with_a_deprecated_alias(name):
    new = getattr(pdae.pp, name)
    assert name in pdae.pp.__all__
    assert name not in pdae.data.__all__
    with pytest.warns(FutureWarning, match=rf"pdae\.pp\.{name}"):
        old = getattr(pdae.data, name)
    assert old is new


def test_data_keeps_datasets_simulation_and_splits_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in pdae.data.__all__:
            getattr(pdae.data, name)
    with pytest.raises(AttributeError, match="no attribute 'normalise_counts'"):
        pdae.data.normalise_counts


def test_old_import_path_still_works():
    with pytest.warns(FutureWarning, match="moved to pdae.pp.normalize_counts"):
        from pdae_sc.data import normalize_counts
    adata = pdae.data.simulate(n_perturbations=2, n_cells_per_condition=5, counts=True, seed=0)
    adata.X = adata.layers.pop("counts")
    normalize_counts(adata)
    assert "log1p" in adata.uns
    assert "counts" in adata.layers
