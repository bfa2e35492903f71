"""Files written into a folder the user names: never through a link, never over a file pdae-sc
did not write, never into a model directory (issue 23, items 3, 5 and 6)."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import pytest

import pdae_sc as pdae
from pdae_sc.cli import main


@pytest.fixture(scope="module")
def screen():
    adata = pdae.data.simulate(
        n_perturbations=2, n_genes=8, n_cells_per_condition=10, counts=True, seed=0
    )
    adata.X = adata.layers.pop("counts")
    pdae.pp.normalize_counts(adata)
    pred = pdae.tl.predict_baseline(adata, ["P0+P1"], method="additive", n_cells=5, seed=0)
    return adata, pred


def _cell_eval(screen, out_dir, **kwargs):
    adata, pred = screen
    return pdae.tl.to_cell_eval(pred, adata, out_dir, **kwargs)


@pytest.mark.parametrize("name", ["pred.h5ad", "real.h5ad"])
def test_to_cell_eval_never_writes_through_a_link(screen, tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "ce"
    out.mkdir()
    os.symlink(victim, out / name)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="is a symbolic link"):
            _cell_eval(screen, out, overwrite=overwrite)
    assert victim.read_text() == "precious"
    assert sorted(os.listdir(out)) == [name]  # nothing written, not even the other file


@pytest.mark.parametrize("name", ["pred.h5ad", "real.h5ad"])
def test_to_cell_eval_keeps_existing_files_without_overwrite(screen, tmp_path, name):
    out = tmp_path / "ce"
    out.mkdir()
    (out / name).write_bytes(b"my own results")
    with pytest.raises(FileExistsError, match=r"already exists; pass overwrite=True"):
        _cell_eval(screen, out)
    with pytest.raises(FileExistsError, match=r"was not written by pdae_sc.tl.to_cell_eval"):
        _cell_eval(screen, out, overwrite=True)
    assert (out / name).read_bytes() == b"my own results"
    assert sorted(os.listdir(out)) == [name]


def test_to_cell_eval_overwrites_its_own_files(screen, tmp_path):
    files = _cell_eval(screen, tmp_path / "ce")
    files = _cell_eval(screen, tmp_path / "ce", overwrite=True)
    assert ad.read_h5ad(files["pred"]).n_obs > 0
    assert sorted(os.listdir(tmp_path / "ce")) == ["pred.h5ad", "real.h5ad"]  # no temp files


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "data.h5ad"
    pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=6, seed=0).write_h5ad(
        data
    )
    assert main(["train", str(data), "--out", str(tmp / "model"), "--max-epochs", "1"]) == 0
    return tmp / "model", data


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("name", ["adata.h5ad", "model.pt", "new.h5ad"])
def test_predict_never_writes_into_the_model_directory(cli_model, tmp_path, capsys, name):
    model_dir, _ = cli_model
    before = _snapshot(model_dir)
    argv = ["predict", str(model_dir), "--conditions", "P0", "--n-cells", "3"]
    assert main([*argv, "--out", str(model_dir / name), "--overwrite"]) == 2
    assert "is inside the model directory" in capsys.readouterr().err
    assert _snapshot(model_dir) == before
    out = tmp_path / "pred.h5ad"  # the model still predicts from its own data
    assert main([*argv, "--out", str(out)]) == 0
    assert ad.read_h5ad(out).n_obs == 3


def test_predict_does_not_replace_its_input_or_write_through_a_link(cli_model, tmp_path, capsys):
    model_dir, data = cli_model
    copy = tmp_path / "data.h5ad"
    copy.write_bytes(data.read_bytes())
    argv = ["predict", str(model_dir), "--conditions", "P0", "--n-cells", "3"]
    assert main([*argv, "--adata", str(copy), "--out", str(copy), "--overwrite"]) == 2
    assert "is the --adata input" in capsys.readouterr().err
    assert copy.read_bytes() == data.read_bytes()
    link = tmp_path / "link.h5ad"
    os.symlink(copy, link)
    assert main([*argv, "--out", str(link), "--overwrite"]) == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert copy.read_bytes() == data.read_bytes()
