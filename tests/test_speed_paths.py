"""Speed and scale code paths on CPU: data placement, shard-aware draws, precision, compile."""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import pdae_sc as pdae
from pdae_sc.data._sampler import PerturbationDataSplitter, choose_data_device
from pdae_sc.model._training_plan import PDAETrainingPlan
from pdae_sc.module import PDAEModule, grouped_energy_score, pairwise_distances


def _splitter(x=None, **kwargs):
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(6), 20)
    x = rng.normal(size=(120, 5)).astype(np.float32) if x is None else x
    labels = np.vstack([np.zeros(5), np.eye(5)])
    kwargs = {
        "n_conditions_per_batch": 2,
        "n_cells_per_condition": 3,
        "n_sources": 8,
        "seed": 3,
        **kwargs,
    }
    return PerturbationDataSplitter(x, codes, np.zeros(120, int), labels, **kwargs)


def _batches(dm, n=3):
    it = iter(dm.train_dataloader())
    return [next(it) for _ in range(n)]


# -- data placement -------------------------------------------------------------------------
def test_choose_data_device_rules():
    cuda, cpu = torch.device("cuda:0"), torch.device("cpu")
    gib = 2**30
    assert choose_data_device("auto", cuda, n_bytes=gib, free_bytes=4 * gib) == cuda
    assert choose_data_device("auto", cuda, n_bytes=3 * gib, free_bytes=4 * gib) is None
    assert (
        choose_data_device(
            "auto", cuda, n_bytes=3 * gib, free_bytes=4 * gib, max_memory_fraction=0.9
        )
        == cuda
    )
    assert choose_data_device("auto", cpu, n_bytes=1, free_bytes=None) is None  # CPU: as before
    assert choose_data_device("host", cuda, n_bytes=1, free_bytes=4 * gib) is None
    assert choose_data_device(cpu, cuda, n_bytes=1, free_bytes=None) == cpu


def test_resident_path_gathers_the_same_batches_as_the_host_path():
    host, resident = _splitter(data_device="host"), _splitter(data_device="cpu")
    assert host.place("cpu") is None
    assert not host.pin_memory
    assert resident.place("cpu") == torch.device("cpu")
    assert not resident.pin_memory
    assert resident._resident is not None
    for a, b in zip(_batches(host), _batches(resident), strict=True):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    resident.teardown("fit")
    assert resident._resident is None


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device: the real free-memory query and the device-resident copy "
    "(the decision rule itself is tested above with given free_bytes)",
)
def test_cuda_placement_asks_the_device_and_gathers_the_same_batches():
    dev = torch.device("cuda", torch.cuda.current_device())
    host, auto = _splitter(data_device="host"), _splitter()
    assert host.place(dev) is None
    assert host.pin_memory
    # 120 × 5 fits in free memory
    assert auto.place(dev) == dev
    assert not auto.pin_memory
    assert auto._resident.device == dev
    for a, b in zip(_batches(host), _batches(auto), strict=True):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k].to(dev), b[k].to(dev), rtol=0, atol=0)
    # a fraction of the real free memory too small for the matrix: back to pinned host rows
    free = torch.cuda.mem_get_info(dev)[0]
    tight = _splitter(max_memory_fraction=min(1.0, 4 * 120 * 5 / free / 2))
    assert tight.place(dev) is None
    assert tight.pin_memory
    auto.teardown("fit")
    assert auto._resident is None


def test_auto_placement_on_cpu_changes_nothing():
    dm = _splitter()
    assert dm.place("cpu") is None
    assert dm._resident is None
    assert not dm.pin_memory
    assert not dm.train_dataloader().pin_memory


@pytest.mark.parametrize("fmt", ["csr", "csc", "float64"])
def test_resident_copy_is_chunked_and_exact(fmt):
    x = np.random.default_rng(1).normal(size=(120, 5))
    m = {"csr": sp.csr_matrix(x), "csc": sp.csc_matrix(x), "float64": x}[fmt]
    dm = _splitter(m, data_device="cpu")
    dense = dm._dense_on(torch.device("cpu"), chunk=7)
    np.testing.assert_array_equal(dense.numpy(), x.astype(np.float32))


def test_all_pairs_batches_on_the_resident_path():
    host = _splitter(data_device="host", estimator="all_pairs", batch_size=10)
    resident = _splitter(data_device="cpu", estimator="all_pairs", batch_size=10)
    resident.place("cpu")
    for a, b in zip(_batches(host), _batches(resident), strict=True):
        torch.testing.assert_close(a["x"], b["x"])
        torch.testing.assert_close(a["label"], b["label"])


def test_bad_data_device():
    with pytest.raises(ValueError, match="data_device"):
        _splitter(data_device="gpu0")


# -- data-parallel draws --------------------------------------------------------------------
def test_shard_gives_each_rank_its_own_draws():
    r0, r1 = _splitter(), _splitter()
    single = len(r0.train_dataloader())
    r0.shard(0, 2)
    r1.shard(1, 2)
    np.testing.assert_array_equal(r0.train_idx, r1.train_idx)  # one split for all ranks
    b0, b1 = _batches(r0), _batches(r1)
    assert any(
        not torch.equal(a["label_anchor"], b["label_anchor"]) for a, b in zip(b0, b1, strict=True)
    )
    assert len(r0.train_dataloader()) == len(r1.train_dataloader()) == max(1, -(-single // 2))
    # rank 0 of a single process draws as before
    assert all(
        torch.equal(a["x_anchor"], b["x_anchor"])
        for a, b in zip(_batches(_splitter()), _batches(_splitter()), strict=True)
    )
    with pytest.raises(ValueError, match="rank"):
        r0.shard(2, 2)


def test_setup_agrees_on_the_split_of_rank_zero():
    dm = _splitter(seed=11, validation_size=0.2)
    reference = _splitter(seed=5, validation_size=0.2)
    broadcast = []

    def bcast(obj, src=0):
        broadcast.append(obj)
        return 5  # rank 0's seed

    dm.trainer = types.SimpleNamespace(
        world_size=2,
        global_rank=1,
        strategy=types.SimpleNamespace(broadcast=bcast, root_device=torch.device("cpu")),
    )
    dm.setup("fit")
    assert broadcast == [11]
    assert (dm.rank, dm.world_size, dm.seed) == (1, 2, 5)
    np.testing.assert_array_equal(dm.train_idx, reference.train_idx)
    np.testing.assert_array_equal(dm.val_idx, reference.val_idx)


# -- mixed precision ------------------------------------------------------------------------
def _bf16_autocast_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = torch.ones(2, 2) @ torch.ones(2, 2)
        return out.dtype == torch.bfloat16
    except RuntimeError:
        return False


@pytest.mark.skipif(not _bf16_autocast_works(), reason="no bf16 autocast on this CPU")
def test_distances_stay_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 6, 40, generator=g), torch.randn(3, 5, 40, generator=g)
    want = pairwise_distances(a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = pairwise_distances(a, b)
        half = pairwise_distances(a.bfloat16(), b)
    assert got.dtype == half.dtype == torch.float32
    torch.testing.assert_close(got, want)  # the matmul did not run in bf16


@pytest.mark.skipif(not _bf16_autocast_works(), reason="no bf16 autocast on this CPU")
def test_bf16_mixed_training_gives_finite_losses(small_adata):
    pdae.model.PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(small_adata, n_latent=4, n_hidden=(32,), n_noise=4)
    model.train(
        max_epochs=1,
        precision="bf16-mixed",
        accelerator="cpu",
        enable_progress_bar=False,
        n_sources=32,
    )
    assert model.is_trained_
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()
    assert all(torch.isfinite(p).all() for p in model.module.parameters())
    assert all(p.dtype == torch.float32 for p in model.module.parameters())


# -- torch.compile --------------------------------------------------------------------------
def _grouped_batch(p=12, k=3, g=2, n=3, s=6):
    gen = torch.Generator().manual_seed(0)
    return {
        "x_anchor": torch.randn(g, n, p, generator=gen),
        "label_anchor": torch.rand(g, k, generator=gen),
        "x_source": torch.randn(s, p, generator=gen),
        "label_source": torch.rand(s, k, generator=gen),
    }


def test_compile_option_wraps_the_loss_lazily():
    module = PDAEModule(12, 3, n_latent=4, n_hidden=(8,), n_noise=2)
    with pytest.raises(TypeError, match="compile"):
        PDAETrainingPlan(module, compile="yes")
    plain = PDAETrainingPlan(module)
    assert plain.compile is False
    plain.loss(_grouped_batch())
    assert plain._loss_fn is None
    # the "eager" backend traces with dynamo but skips code generation: fast enough here
    plan = PDAETrainingPlan(module, compile={"backend": "eager"})
    assert plan._loss_fn is None
    torch.manual_seed(0)
    out = plan.loss(_grouped_batch())
    torch.manual_seed(0)
    ref = module(_grouped_batch())
    assert plan._loss_fn is not None
    torch.testing.assert_close(out.loss, ref.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in module.encoder.parameters())
    assert not any(k.startswith("_loss_fn") for k in plan.state_dict())


@pytest.mark.slow
def test_compiled_training(small_adata):
    pdae.model.PDAE.setup_anndata(small_adata, "perturbation", control_group="ctrl")
    model = pdae.model.PDAE(small_adata, n_latent=4, n_hidden=(32,), n_noise=4)
    model.train(
        max_epochs=2,
        plan_kwargs={"compile": True},
        accelerator="cpu",
        enable_progress_bar=False,
        n_sources=32,
    )
    assert model.is_trained_
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()


# -- the update counter travels with the state dict (spawned DDP processes) ------------------
def test_update_counter_is_part_of_the_state():
    plan = PDAETrainingPlan(PDAEModule(12, 3, n_latent=4, n_hidden=(8,), n_noise=2))
    plan._n_updates += 3
    state = plan.state_dict()
    other = PDAETrainingPlan(PDAEModule(12, 3, n_latent=4, n_hidden=(8,), n_noise=2))
    other.load_state_dict(state)
    assert other.n_updates == 3
    old = {"state_dict": {k: v for k, v in state.items() if k != "_n_updates"}}
    other.on_load_checkpoint(old)  # checkpoints written before the counter existed
    other.load_state_dict(old["state_dict"])
    assert other.n_updates == 0


# -- the batched distances ---------------------------------------------------------------------
@pytest.mark.parametrize("beta", [1.0, 0.7])
def test_distance_gradients_match_finite_differences(beta):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(2, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: pairwise_distances(y, y, beta), (y,))
    assert torch.autograd.gradcheck(lambda x, y: pairwise_distances(x, y, beta), (x, y))
    assert torch.autograd.gradcheck(lambda x, y: grouped_energy_score(x, y, beta), (x, y))


# -- a non-finite loss in one DDP process stops all of them, without an update ---------------
def test_nonfinite_loss_elsewhere_stops_this_process_too():
    module = PDAEModule(12, 3, n_latent=4, n_hidden=(8,), n_noise=2)
    plan = PDAETrainingPlan(module)
    decisions = []

    def reduce_boolean_decision(decision, all=True):
        decisions.append((decision, all))
        return False  # another process saw a non-finite loss

    plan._trainer = types.SimpleNamespace(
        world_size=2,
        current_epoch=0,
        global_step=5,
        should_stop=False,
        precision_plugin=types.SimpleNamespace(),
        strategy=types.SimpleNamespace(reduce_boolean_decision=reduce_boolean_decision),
    )
    loss = plan.training_step(_grouped_batch(), 0)
    assert decisions == [(True, True)]
    assert plan.trainer.should_stop
    assert plan.nonfinite_error is not None
    assert "another process" in str(plan.nonfinite_error)
    assert loss is not None
    assert loss.item() == 0.0  # every process still runs backward
    loss.backward()
    plan.on_before_optimizer_step(None)
    assert all(p.grad is None for p in module.parameters())  # and no update is made
    assert plan.n_updates == 0


def test_adam_uses_the_fused_kernel_on_the_cpu():
    plan = PDAETrainingPlan(
        PDAEModule(12, 3, n_latent=4, n_hidden=(8,), n_noise=2), lr_schedule="constant"
    )
    optimizer = plan.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["fused"] is True
