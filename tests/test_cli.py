"""The pdae-sc command line."""

from __future__ import annotations

import anndata as ad

import pdae_sc as pdae
from pdae_sc.cli import main


def test_demo_writes_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-epochs", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for method in ("pdae", "additive", "control", "oracle_half"):
        assert method in printed
    for name in ("demo_predictions.h5ad", "demo_metrics.csv", "demo_summary.md", "demo.png"):
        assert (out / name).stat().st_size > 0
    combined = ad.read_h5ad(out / "demo_predictions.h5ad")
    assert set(combined.obs["origin"]) == {"observed", "pdae"}


def test_train_and_predict_commands(tmp_path, capsys):
    data = tmp_path / "data.h5ad"
    pdae.data.simulate(n_perturbations=3, n_genes=10, n_cells_per_condition=15, seed=0).write_h5ad(
        data
    )
    model_dir = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model_dir), "--max-epochs", "1"]) == 0
    pred_path = tmp_path / "pred.h5ad"
    assert (
        main(
            [
                "predict",
                str(model_dir),
                "--conditions",
                "P0+P1,P2",
                "--n-cells",
                "7",
                "--out",
                str(pred_path),
            ]
        )
        == 0
    )
    pred = ad.read_h5ad(pred_path)
    assert pred.n_obs == 14 and pred.n_vars == 10
    # a bad condition is a readable error, not a traceback
    assert (
        main(["predict", str(model_dir), "--conditions", "P9", "--out", str(tmp_path / "x.h5ad")])
        == 2
    )
    assert "Unknown perturbation" in capsys.readouterr().err
