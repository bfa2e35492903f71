"""Speed and scale of PDAE training and prediction, measured against the hardware floor.

One command prints every table as markdown (and writes it with ``--out``):

    python benchmarks/speed.py --accuracy --out benchmarks/results/speed.md   # all, ~9 min
    python benchmarks/speed.py                   # speed tables only, about 5 min on 2 cores
    python benchmarks/speed.py --quick           # smaller grid, no compile, about 1 min
    python benchmarks/speed.py --perturbations   # only the table against K, about 1 min
    python benchmarks/speed.py --predict         # only prediction throughput, about 1 min

What it measures, on the CPU and on a GPU when there is one (``--devices`` to choose):

1. the machine: sustained matmul FLOP/s and memory-copy bandwidth, measured here; they turn
   the analytic FLOP and byte counts of a step into its floor (the time it cannot beat);
2. a training step (forward, backward, Adam) of the grouped loss (the default) against the
   authors' all-pairs loss at the same number of cells per step: ms/step, cells/s, peak
   memory, achieved GFLOP/s and the fraction of the floor reached;
3. how the grouped step grows with the cells drawn per condition (linear by construction);
4. mixed precision (bf16 autocast) and ``torch.compile``, with the compile time;
5. prediction throughput for 2,000 genes: the module on device-resident cells (encoding
   every cell, or given the encodings, as ``predict`` does for sources drawn many times) and
   the end-to-end ``model.predict`` (AnnData out; median of 3 after a full-size warm-up);
6. with ``--accuracy``: grouped and all-pairs trained for the same wall time, scored by the
   held-out energy distance of 10 unseen doubles;
7. scale in the number of perturbations K (1,000 / 5,000 / 20,000 by default, ``--ks``):
   ``check_extrapolation`` of 100 targets, ``predict`` of 100 cells, ``setup_anndata``, the
   saved model's size and the peak memory (CPU; the work is host-side).

Steps of the compared variants are interleaved, so load from other processes hits them
alike; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import logging
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# torch.compile is timed from a cold cache (a fresh directory, removed at the end)
_INDUCTOR_DIR = tempfile.mkdtemp(prefix="pdae-speed-inductor-")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", _INDUCTOR_DIR)

import torch  # noqa: E402
from tabulate import tabulate  # noqa: E402

from pdae_sc.model._noise import default_batch_size  # noqa: E402
from pdae_sc.module import PDAEModule  # noqa: E402

warnings.filterwarnings("ignore")
for _name in ("lightning", "lightning.pytorch", "lightning.fabric", "scvi"):
    logging.getLogger(_name).setLevel(logging.ERROR)

N_LATENT, N_HIDDEN, N_NOISE = 32, (256, 256), 32  # PDAEModule defaults
N_PERTURBATIONS = 10


# ------------------------------------------------------------------ analytic floor
@dataclass
class Cost:
    """FLOPs and bytes moved (float32, lower bound) of one step or one predicted cell."""

    flops: float
    bytes: float
    decodes: int = 0
    distances: int = 0

    def floor_s(self, flops_per_s: float, bytes_per_s: float) -> float:
        """The roofline floor: the slower of compute and memory traffic."""
        return max(self.flops / flops_per_s, self.bytes / bytes_per_s)


def _widths(p: int) -> tuple[list[int], list[int]]:
    enc = [p, *N_HIDDEN, N_LATENT]
    dec = [N_LATENT + N_NOISE, *reversed(N_HIDDEN), p]
    return enc, dec


def _mlp(widths: list[int], rows: int) -> tuple[float, float, int]:
    """Forward FLOPs, activation elements and parameter count of an MLP on ``rows`` rows."""
    flops = 2.0 * rows * sum(a * b for a, b in itertools.pairwise(widths))
    # each hidden layer keeps its linear output and its ELU output; the last layer one output
    acts = rows * (2 * sum(widths[1:-1]) + widths[-1])
    params = sum(a * b + b for a, b in itertools.pairwise(widths))
    return flops, acts, params


def step_cost(p: int, *, g=0, n=0, s=0, b=0) -> Cost:
    """FLOPs and bytes of one training step (forward + backward + Adam), float32.

    Grouped (``g, n, s``): the encoder sees ``S`` sources, the decoder ``G·S`` moved cells
    plus ``2·S`` reconstruction decodes; distances ``G·n·S`` (observed vs predicted) and
    ``G·S²`` (diversity). All-pairs (``b``): ``B`` encodes, ``B² + 2B`` decodes, ``B(B-1)``
    and ``B(B-1)²`` distances. A distance in ``p`` dimensions costs ``2p`` FLOPs by the
    matmul expansion. The backward pass costs twice the forward, so a step is 3x forward.
    Bytes: every parameter is read twice, its gradient written once and Adam reads and
    writes parameter, gradient and two moments (10 accesses); every stored activation and
    distance is written and read in the forward pass and its gradient written and read in
    the backward pass (4 accesses); the input batch is read once.
    """
    enc, dec = _widths(p)
    if b:
        n_enc, n_dec, n_x = b, b * b + 2 * b, b
        n_dist = b * (b - 1) + b * (b - 1) ** 2
    else:
        n_enc, n_dec, n_x = s, g * s + 2 * s, g * n + s
        n_dist = g * n * s + g * s * s
    f_enc, a_enc, w_enc = _mlp(enc, n_enc)
    f_dec, a_dec, w_dec = _mlp(dec, n_dec)
    f_dist = 2.0 * p * n_dist + 2.0 * N_LATENT * 3 * n_enc**2  # + the prior's latent distances
    forward = f_enc + f_dec + f_dist
    n_params = w_enc + w_dec + N_PERTURBATIONS * N_LATENT + p
    moved = 4 * (10 * n_params + 4 * (a_enc + a_dec + n_dist) + n_x * p)
    return Cost(3 * forward, moved, decodes=n_dec, distances=n_dist)


def predict_cost(p: int, encode: bool = True) -> Cost:
    """Per predicted cell: one encode (unless ``encode=False``) and one decode, forward only;
    the cell is read and the prediction written once, every activation written and read once
    (parameters stay in cache across a batch)."""
    enc, dec = _widths(p)
    f_enc, a_enc, _ = _mlp(enc, 1)
    f_dec, a_dec, _ = _mlp(dec, 1)
    if not encode:
        f_enc, a_enc = 0, 0
    return Cost(f_enc + f_dec, 4 * (2 * p + 2 * (a_enc + a_dec)))


# ------------------------------------------------------------------ machine and measurement
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_peaks(device: torch.device) -> tuple[float, float]:
    """Sustained float32 matmul FLOP/s and copy bandwidth (bytes/s) measured on ``device``."""
    size = 4096 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device)
    bm = torch.randn(size, size, device=device)
    t = _best(lambda: a @ bm, device, reps=5)
    flops = 2 * size**3 / t
    n = (256 if device.type == "cuda" else 64) * 2**20
    src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
    t = _best(lambda: dst.copy_(src), device, reps=5)
    return flops, 2 * 4 * n / t


def peaks_line(peaks: tuple[float, float]) -> str:
    """The measured matmul rate and copy bandwidth as one sentence."""
    return (
        f"Measured here: {peaks[0] / 1e9:,.0f} GFLOP/s (float32 matmul), "
        f"{peaks[1] / 1e9:,.1f} GB/s (copy)."
    )


def _best(fn: Callable, device: torch.device, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


def interleaved(
    fns: dict[str, Callable], device, *, min_reps=2, max_reps=30, min_time=1.0, warmup=1
):
    """Median seconds per call of each function, calls interleaved round-robin."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(max_reps):
        for k, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t)
        if r + 1 >= min_reps and time.perf_counter() - start > min_time:
            break
    return {k: statistics.median(v) for k, v in times.items()}


_LIBC = None


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1)) * 1024


def cpu_peak_tracking() -> bool:
    """Make freed large blocks go back to the OS, so that the peak RSS of a step is its peak
    memory, and check that the kernel lets us reset the peak (``/proc/self/clear_refs``)."""
    global _LIBC
    try:
        _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: fixed, no dynamic growth
        _LIBC.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _status("VmHWM")
        return True
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def allocator_as_usual():
    """Timing as a user's process sees it: large blocks kept for reuse, as glibc's dynamic
    thresholds do by default (up to 32 MB blocks), instead of the fixed 128 KB threshold
    that :func:`cpu_peak_tracking` sets for the memory figures. With the latter every batch
    buffer of a prediction is mapped fresh and page-faulted, about half the throughput."""
    if _LIBC is None:
        yield
        return
    _LIBC.mallopt(-3, 32 * 1024 * 1024)
    _LIBC.mallopt(-1, 64 * 1024 * 1024)
    try:
        yield
    finally:
        _LIBC.mallopt(-3, 128 * 1024)
        _LIBC.mallopt(-1, 128 * 1024)


def peak_memory(fn: Callable, device: torch.device, cpu_ok: bool) -> float | None:
    """Peak memory (bytes) that one call of ``fn`` adds to what was allocated before."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    if not cpu_ok:
        return None
    _LIBC.malloc_trim(0)
    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    fn()
    return max(0, _status("VmHWM") - base)


# ------------------------------------------------------------------ training steps
def grouped_batch(p, g, n, s, device):
    return {
        "x_anchor": torch.randn(g, n, p, device=device),
        "label_anchor": torch.rand(g, N_PERTURBATIONS, device=device),
        "x_source": torch.randn(s, p, device=device),
        "label_source": torch.rand(s, N_PERTURBATIONS, device=device),
    }


def all_pairs_batch(p, b, device):
    return {
        "x": torch.randn(b, p, device=device),
        "label": torch.rand(b, N_PERTURBATIONS, device=device),
    }


def make_step(module, batch, *, compile=False, bf16=False):
    """One optimiser step of ``module`` on ``batch``, as the training plan runs it."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    forward = torch.compile(module.forward) if compile else module.forward
    device_type = next(module.parameters()).device.type

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss = forward(batch).loss
        loss.backward()
        opt.step()

    return step


def env_lines(device_names: list[str]) -> list[str]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else cpu
    lines = [
        f"- torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{os.cpu_count()} cores visible, CPU: {cpu}",
        f"- devices measured: {', '.join(device_names)}",
    ]
    if torch.cuda.is_available():
        lines.append(f"- GPU: {torch.cuda.get_device_name(0)}")
    else:
        lines.append("- GPU: none available in this run (CPU figures only)")
    return lines


def load_line(when: str) -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return f"- load average {when}: n/a"
    return (
        f"- load average {when}: {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on "
        f"{os.cpu_count()} cores"
    )


def fmt_bytes(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 2**20:,.0f}"


def floor_table(genes: list[int], layouts) -> str:
    rows = []
    for p in genes:
        for name, kw in layouts:
            c = step_cost(p, **kw)
            rows.append(
                [
                    p,
                    name,
                    f"{c.decodes:,}",
                    f"{c.distances:,}",
                    f"{c.flops / 1e9:,.2f}",
                    f"{c.bytes / 2**20:,.1f}",
                    f"{c.flops / c.bytes:,.1f}",
                ]
            )
    return tabulate(
        rows,
        headers=["genes", "step", "decodes", "distances", "GFLOP", "MiB moved", "FLOP/byte"],
        tablefmt="github",
    )


def step_grid(device, peaks, genes, sizes, cpu_mem, repeats_time) -> tuple[str, list]:
    rows, records = [], []
    flops_s, bytes_s = peaks
    for p in genes:
        for b, (g, n, s) in sizes:
            torch.manual_seed(0)
            grouped = PDAEModule(p, N_PERTURBATIONS).to(device)
            all_pairs = PDAEModule(p, N_PERTURBATIONS, estimator="all_pairs").to(device)
            steps = {
                "grouped": make_step(grouped, grouped_batch(p, g, n, s, device)),
                "all_pairs": make_step(all_pairs, all_pairs_batch(p, b, device)),
            }
            costs = {"grouped": step_cost(p, g=g, n=n, s=s), "all_pairs": step_cost(p, b=b)}
            t = interleaved(steps, device, min_time=repeats_time)
            mem = {k: peak_memory(fn, device, cpu_mem) for k, fn in steps.items()}
            for k in steps:
                c = costs[k]
                floor = c.floor_s(flops_s, bytes_s)
                records.append(
                    {
                        "device": str(device),
                        "genes": p,
                        "cells": b,
                        "step": k,
                        "s": t[k],
                        "floor_s": floor,
                    }
                )
                rows.append(
                    [
                        p,
                        b,
                        f"{g}x{n}+{s}" if k == "grouped" else f"B={b}",
                        k,
                        f"{t[k] * 1e3:,.1f}",
                        f"{b / t[k]:,.0f}",
                        fmt_bytes(mem[k]),
                        f"{c.flops / t[k] / 1e9:,.1f}",
                        f"{floor * 1e3:,.2f}",
                        f"{floor / t[k]:.0%}",
                        f"{t['all_pairs'] / t['grouped']:.1f}x" if k == "grouped" else "",
                    ]
                )
            del grouped, all_pairs, steps
    table = tabulate(
        rows,
        headers=[
            "genes",
            "cells/step",
            "layout",
            "loss",
            "ms/step",
            "cells/s",
            "peak MiB",
            "GFLOP/s",
            "floor ms",
            "of floor",
            "speed-up",
        ],
        tablefmt="github",
    )
    return table, records


def growth_table(device, peaks, p, g, s, ns, repeats_time) -> str:
    torch.manual_seed(0)
    module = PDAEModule(p, N_PERTURBATIONS).to(device)
    steps = {n: make_step(module, grouped_batch(p, g, n, s, device)) for n in ns}
    t = interleaved(steps, device, min_time=repeats_time, min_reps=5)
    x = np.array(ns, dtype=float)
    y = np.array([t[n] for n in ns])
    lin = np.polyfit(x, y, 1)
    rows = []
    for n in ns:
        c = step_cost(p, g=g, n=n, s=s)
        rows.append(
            [
                n,
                g * n + s,
                f"{t[n] * 1e3:,.1f}",
                f"{np.polyval(lin, n) * 1e3:,.1f}",
                f"{c.flops / 1e9:,.2f}",
                f"{c.floor_s(*peaks) * 1e3:,.2f}",
            ]
        )
    table = tabulate(
        rows,
        headers=["n per condition", "cells/step", "ms/step", "linear fit ms", "GFLOP", "floor ms"],
        tablefmt="github",
    )
    return (
        f"{table}\n\nLinear fit: {lin[1] * 1e3:.1f} ms + {lin[0] * 1e3:.2f} ms per cell per "
        f"condition. From n = {ns[0]} to n = {ns[-1]} the observed cells per step grow "
        f"{ns[-1] / ns[0]:.0f}x and the step time {y[-1] / y[0]:.2f}x: the decodes (G·S) do not "
        "depend on n, and the cross distances (G·n·S) grow linearly in n."
    )


def exponent_table(records: list[dict]) -> str:
    """Log-log slope of step time against cells per step, per loss and gene count."""
    rows = []
    for p in sorted({r["genes"] for r in records}):
        row = [p]
        for step in ("grouped", "all_pairs"):
            pts = sorted(
                (r["cells"], r["s"]) for r in records if r["genes"] == p and r["step"] == step
            )
            b, t = np.log([c for c, _ in pts]), np.log([v for _, v in pts])
            row.append(f"{np.polyfit(b, t, 1)[0]:.2f}")
        rows.append(row)
    return tabulate(
        rows, headers=["genes", "grouped exponent", "all-pairs exponent"], tablefmt="github"
    ) + (
        "\n\nStep time ~ (cells per step)^exponent over the grid above. The grouped layouts "
        "G x 8 + S double G and S together, so their G·S decodes grow 4x per doubling "
        "(exponent up to 2); at a fixed G and S the grouped step is linear in the cells "
        "drawn per condition (next table). All-pairs FLOPs grow as B^2 (decodes) to B^3 "
        "(distances)."
    )


def options_table(device, p, g, n, s, compile_too: bool) -> str:
    variants = {"eager fp32": {}, "eager bf16 autocast": {"bf16": True}}
    if compile_too:
        variants["compiled fp32"] = {"compile": True}
        variants["compiled bf16 autocast"] = {"compile": True, "bf16": True}
    steps, first = {}, {}
    batch = grouped_batch(p, g, n, s, device)
    for name, kw in variants.items():
        torch.manual_seed(0)
        step = make_step(PDAEModule(p, N_PERTURBATIONS).to(device), batch, **kw)
        sync(device)
        t = time.perf_counter()
        step()  # includes compilation for the compiled variants
        sync(device)
        first[name] = time.perf_counter() - t
        steps[name] = step
    t = interleaved(steps, device, min_time=3.0, min_reps=5, warmup=2)
    base = t["eager fp32"]
    rows = []
    for name in variants:
        repay = ""
        if "compiled" in name:
            gain = base - t[name]
            repay = f"{(first[name] - t[name]) / gain:,.0f}" if gain > 0 else "never"
        rows.append(
            [name, f"{first[name]:,.1f}", f"{t[name] * 1e3:,.1f}", f"{base / t[name]:.2f}x", repay]
        )
    return tabulate(
        rows,
        headers=[
            "variant",
            "first step s (incl. compile)",
            "ms/step",
            "speed-up",
            "steps to repay compile",
        ],
        tablefmt="github",
    )


ENCODED = "module, encodings given (predict encodes each drawn source once)"


def predict_tables(device, peaks, p, n_cells_e2e: int) -> str:
    import pdae_sc as pdae

    torch.manual_seed(0)
    module = PDAEModule(p, N_PERTURBATIONS).to(device).eval()
    bs = default_batch_size(p, device.type)  # predict's default batch
    x = torch.randn(bs, p, device=device)
    lab = torch.rand(bs, N_PERTURBATIONS, device=device)
    target = torch.rand(N_PERTURBATIONS, device=device)
    host = torch.randn(bs, p).pin_memory() if device.type == "cuda" else None

    @torch.inference_mode()
    def resident():
        module.move(x, lab, target)

    z = module.encode(x).detach()

    @torch.inference_mode()
    def encoded():
        module.move(x, lab, target, encoded=z)

    @torch.inference_mode()
    def via_host():
        out = module.move(host.to(device, non_blocking=True), lab, target)
        out.cpu()

    fns = {
        "module, cells on the device": resident,
        ENCODED: encoded,
    }
    if host is not None:
        fns["module, cells copied from host and back"] = via_host
    t = interleaved(fns, device, min_time=2.0, min_reps=5)
    cost = predict_cost(p)
    floors = {name: cost.floor_s(*peaks) for name in t}
    floors[ENCODED] = predict_cost(p, encode=False).floor_s(*peaks)
    rows = [
        [name, f"{bs / v:,.0f}", f"{1 / floors[name]:,.0f}", f"{floors[name] * bs / v:.0%}"]
        for name, v in t.items()
    ]

    adata = pdae.data.simulate(n_perturbations=4, n_genes=p, n_cells_per_condition=300, seed=0)
    pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
    e2e = {}
    for decoder in ("generative", "residual"):
        model = pdae.model.PDAE(adata, decoder=decoder)
        model.train(
            max_epochs=1,
            max_steps=2,
            accelerator=device.type,
            devices=1,
            enable_progress_bar=False,
            check_fit=False,
        )
        # warm-up at full size: the first use of fresh memory in a process is slow on a
        # virtual machine (the host backs the pages lazily: about 0.7 s for the 320 MB of
        # 40,000 x 2,000 here), which measures the machine rather than predict
        model.predict(["P0+P1"], n_cells=n_cells_e2e, seed=0)
        times = []
        for rep in range(5):
            t0 = time.perf_counter()
            pred = model.predict(["P0+P1"], n_cells=n_cells_e2e, seed=rep)
            times.append(time.perf_counter() - t0)
            del pred
        e2e[decoder] = times
        batch = model._batch_size(None)
        rows.append(
            [
                f"model.predict, {decoder} decoder, {n_cells_e2e:,} cells to AnnData "
                f"(default batch {batch:,}; median of 5, slowest in brackets)",
                f"{n_cells_e2e / np.median(times):,.0f} ({n_cells_e2e / max(times):,.0f})",
                "",
                "",
            ]
        )
    dt = float(np.median(e2e["generative"]))
    # what predict spends beyond the network (source draw, host gather, copies, AnnData):
    # it bounds the throughput on a device whose compute is (nearly) free
    overhead = dt / n_cells_e2e - t[ENCODED] / bs
    if overhead > 0:
        rows.append(
            [
                "model.predict minus the network's compute (bound on a fast device)",
                f"{1 / overhead:,.0f}",
                "",
                "",
            ]
        )
    table = tabulate(
        rows, headers=["path", "cells/s", "floor cells/s", "of floor"], tablefmt="github"
    )
    return (
        f"{table}\n\nPer predicted cell ({p} genes): {cost.flops / 1e6:.2f} MFLOP, "
        f"{cost.bytes / 1e3:.1f} kB moved on the device, {8 * p / 1e3:.1f} kB across the "
        "host link when cells start and end on the host."
    )


def data_table(p: int, g: int, n: int, s: int, n_cells: int) -> str:
    """Host-side time to draw and gather one grouped minibatch, dense and CSR."""
    import scipy.sparse as sp

    from pdae_sc.data._sampler import PerturbationDataSplitter

    rng = np.random.default_rng(0)
    n_cond = 200
    codes = rng.integers(n_cond, size=n_cells)
    labels = np.vstack([np.zeros(n_cond - 1), np.eye(n_cond - 1)])
    dense = rng.random((n_cells, p), dtype=np.float32)
    dense[dense < 0.9] = 0.0  # 10% non-zero, like log-normalised counts
    rows = []
    for name, matrix in [("dense", dense), ("CSR", sp.csr_matrix(dense))]:
        for where in ("host", "cpu"):
            if where == "cpu" and name == "CSR":
                continue
            dm = PerturbationDataSplitter(
                matrix,
                codes,
                np.zeros(n_cells, int),
                labels,
                n_conditions_per_batch=g,
                n_cells_per_condition=n,
                n_sources=s,
                data_device=where,
            )
            dm.place("cpu")
            sampler = dm._sampler(dm.train_idx, np.random.default_rng(1))
            t = interleaved(
                {0: lambda dm=dm, sm=sampler: dm.make_batch(sm)},
                torch.device("cpu"),
                min_time=1.0,
                min_reps=20,
            )[0]
            label = "host gather (numpy/scipy)" if where == "host" else "torch gather, resident"
            rows.append([name, label, f"{t * 1e3:,.2f}", f"{(g * n + s) / t:,.0f}"])
    table = tabulate(rows, headers=["matrix", "path", "ms/batch", "cells/s"], tablefmt="github")
    return (
        f"{table}\n\n{n_cells:,} cells x {p} genes, {n_cond} conditions, batch {g}x{n}+{s}; "
        "the draw of the indices is included."
    )


def accuracy_table(budget_s: float, seed: int = 0) -> str:
    import scvi

    import pdae_sc as pdae

    adata = pdae.data.simulate(
        n_perturbations=10, n_genes=100, n_cells_per_condition=100, basal="laplace", seed=seed
    )
    split = pdae.data.split_perturbations(adata, holdout="doubles", n_holdout=10, seed=seed)
    train = adata[split == "train"].copy()
    test = adata[split == "test"].copy()
    targets = sorted(test.obs["perturbation"].astype(str).unique())
    n_ctrl = int((train.obs["perturbation"] == "ctrl").sum())  # every method: this many cells
    hh, mm, ss = int(budget_s // 3600), int(budget_s % 3600 // 60), int(budget_s % 60)
    runs = [
        ("grouped (default, 16x16+128 = 384 cells/step)", "grouped", {}),
        (
            "grouped, 8x8+64 = 128 cells/step",
            "grouped",
            {"n_conditions_per_batch": 8, "n_cells_per_condition": 8, "n_sources": 64},
        ),
        ("all-pairs, B = 128 (authors' batch)", "all_pairs", {"batch_size": 128}),
    ]
    rows = []
    for name, estimator, kw in runs:
        scvi.settings.seed = seed
        pdae.model.PDAE.setup_anndata(train, "perturbation", control_group="ctrl")
        model = pdae.model.PDAE(train, estimator=estimator)
        t0 = time.perf_counter()
        model.train(
            max_epochs=100_000,
            max_time=f"00:{hh:02d}:{mm:02d}:{ss:02d}",
            accelerator="cpu",
            enable_progress_bar=False,
            **kw,
        )
        wall = time.perf_counter() - t0
        pred = model.predict(targets, n_cells=n_ctrl, seed=seed)
        ed = pdae.tl.evaluate(
            pred, test, adata_control=train, metrics=["energy_distance"], seed=seed
        )["energy_distance"]
        rows.append(
            [
                name,
                f"{wall:.0f}",
                model.trainer.global_step,
                f"{wall / max(model.trainer.global_step, 1) * 1e3:.1f}",
                len(model.history["train_loss"]),
                f"{ed.mean():.4f} ± {ed.std():.4f}",
            ]
        )
    for method in ("additive", "linear"):
        pred = pdae.tl.predict_baseline(train, targets, method=method, n_cells=n_ctrl, seed=seed)
        ed = pdae.tl.evaluate(
            pred, test, adata_control=train, metrics=["energy_distance"], seed=seed
        )["energy_distance"]
        rows.append([f"baseline: {method}", "", "", "", "", f"{ed.mean():.4f} ± {ed.std():.4f}"])
    table = tabulate(
        rows,
        headers=[
            "training",
            "wall s",
            "steps",
            "ms/step (all in)",
            "epochs",
            "energy distance (10 doubles)",
        ],
        tablefmt="github",
    )
    return (
        f"{table}\n\nData: `simulate(n_perturbations=10, n_genes=100, n_cells_per_condition=100,"
        f" basal='laplace', seed={seed})`, 10 held-out doubles; each model trained for "
        f"`max_time` = {budget_s:.0f} s on the CPU with default architecture and settings; "
        "500 predicted cells per double; mean ± sd over the doubles."
    )


# ------------------------------------------------------------------ many perturbations
def _screen_adata(k: int, n_genes: int = 50, cells: int = 3, seed: int = 0):
    """A genome-wide-like screen: ``k`` singles and ``k // 100`` measured doubles of ``cells``
    cells each, 200 control cells, ``n_genes`` genes."""
    import anndata as ad
    import pandas as pd

    labels = ["ctrl"] * 200 + [f"G{i}" for i in range(k) for _ in range(cells)]
    labels += [f"G{2 * i}+G{2 * i + 1}" for i in range(k // 100) for _ in range(cells)]
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {"perturbation": pd.Categorical(labels)}, index=[f"c{i}" for i in range(len(labels))]
    )
    return ad.AnnData(rng.normal(size=(len(labels), n_genes)).astype(np.float32), obs=obs)


def perturbation_scale_table(ks: list[int], cpu_mem: bool) -> str:
    """check_extrapolation, predict and save against the number of perturbations K (CPU)."""
    import pdae_sc as pdae

    def timed(fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        return out, time.perf_counter() - t0

    # 100 targets: 60 unseen doubles, 20 seen singles, 20 singles at twice the dose
    targets = [f"G{2 * i + 1}+G{2 * i + 2}" for i in range(60)]
    targets += [f"G{i}" for i in range(200, 240)]
    dosages = [None] * 80 + [2.0] * 20
    rows = []
    for k in ks:
        if cpu_mem:
            _LIBC.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _status("VmRSS")
        adata = _screen_adata(k)
        _, t_setup = timed(
            pdae.model.PDAE.setup_anndata, adata, "perturbation", control_group="ctrl"
        )
        model = pdae.model.PDAE(adata)
        # the weights stay at their initial values: what is timed here does not depend on
        # them (training at this K is not what this table measures)
        model.is_trained_ = True
        table, t_first = timed(model.check_extrapolation, targets, dosages=dosages)
        _, t_check = timed(model.check_extrapolation, targets, dosages=dosages)
        assert table["in_span"].all()
        assert (table["status"] != "in span, in range").sum() == 40
        pred, t_pred = timed(model.predict, ["G1+G2"], n_cells=100, seed=0)
        assert pred.n_obs == 100
        with tempfile.TemporaryDirectory() as d:
            _, t_save = timed(model.save, os.path.join(d, "m"))
            size = os.path.getsize(os.path.join(d, "m", "model.pt"))
        # training at this K: the residual decoder starts at the least-squares effects (a fit
        # over all K), then one epoch of the default grouped training
        res, t_init = timed(pdae.model.PDAE, adata, decoder="residual")
        _, t_train = timed(res.train, max_epochs=1, enable_progress_bar=False, check_fit=False)
        del res
        peak = _status("VmHWM") - base if cpu_mem else None
        rows.append(
            [
                f"{k:,}",
                f"{adata.n_obs:,}",
                f"{t_setup:.2f}",
                f"{t_first:.3f}",
                f"{t_check:.3f}",
                f"{t_pred:.3f}",
                f"{t_save:.2f}",
                f"{size / 1e6:.1f}",
                f"{t_init:.2f}",
                f"{t_train:.1f}",
                fmt_bytes(peak),
            ]
        )
        print(tabulate([rows[-1]], tablefmt="plain"), flush=True)
        del model, adata, pred
    table = tabulate(
        rows,
        headers=[
            "K perturbations",
            "cells",
            "setup_anndata s",
            "check 100 targets, first s",
            "check 100 targets s",
            "predict 100 cells s",
            "save s",
            "model.pt MB",
            "residual model s",
            "train 1 epoch s",
            "peak memory MiB",
        ],
        tablefmt="github",
    )
    return (
        f"{table}\n\nData: K singles and K/100 measured doubles, 3 cells each, 200 control "
        "cells, 50 genes (`_screen_adata`); default architecture, weights untrained (the timed "
        "calls do not depend on them). The first check factorises the training label matrix "
        "(cached per model); a check covers 60 unseen doubles, 20 seen singles and 20 singles "
        "at twice the trained dose; predict runs its own check. `residual model s`: building "
        'a model with `decoder="residual"`, whose gene shift starts at the least-squares '
        "effects of all K perturbations; `train 1 epoch s`: one epoch of its default training "
        "(grouped batches, about one draw per cell), `check_fit=False`. Peak memory: the rise "
        "of the process's peak RSS over the row (data, setup, models, calls)."
    )


# ------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller grid (about 1 min on CPU)")
    ap.add_argument(
        "--accuracy",
        action="store_true",
        help="also train grouped and all-pairs for the same wall time",
    )
    ap.add_argument(
        "--budget", type=float, default=60.0, help="wall-time budget (s) per model for --accuracy"
    )
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument(
        "--devices",
        nargs="+",
        default=None,
        help="devices to measure (default: cpu, and cuda if available)",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    ap.add_argument(
        "--perturbations",
        action="store_true",
        help="only the table against the number of perturbations K (about 1 min)",
    )
    ap.add_argument(
        "--predict",
        action="store_true",
        help="only the prediction throughput table, on every device (about 1 min)",
    )
    ap.add_argument(
        "--ks",
        type=int,
        nargs="+",
        default=None,
        help="numbers of perturbations K of that table (default 1000 5000 20000)",
    )
    ap.add_argument("--out", default=None, help="also write the markdown to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    cpu_mem = cpu_peak_tracking()
    out: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        out.append(text)

    t_start = time.perf_counter()
    emit("# Speed and scale: measurements")
    emit()
    flags = [
        ("--quick", args.quick),
        ("--accuracy", args.accuracy),
        ("--perturbations", args.perturbations),
        (f"--ks {' '.join(map(str, ks_arg))}" if (ks_arg := args.ks) else "", bool(args.ks)),
        (f"--threads {args.threads}", bool(args.threads)),
    ]
    emit(
        "Command: `"
        + " ".join(["python benchmarks/speed.py"] + [f for f, on in flags if on])
        + "`"
    )
    emit()
    for line in env_lines(devices):
        emit(line)
    emit(load_line("at start"))
    emit()

    genes = [100, 1000] if args.quick else [100, 1000, 2000]
    sizes = [(64, (4, 8, 32)), (128, (8, 8, 64)), (256, (16, 8, 128))]
    if args.quick:
        sizes = sizes[:2]
    layouts = [
        ("grouped default 16x16+128 (384 cells)", {"g": 16, "n": 16, "s": 128}),
        ("all-pairs B=384", {"b": 384}),
        ("all-pairs B=128 (authors')", {"b": 128}),
    ]
    ks = args.ks or ([1000, 5000] if args.quick else [1000, 5000, 20000])
    if args.perturbations:
        devices = []
    elif args.predict:
        for name in devices:
            device = torch.device(name)
            peaks = machine_peaks(device)
            emit(f"## {name.upper()}: prediction throughput (2000 genes, default batches)")
            emit()
            emit(peaks_line(peaks))
            emit()
            with allocator_as_usual():
                emit(predict_tables(device, peaks, 2000, 40_000))
            emit()
        emit(load_line("at end"))
        if args.out:
            with open(args.out, "w") as f:
                f.write("\n".join(out) + "\n")
        return
    else:
        emit("## Analytic cost of one training step (default architecture)")
        emit()
        emit(
            f"Encoder {genes[0]}..{genes[-1]}-256-256-32, decoder (32+32 noise)-256-256-genes, "
            f"{N_PERTURBATIONS} perturbations; FLOPs of forward + backward (3x forward), bytes "
            "of a float32 step (see `step_cost`)."
        )
        emit()
        emit(floor_table(genes, layouts))
        emit()
    for name in devices:
        device = torch.device(name)
        peaks = machine_peaks(device)
        emit(f"## {name.upper()}")
        emit()
        emit(
            f"{peaks_line(peaks)[:-1]}. Floor = max(FLOPs / matmul rate, bytes / copy rate); "
            "peak memory = what one step adds (CPU: peak RSS; GPU: allocator)."
        )
        emit()
        emit("### Training step: grouped (default) vs all-pairs, same cells per step")
        emit()
        table, records = step_grid(
            device, peaks, genes, sizes, cpu_mem, repeats_time=0.5 if args.quick else 1.0
        )
        emit(table)
        emit()
        emit("### Growth with the cells per step")
        emit()
        emit(exponent_table(records))
        emit()
        p_growth = 1000
        ns = [4, 8, 16, 32] if args.quick else [4, 8, 16, 32, 64]
        emit(f"### Growth with the cells drawn per condition ({p_growth} genes, G=16, S=128)")
        emit()
        emit(
            growth_table(
                device, peaks, p_growth, 16, 128, ns, repeats_time=1.0 if args.quick else 3.0
            )
        )
        emit()
        emit("### Mixed precision and torch.compile (grouped default layout, 1000 genes)")
        emit()
        emit(
            options_table(
                device, 1000, 16, 16, 128, compile_too=not args.no_compile and not args.quick
            )
        )
        emit()
        if name == "cpu":
            emit("### Data loading (host side, one grouped batch, 2000 genes)")
            emit()
            emit(data_table(2000, 16, 16, 128, 20_000 if args.quick else 100_000))
            emit()
        p_pred = 2000
        emit(f"### Prediction throughput ({p_pred} genes, default batches)")
        emit()
        with allocator_as_usual():
            emit(predict_tables(device, peaks, p_pred, 10_000 if args.quick else 40_000))
        emit()

    emit("## Scale in the number of perturbations (CPU)")
    emit()
    emit(perturbation_scale_table(ks, cpu_mem))
    emit()
    if args.accuracy and not args.perturbations:
        emit("## Equal wall time: held-out energy distance")
        emit()
        emit(accuracy_table(args.budget / (3 if args.quick else 1)))
        emit()
    emit(load_line("at end"))
    emit(f"- total run time: {time.perf_counter() - t_start:,.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(out) + "\n")
    shutil.rmtree(_INDUCTOR_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
