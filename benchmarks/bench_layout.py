"""A training step with the weights contiguous (NCDHW) vs channels-last (NDHWC), on the CPU.

    python benchmarks/bench_layout.py                  # 2 threads, batch 2
    python benchmarks/bench_layout.py --threads 1

The networks are the ones segforge plans for a CPU budget (``--gpu-memory-gb 0.1``): a
``3d_fullres`` U-Net 8->64 on a 32x48x48 patch with deep supervision, and a ``locator``
U-Net 8->128 on a 32x64x64 canvas. One step = forward, a mean-square loss over every
output, backward. Best of ``--repeats`` timed steps after two warm-up steps; the ratio is
contiguous / channels-last seconds (above 1: channels-last is faster).
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from segforge.networks import build_network
from segforge.planning.plans import NetworkTopology


def _topology(features, deep_supervision: bool) -> NetworkTopology:
    n = len(features)
    return NetworkTopology(features_per_stage=list(features), kernel_sizes=[[3, 3, 3]] * n,
                           strides=[[1, 1, 1]] + [[2, 2, 2]] * (n - 1), deep_supervision=deep_supervision)


CASES = {
    "3d_fullres 32x48x48": (_topology([8, 16, 32, 64], True), (32, 48, 48), 2),
    "locator 32x64x64": (_topology([8, 16, 32, 64, 128], False), (32, 64, 64), 1),
}


def _step_seconds(network: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    def step():
        out = network(x)
        outputs = out if isinstance(out, (list, tuple)) else [out]
        sum(o.float().pow(2).mean() for o in outputs).backward()

    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per layout (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name, (topology, patch, classes) in CASES.items():
        config = SimpleNamespace(network=topology, dims=3)  # all build_network reads
        seconds = {}
        for layout in ("contiguous", "channels_last"):
            torch.manual_seed(0)
            network = build_network(config, 1, classes)
            if layout == "channels_last":
                network = network.to(memory_format=torch.channels_last_3d)
            x = torch.randn(args.batch, 1, *patch)
            seconds[layout] = _step_seconds(network, x, args.repeats)
        print(f"{name}: contiguous {seconds['contiguous']:.3f} s, channels-last {seconds['channels_last']:.3f} s "
              f"per step -> {seconds['contiguous'] / seconds['channels_last']:.2f}x "
              f"({args.threads} threads, batch {args.batch})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
