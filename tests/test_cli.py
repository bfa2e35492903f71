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
    assert pred.n_obs == 14
    assert pred.n_vars == 10
    # a bad condition is a readable error, not a traceback
    assert (
        main(["predict", str(model_dir), "--conditions", "P9", "--out", str(tmp_path / "x.h5ad")])
        == 2
    )
    assert "Unknown perturbation" in capsys.readouterr().err


def test_predict_from_new_cells(tmp_path, capsys):
    data = tmp_path / "data.h5ad"
    adata = pdae.data.simulate(n_perturbations=3, n_genes=10, n_cells_per_condition=15, seed=0)
    adata.write_h5ad(data)
    new = adata[adata.obs["perturbation"] == "ctrl", adata.var_names[::-1]].copy()
    del new.obs["perturbation"]  # unlabelled cells of a new kind, genes in another order
    new_path = tmp_path / "new.h5ad"
    new.write_h5ad(new_path)
    model_dir = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model_dir), "--max-epochs", "1"]) == 0
    out = tmp_path / "pred.h5ad"
    argv = ["predict", str(model_dir), "--conditions", "P0+P1,P2", "--new-cells", str(new_path)]
    assert main([*argv, "--out", str(out)]) == 0
    assert "moved from the cells of" in capsys.readouterr().out
    pred = ad.read_h5ad(out)
    assert pred.n_obs == 2 * new.n_obs  # as many cells as new ones per condition, each once
    assert set(pred.obs["pdae_source_cell"]) == set(new.obs_names)
    assert pred.uns["pdae"]["new_cells"]
    assert len(pred.uns["pdae"]["basal_range"]) == 1
    assert main([*argv, "--out", str(new_path)]) == 2  # never over its input
    assert "is the --new-cells input" in capsys.readouterr().err
    assert ad.read_h5ad(new_path).n_obs == new.n_obs


def _screen_h5mu(path):
    """A small .h5mu screen: log-normalised RNA with counts, and guide UMI counts."""
    import mudata as md
    import numpy as np
    import pandas as pd

    rna = pdae.data.simulate(
        n_perturbations=3, n_genes=12, n_cells_per_condition=15, counts=True, seed=0
    )
    truth = rna.obs.pop("perturbation").astype(str)
    rna.X = rna.layers.pop("counts").astype(np.float32)
    pdae.pp.normalize_counts(rna)
    guides = ["P0_g1", "P1_g1", "P2_g1", "non-targeting_1"]
    umis = np.array([[9 * (g.split("_")[0] in t.split("+")) for g in guides] for t in truth])
    umis[:, 3] = 9 * (truth == "ctrl")
    gdo = ad.AnnData(umis.astype(np.float32), obs=rna.obs[[]], var=pd.DataFrame(index=guides))
    md.MuData({"rna": rna, "gdo": gdo}).write_h5mu(path)
    return truth


def test_train_on_h5mu_with_guides_and_predict_counts(tmp_path, capsys):
    data = tmp_path / "screen.h5mu"
    _screen_h5mu(data)
    model_dir = tmp_path / "model"
    argv = ["train", str(data), "--out", str(model_dir), "--max-epochs", "1"]
    argv += ["--guide-modality", "gdo", "--counts-layer", "counts"]
    assert main(argv) == 0, capsys.readouterr().err
    model = pdae.model.PDAE.load(model_dir)
    assert model.perturbations == ["P0", "P1", "P2"]
    out = tmp_path / "pred.h5ad"
    argv = ["predict", str(model_dir), "--conditions", "P0+P1", "--n-cells", "5"]
    assert main([*argv, "--scale", "counts", "--out", str(out)]) == 0
    pred = ad.read_h5ad(out)
    assert pred.n_obs == 5
    assert "counts" in pred.layers


def test_train_input_errors_are_readable(tmp_path, capsys):
    data = tmp_path / "data.h5ad"
    pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=5, seed=0).write_h5ad(
        data
    )
    out = str(tmp_path / "model")
    assert main(["train", str(data), "--out", out, "--guide-modality", "gdo"]) == 2
    assert "--guide-modality needs a MuData" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.h5ad"), "--out", out]) == 2
    assert "No input file" in capsys.readouterr().err
    mu_path = tmp_path / "screen.h5mu"
    _screen_h5mu(mu_path)
    argv = ["train", str(mu_path), "--out", out, "--guide-modality", "gdo"]
    assert main([*argv, "--perturbation-key", "perturbation"]) == 2
    assert "not both" in capsys.readouterr().err


def _one_line_error(capsys, match: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    assert match in err, err


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    data = tmp_path / "data.h5ad"
    pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=5, seed=0).write_h5ad(
        data
    )
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    out = str(tmp_path / "model")
    assert main(["train", str(csv), "--out", out]) == 2
    _one_line_error(capsys, "is not an .h5ad or .h5mu file")
    assert main(["train", str(tmp_path), "--out", out]) == 2
    _one_line_error(capsys, "is a directory")
    garbage = tmp_path / "garbage.h5ad"
    garbage.write_bytes(b"not hdf5")
    assert main(["train", str(garbage), "--out", out]) == 2
    _one_line_error(capsys, "Cannot read")
    # --overwrite never replaces what is not a saved model (checked before training)
    notes = tmp_path / "res"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    assert main(["train", str(data), "--out", str(notes), "--overwrite"]) == 2
    _one_line_error(capsys, "is not a saved pdae-sc model")
    assert (notes / "notes.txt").read_text() == "keep me"
    assert main(["train", str(data), "--out", str(data), "--overwrite"]) == 2
    _one_line_error(capsys, "is not a directory")
    assert data.is_file()
    assert not (tmp_path / "model").exists()


def test_predict_out_and_model_errors(tmp_path, capsys):
    data = tmp_path / "data.h5ad"
    adata = pdae.data.simulate(n_perturbations=2, n_genes=5, n_cells_per_condition=6, seed=0)
    adata.write_h5ad(data)
    model_dir = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model_dir), "--max-epochs", "1"]) == 0
    capsys.readouterr()
    argv = ["predict", str(model_dir), "--conditions", "P0", "--n-cells", "3"]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "is a directory")
    existing = tmp_path / "x.h5ad"
    existing.write_bytes(b"old")
    assert main([*argv, "--out", str(existing)]) == 2
    _one_line_error(capsys, "already exists; pass --overwrite")
    assert existing.read_bytes() == b"old"
    # --overwrite replaces only a file that predict wrote
    assert main([*argv, "--out", str(existing), "--overwrite"]) == 2
    _one_line_error(capsys, "was not written by pdae-sc predict")
    assert existing.read_bytes() == b"old"
    existing.unlink()
    assert main([*argv, "--out", str(existing)]) == 0
    assert main([*argv, "--out", str(existing), "--overwrite"]) == 0
    assert ad.read_h5ad(existing).n_obs == 3
    # a model saved without its AnnData: say what to pass, and --adata works
    bare = tmp_path / "bare"
    pdae.model.PDAE.load(model_dir).save(bare)
    capsys.readouterr()
    assert (
        main(["predict", str(bare), "--conditions", "P0", "--out", str(tmp_path / "y.h5ad")]) == 2
    )
    _one_line_error(capsys, "--adata DATA.h5ad")
    argv = ["predict", str(bare), "--conditions", "P0", "--adata", str(data)]
    assert main([*argv, "--n-cells", "2", "--out", str(tmp_path / "y.h5ad")]) == 0
