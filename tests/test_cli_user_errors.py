"""Mistakes of the user or the machine are one line and exit status 2 (issue 23, item 13)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pdae_sc as pdae
from pdae_sc.cli import main


def _data(tmp_path, scale: float = 1.0):
    adata = pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=6, seed=0)
    adata.X = (np.asarray(adata.X) * scale).astype(np.float32)
    adata.write_h5ad(tmp_path / "data.h5ad")
    return str(tmp_path / "data.h5ad")


def _one_line(capsys, match: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    assert match in err, err


def test_training_that_diverges_is_one_line(tmp_path, capsys):
    data = _data(tmp_path, scale=1e30)  # unscaled intensities: the loss overflows
    argv = ["train", data, "--out", str(tmp_path / "m"), "--max-epochs", "1"]
    assert main(argv) == 2
    _one_line(capsys, "check the data scale")
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_accelerator_without_a_gpu_is_one_line(tmp_path, capsys):
    argv = ["train", _data(tmp_path), "--out", str(tmp_path / "m"), "--accelerator", "gpu"]
    assert main(argv) == 2
    _one_line(capsys, "gpu")
    assert not (tmp_path / "m").exists()
