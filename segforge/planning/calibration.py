"""Measure what a device does per second for a U-Net training step (a few seconds, once per machine).

A training step of the planned U-Nets is convolutions (their FLOPs:
:mod:`segforge.networks.cost`), normalisations and non-linearities (memory traffic, in
proportion to the activations) and a fixed cost per layer (kernel launches, Python). How
fast a convolution runs depends on its width: on the 2-core development CPU a 4-channel
3D convolution ran at about a tenth of the FLOP/s of a 64-channel one. So the calibration
times, with the thread count training will use:

* one 3x3x3 convolution (and one 3x3) forward + backward at widths 4..256 (CPU) or
  16..320 (GPU), each on a volume sized for about the same FLOPs, best of three;
* instance normalisation + leaky ReLU forward + backward on a 16-channel volume;
* a tiny U-Net's whole step, whose time beyond the first two is the per-layer overhead.

On the CPU the weights are channels-last as in training (``segforge.networks.layout``); on
a GPU the step runs under bf16 autocast. :func:`segforge.planning.compute_rule.iteration_seconds`
turns the rates into seconds per iteration; ``benchmarks/budget_speed.py`` checks the
prediction against real training steps.
"""

from __future__ import annotations

import math
import time

__all__ = ["calibrate", "CPU_WIDTHS", "GPU_WIDTHS"]

CPU_WIDTHS = (4, 8, 16, 32, 64, 128, 256)
GPU_WIDTHS = (16, 32, 64, 128, 256, 320)
_REPEATS = 3


def _timer(kind: str):
    import torch

    def measure(fn) -> float:
        fn()  # warm-up: allocations, algorithm choice
        best = math.inf
        for _ in range(_REPEATS):
            if kind == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if kind == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    return measure


def _conv_rate(kind: str, dims: int, width: int, target_flops: float, measure) -> float:
    """GFLOP/s of one 3^dims convolution, forward + backward (input and weight gradients)."""
    import torch

    kernel = 3**dims
    voxels = target_flops / (6 * width * width * kernel)
    edge = max(8 if dims == 3 else 16, int(round(voxels ** (1 / dims))))
    conv_type = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    conv = conv_type(width, width, 3, padding=1).to(kind)
    x = torch.randn(2, width, *([edge] * dims), device=kind, requires_grad=True)
    if kind == "cpu":
        layout = torch.channels_last_3d if dims == 3 else torch.channels_last
        conv = conv.to(memory_format=layout)
        x = x.detach().to(memory_format=layout).requires_grad_(True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if kind == "cuda" else _null()

    def step():
        with autocast:
            y = conv(x)
        y.float().sum().backward()

    seconds = measure(step)
    flops = 3 * 2 * width * width * kernel * 2 * edge**dims
    return flops / seconds / 1e9


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _elementwise_rate(kind: str, measure) -> float:
    import torch

    edge = 48 if kind == "cuda" else 32
    norm = torch.nn.InstanceNorm3d(16, affine=True).to(kind)
    act = torch.nn.LeakyReLU(1e-2, inplace=True)
    x = torch.randn(2, 16, edge, edge, edge, device=kind, requires_grad=True)

    def step():
        act(norm(x)).sum().backward()

    return 2 * 16 * edge**3 / measure(step) / 1e9


def _layer_overhead(kind: str, rates: dict, measure) -> float:
    """Seconds per layer of a tiny U-Net's step beyond its predicted convolution and elementwise time."""
    import torch

    from segforge.networks.cost import conv_layers, elementwise_elements
    from segforge.networks.unet import UNet
    from segforge.networks.topology import NetworkTopology

    topology = NetworkTopology(features_per_stage=[4, 8, 16, 32], kernel_sizes=[[3, 3, 3]] * 4,
                               strides=[[1, 1, 1]] + [[2, 2, 2]] * 3)
    patch = [16, 16, 16]
    net = UNet(topology, 3, 1, 2).to(kind)
    if kind == "cpu":
        net = net.to(memory_format=torch.channels_last_3d)
    x = torch.randn(1, 1, *patch, device=kind)

    def step():
        net.zero_grad(set_to_none=True)
        sum(o.float().sum() for o in net(x)).backward()

    seconds = measure(step)
    layers = conv_layers(topology, patch, 1, 2)
    table = rates["conv_gflops_3d"]
    widths = sorted(int(w) for w in table)

    def rate(width):  # nearest measured width (tiny layers: enough for the overhead)
        return table[str(min(widths, key=lambda w: abs(math.log2(w) - math.log2(max(1, width)))))] * 1e9

    compute = sum(layer.training_flops / rate(layer.width) for layer in layers)
    compute += elementwise_elements(topology, patch, 1, 1, 2) / (rates["elementwise_gelems"] * 1e9)
    return max(0.0, seconds - compute) / len(layers)


def calibrate(kind: str = "cpu", threads: int = 0) -> dict:
    """Rates of ``kind`` (``"cpu"`` with ``threads`` torch threads, or ``"cuda"``): the fields of
    :class:`~segforge.planning.device_profile.DeviceProfile` that hold measurements."""
    import torch

    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if kind == "cpu" and threads > 0:
        torch.set_num_threads(threads)
    try:
        measure = _timer(kind)
        widths = CPU_WIDTHS if kind == "cpu" else GPU_WIDTHS
        target = 1.5e8 if kind == "cpu" else 2e10
        rates = {
            "conv_gflops_3d": {str(w): round(_conv_rate(kind, 3, w, target, measure), 3) for w in widths},
            "conv_gflops_2d": {str(w): round(_conv_rate(kind, 2, w, target / 3, measure), 3) for w in widths},
            "elementwise_gelems": round(_elementwise_rate(kind, measure), 5),
        }
        rates["layer_overhead_s"] = round(_layer_overhead(kind, rates, measure), 6)
    finally:
        torch.set_num_threads(previous_threads)
    rates["calibration_seconds"] = round(time.perf_counter() - start, 2)
    return rates
