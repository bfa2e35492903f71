"""Data-parallel training (Lightning DDP) with 2 CPU processes over gloo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import pdae_sc as pdae

TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available on this platform",
)

# strategy="ddp" launches the script once more per extra device, so it runs as a script.
SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    import scvi
    import torch
    from lightning.pytorch import Callback

    import pdae_sc as pdae


    class RecordDraws(Callback):
        def __init__(self):
            self.labels = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.labels.append(batch["label_anchor"].cpu().numpy().copy())


    def main(out, strategy):
        scvi.settings.seed = 0
        adata = pdae.data.simulate(
            n_perturbations=4, n_latent=4, n_genes=20, n_cells_per_condition=30, seed=1
        )
        pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(32,), n_noise=4)
        record = RecordDraws()
        model.train(
            max_epochs=3,
            accelerator="cpu",
            devices=2,
            strategy=strategy,
            enable_progress_bar=False,
            n_conditions_per_batch=4,
            n_cells_per_condition=4,
            n_sources=32,
            callbacks=[record],
        )
        trainer = model.trainer
        params = torch.cat([p.detach().flatten() for p in model.module.parameters()])
        np.savez(
            f"{out}/rank{trainer.global_rank}.npz",
            labels=np.stack(record.labels),
            params=params.numpy(),
            world_size=trainer.world_size,
            trained=model.is_trained_,
        )
        if trainer.is_global_zero:
            model.save(f"{out}/model", overwrite=True)


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
    """
)


def _small():
    adata = pdae.data.simulate(
        n_perturbations=4, n_latent=4, n_genes=20, n_cells_per_condition=30, seed=1
    )
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    return adata


def _run_script(tmp_path, strategy):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), strategy],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the process it started
        proc.communicate()
        pytest.skip(
            f"DDP training with 2 CPU processes (gloo) did not finish within {TIMEOUT_S} s "
            "on this machine"
        )
    if proc.returncode != 0 and "gloo" in output.lower() and "connect" in output.lower():
        pytest.skip(f"gloo could not connect the 2 processes here:\n{output[-2000:]}")
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.mark.parametrize("strategy", ["ddp"])
def test_ddp_two_cpu_processes_train_save_load_predict(tmp_path, strategy):
    _run_script(tmp_path, strategy)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    assert all(int(r["world_size"]) == 2 and bool(r["trained"]) for r in ranks)
    # the replicas stay identical, but each process drew its own conditions
    np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])
    assert ranks[0]["labels"].shape == ranks[1]["labels"].shape
    assert not np.array_equal(ranks[0]["labels"], ranks[1]["labels"])

    adata = _small()
    model = pdae.model.PDAE.load(str(tmp_path / "model"), adata)
    assert model.is_trained_
    params = torch.cat([p.detach().flatten() for p in model.module.parameters()]).numpy()
    np.testing.assert_array_equal(params, ranks[0]["params"])
    pred = model.predict(["P0+P1"], n_cells=40, seed=0)
    x = pred.X.toarray() if hasattr(pred.X, "toarray") else np.asarray(pred.X)
    assert x.shape == (40, adata.n_vars)
    assert np.isfinite(x).all()


@pytest.mark.slow
def test_ddp_spawn_returns_the_trained_model_to_the_main_process(tmp_path, monkeypatch):
    """``ddp_spawn`` (and ``ddp_notebook``) train in child processes; rank 0's weights and
    update count come back to the calling process."""
    monkeypatch.chdir(tmp_path)  # scvi's logger writes lightning_logs/ into the cwd under DDP
    adata = _small()
    model = pdae.model.PDAE(adata, n_latent=4, n_hidden=(32,), n_noise=4)
    before = [p.detach().clone() for p in model.module.parameters()]
    model.train(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        enable_progress_bar=False,
        n_sources=32,
    )
    assert model.is_trained_
    after = list(model.module.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    model.save(str(tmp_path / "model"))
    loaded = pdae.model.PDAE.load(str(tmp_path / "model"), adata)
    pred = loaded.predict(["P0+P1"], n_cells=20, seed=0)
    assert pred.n_obs == 20
