"""Time one training step of the grouped loss against the authors' all-pairs loss.

Both see the same number of cells per step: the all-pairs batch has ``B`` cells; the grouped
batch has ``G·n`` observed cells plus ``S`` source cells with ``G·n + S = B``. A step is a
forward pass, backward pass and Adam update of the default architecture.

    python benchmarks/speed_grouped_vs_all_pairs.py [--genes 100] [--repeats 10]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from pdae_sc.module import PDAEModule


def _time_steps(module: PDAEModule, batch: dict, repeats: int) -> float:
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        module(batch).loss.backward()
        opt.step()

    for _ in range(2):  # warm-up
        step()
    t = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--genes", type=int, default=100)
    ap.add_argument("--perturbations", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    p, k = args.genes, args.perturbations
    print(
        f"device={dev} threads={torch.get_num_threads()} cpu={platform.processor() or '?'} "
        f"genes={p} perturbations={k}; default architecture (256-256, n_latent 32, n_noise 32)"
    )
    print(
        f"{'cells/step':>10} {'grouped layout G x n + S':>26} {'grouped ms':>11} "
        f"{'all-pairs ms':>13} {'ratio':>7}"
    )
    for b, (g, n, s) in [(64, (4, 8, 32)), (128, (8, 8, 64)), (256, (16, 8, 128))]:
        grouped = PDAEModule(p, k).to(dev)
        all_pairs = PDAEModule(p, k, estimator="all_pairs").to(dev)
        gb = {
            "x_anchor": torch.randn(g, n, p, device=dev),
            "label_anchor": torch.rand(g, k, device=dev),
            "x_source": torch.randn(s, p, device=dev),
            "label_source": torch.rand(s, k, device=dev),
        }
        ab = {"x": torch.randn(b, p, device=dev), "label": torch.rand(b, k, device=dev)}
        reps_ap = max(2, args.repeats // (b // 64))
        t_g = _time_steps(grouped, gb, args.repeats)
        t_a = _time_steps(all_pairs, ab, reps_ap)
        print(
            f"{b:>10} {f'{g} x {n} + {s}':>26} {t_g * 1e3:>11.1f} {t_a * 1e3:>13.1f} "
            f"{t_a / t_g:>6.1f}x"
        )


if __name__ == "__main__":
    main()
