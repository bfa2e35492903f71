"""Untrusted model directories: loading runs no code, saving writes and deletes only its own
files (issue 23, items 1, 2 and 4; threat model in docs/reliability.md)."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import pdae_sc as pdae
from pdae_sc.cli import main
from pdae_sc.model import PDAE

FIXTURES = Path(__file__).parents[1] / "fixtures"
TINY = {"n_latent": 4, "n_hidden": (16,), "n_noise": 4}


@pytest.fixture(scope="module")
def model():
    adata = pdae.data.simulate(n_perturbations=2, n_genes=6, n_cells_per_condition=6, seed=0)
    PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    m = PDAE(adata, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.train(max_epochs=1, enable_progress_bar=False, n_sources=8, check_fit=False)
    return m


class _RunsCode:
    """Pickles as a call of ``os.system``: loading it would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(model, tmp_path: Path, where: str) -> tuple[Path, Path]:
    """A saved model whose model.pt runs ``touch marker`` when unpickled (at ``where``)."""
    path, marker = tmp_path / "shared_model", tmp_path / "PWNED"
    model.save(path, save_anndata=True)
    saved = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
    if where == "attr_dict":
        saved["attr_dict"]["history_"]["x"] = _RunsCode(marker)
    elif where == "registry":
        saved["attr_dict"]["registry_"]["setup_args"]["layer"] = _RunsCode(marker)
    else:
        saved["var_names"] = _RunsCode(marker)
    torch.save(saved, path / "model.pt")
    return path, marker


@pytest.mark.parametrize("where", ["attr_dict", "registry", "var_names"])
@pytest.mark.parametrize("entry", ["load", "load_var_names", "cli_predict", "overwrite"])
def test_crafted_model_file_runs_no_code(model, tmp_path, where, entry):
    path, marker = _crafted(model, tmp_path, where)
    before = (path / "model.pt").read_bytes()
    if entry == "cli_predict":
        out = tmp_path / "pred.h5ad"
        assert main(["predict", str(path), "--conditions", "P0", "--out", str(out)]) == 2
        assert not out.exists()
    elif entry == "overwrite":  # a crafted model.pt is not "a model save wrote" either
        with pytest.raises(FileExistsError, match="is not a saved pdae-sc model"):
            model.save(path, overwrite=True)
    else:
        with pytest.raises(ValueError, match=r"not a pdae-sc model file.*posix\.system"):
            getattr(PDAE, entry)(path)
    assert not marker.exists()
    assert (path / "model.pt").read_bytes() == before


@pytest.mark.parametrize("name", ["pdae_v0_1", "pdae_format_2"])
def test_models_saved_by_earlier_versions_load_and_reproduce(name):
    """0.1.0 and the main branch before the safe loader: same latents, shifts and cells."""
    fixture = FIXTURES / name
    expected = np.load(fixture / "expected.npz")
    loaded = PDAE.load(fixture, accelerator="cpu")
    np.testing.assert_allclose(loaded.get_latent_representation(), expected["latent"], atol=1e-6)
    np.testing.assert_allclose(
        loaded.get_perturbation_embedding().to_numpy(), expected["shift"], atol=1e-6
    )
    assert loaded.perturbations == expected["perturbations"].tolist()
    assert loaded.is_trained_
    assert len(loaded.history["train_loss"]) == 2
    if "pred" in expected:  # make_fixture.py's PRED_TARGETS and PRED_KWARGS
        pred = loaded.predict(["P0+P2", "P1"], n_cells=6, seed=0, source="ctrl").X
        np.testing.assert_allclose(np.asarray(pred), expected["pred"], atol=1e-5)


@pytest.mark.parametrize("prefix", ["/tmp/elsewhere_", "../../x_", "..", "sub/x_", "a\\b"])
@pytest.mark.parametrize("call", ["save", "load", "load_var_names"])
def test_prefix_cannot_leave_the_directory(model, tmp_path, prefix, call):
    path = tmp_path / "deep" / "er" / "model"
    if call == "save":
        with pytest.raises(ValueError, match=r"prefix=.* is a path"):
            model.save(path, prefix=prefix)
        assert not path.exists()
        assert sorted(os.listdir(tmp_path)) == []
    else:
        model.save(path)
        with pytest.raises(ValueError, match=r"prefix=.* is a path"):
            getattr(PDAE, call)(path, prefix=prefix)


def test_a_plain_prefix_still_works(model, tmp_path):
    model.save(tmp_path / "m", prefix="run1_", save_anndata=True)
    assert sorted(os.listdir(tmp_path / "m")) == ["run1_adata.h5ad", "run1_model.pt"]
    model.save(tmp_path / "m", prefix="run1_", save_anndata=True, overwrite=True)
    assert PDAE.load(tmp_path / "m", prefix="run1_").is_trained_


def _scvi_model_dir(path: Path) -> None:
    import scvi

    adata = pdae.data.simulate(n_perturbations=2, n_genes=6, n_cells_per_condition=6, seed=0)
    scvi.model.SCVI.setup_anndata(adata)
    scvi.model.SCVI(adata, n_latent=2, n_hidden=4).save(path, save_anndata=True)


def _own_torch_model(path: Path) -> None:
    path.mkdir()
    torch.save(torch.nn.Linear(3, 2).state_dict(), path / "model.pt")


def _model_pt_subdirectory(path: Path) -> None:
    (path / "model.pt").mkdir(parents=True)
    (path / "model.pt" / "weights.bin").write_bytes(b"precious")


def _model_pt_link(path: Path) -> None:
    path.mkdir()
    (path.parent / "elsewhere.pt").write_bytes(b"precious")
    os.symlink(path.parent / "elsewhere.pt", path / "model.pt")


def _foreign_adata(path: Path, model) -> None:
    model.save(path)  # a PDAE model.pt, beside someone else's adata.h5ad
    pdae.data.simulate(n_perturbations=2, n_genes=3, seed=0).write_h5ad(path / "adata.h5ad")


@pytest.mark.parametrize(
    "make", [_scvi_model_dir, _own_torch_model, _model_pt_subdirectory, _model_pt_link, "adata"]
)
def test_overwrite_refuses_what_save_did_not_write(model, tmp_path, make):
    target = tmp_path / "target"
    _foreign_adata(target, model) if make == "adata" else make(target)
    before = {
        os.path.relpath(os.path.join(d, f), tmp_path): os.path.islink(os.path.join(d, f))
        or open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(tmp_path)
        for f in files
    }
    with pytest.raises(FileExistsError, match="is not a saved pdae-sc model"):
        model.save(target, overwrite=True)
    after = {
        os.path.relpath(os.path.join(d, f), tmp_path): os.path.islink(os.path.join(d, f))
        or open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(tmp_path)
        for f in files
    }
    assert after == before
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".pdae-save-")]


def test_cli_train_overwrite_refuses_a_scvi_model(tmp_path, capsys):
    data = tmp_path / "data.h5ad"
    pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=5, seed=0).write_h5ad(
        data
    )
    _scvi_model_dir(tmp_path / "scvi_model")
    argv = ["train", str(data), "--out", str(tmp_path / "scvi_model"), "--overwrite"]
    assert main(argv) == 2
    assert "is not a saved pdae-sc model" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "scvi_model")) == ["adata.h5ad", "model.pt"]


def test_load_refuses_a_download_and_other_arguments(model, tmp_path):
    model.save(tmp_path / "m", save_anndata=True)
    shutil.rmtree(tmp_path / "m")
    (tmp_path / "m").mkdir()
    with pytest.raises(TypeError, match=r"unsupported arguments \['backup_url'\]"):
        PDAE.load(tmp_path / "m", backup_url="http://example.invalid/model.pt")


def test_load_restores_only_saved_attributes(model, tmp_path):
    """attr_dict entries that are not ``name_`` attributes (e.g. ``module``) are ignored."""
    path = tmp_path / "m"
    model.save(path, save_anndata=True)
    saved = torch.load(path / "model.pt", map_location="cpu", weights_only=False)
    saved["attr_dict"]["module"] = {"not": "a module"}
    saved["attr_dict"]["_labels_cache"] = [1, 2]
    torch.save(saved, path / "model.pt")
    loaded = PDAE.load(path)
    assert isinstance(loaded.module, torch.nn.Module)
    assert loaded.predict(["P0"], n_cells=3, seed=0).n_obs == 3
