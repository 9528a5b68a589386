"""What one window costs the network: inside a training step, and in prediction.

    python benchmarks/bench_window.py                       # the CPU plan of the nnU-Net comparison
    python benchmarks/bench_window.py --threads 2 --repeats 5
    python benchmarks/bench_window.py --profile             # plus torch.profiler's top operators
    python benchmarks/bench_window.py --onnx                # plus ONNX Runtime on the exported network
    python benchmarks/bench_window.py --smoke

The U-Net of a CPU-sized plan (default: patch 32x48x48, 8->64 features, 4 classes, the plan
of ``compare_nnunet.py``) is timed per patch/window in one process:

* a training step (forward + backward, batch 2, deep supervision) and a training-mode forward;
* prediction forwards (eval, ``torch.inference_mode``) with 1, 2, 4 and 8 windows per pass,
  each with the stock ``nn.InstanceNorm3d`` (what prediction used before) and with
  segforge's norm (group-norm kernel without gradients), in float32 and under bf16 autocast.

Times are CPU seconds of the process (``time.process_time``), best of ``--repeats``, with
``--threads`` torch threads (default 1): on a shared machine CPU time is far steadier than
wall time, and ratios within one run are what the figures are for. With one thread CPU time
equals the compute; with more it includes OpenMP's spinning.
"""

from __future__ import annotations

import copy
import sys
import time

from _common import base_parser, write_result


def main(argv=None) -> int:
    parser = base_parser(__doc__, "bench_window")
    parser.add_argument("--patch", type=int, nargs=3, default=(32, 48, 48), metavar=("Z", "Y", "X"))
    parser.add_argument("--features", type=int, nargs="+", default=(8, 16, 32, 64))
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=(1, 2, 4, 8))
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators for 1 and 4 windows")
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime (the network exported as segforge_export does)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.patch, args.features, args.repeats, args.batches = (16, 16, 16), (4, 8), 1, (1, 2)
    import torch

    torch.set_num_threads(args.threads)
    network, stock = _networks(args)
    result: dict = {"patch": list(args.patch), "features": list(args.features), "threads": args.threads,
                    "unit": "CPU milliseconds per window (process_time, best of repeats)"}

    x = torch.randn(2, 1, *args.patch)
    network.train()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.0)

    def train_step():
        optimizer.zero_grad()
        out = network(x)
        sum(o.float().mean() for o in out).backward()

    def train_forward():  # training mode, gradients recorded, no backward
        network(x)

    result["training"] = {"step_forward_backward": _cpu_ms(train_step, args.repeats) / 2,
                          "forward_in_training": _cpu_ms(train_forward, args.repeats) / 2}
    network.eval()
    stock.eval()
    onnx_network = _onnx(network, args) if args.onnx else None
    rows = []
    with torch.inference_mode():
        for b in args.batches:
            xb = torch.randn(b, 1, *args.patch)
            row = {"windows_per_pass": b}
            for name, net in (("stock_instance_norm", stock), ("segforge", network)):
                row[f"{name}_fp32"] = _cpu_ms(lambda: net(xb), args.repeats) / b
            row["segforge_bf16"] = _cpu_ms(lambda: _bf16(network, xb), args.repeats) / b
            if args.onnx:
                row["onnxruntime_fp32"] = _cpu_ms(lambda: onnx_network(xb), args.repeats) / b
            rows.append(row)
            print(row, flush=True)
    result["prediction"] = rows
    if args.profile:
        result["profile"] = {b: _profile(network, stock, args.patch, b) for b in (1, 4)}

    before = rows[0]["stock_instance_norm_fp32"]
    best = min(min(r["segforge_fp32"] for r in rows if r["windows_per_pass"] > 1), before)
    t = result["training"]
    line = (f"per window ({args.threads} thread(s), CPU ms): training step {t['step_forward_backward']:.0f} "
            f"(forward in training {t['forward_in_training']:.0f}); prediction before (1 window/pass, stock norm) "
            f"{before:.0f}, now {best:.0f} fp32 -> {before / best:.1f}x")
    write_result(args.out or args.workdir / "bench_window.json", result, line)
    return 0


def _networks(args):
    import torch

    from segforge.networks import build_network, to_device_layout
    from segforge.planning.plans import ChannelNormalization, Configuration, NetworkTopology, ResamplingSettings

    n = len(args.features)
    topology = NetworkTopology(features_per_stage=list(args.features), kernel_sizes=[[3, 3, 3]] * n,
                               strides=[[1, 1, 1]] + [[2, 2, 2]] * (n - 1), deep_supervision=True)
    configuration = Configuration(name="3d_fullres", kind="segmentation", spacing=[1.0, 1.0, 1.0],
                                  patch_size=list(args.patch), batch_size=2, network=topology,
                                  normalization=[ChannelNormalization("zscore")], resampling=ResamplingSettings(),
                                  median_shape=list(args.patch))
    torch.manual_seed(0)
    network = to_device_layout(build_network(configuration, 1, args.classes), "cpu")
    stock = copy.deepcopy(network)
    _use_stock_instance_norm(stock)
    return network, stock


def _use_stock_instance_norm(module) -> None:
    import torch

    for name, child in module.named_children():
        if isinstance(child, torch.nn.InstanceNorm3d) and type(child) is not torch.nn.InstanceNorm3d:
            plain = torch.nn.InstanceNorm3d(child.num_features, eps=child.eps, affine=True)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            _use_stock_instance_norm(child)


def _onnx(network, args):
    """The network through segforge's ONNX export, run by ONNX Runtime with ``--threads`` threads."""
    import torch

    from segforge.inference.model_export import ONNX_OPSET
    from segforge.inference.onnx_backend import OnnxNetwork

    path = args.workdir / "network.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(network, (torch.zeros(2, 1, *args.patch),), dynamo=True, opset_version=ONNX_OPSET,
                          input_names=["image"], output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}}).save(str(path))
    return OnnxNetwork(path, threads=args.threads)


def _bf16(network, x):
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16):
        return network(x)


def _cpu_ms(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN builds its kernels on first use
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best * 1000


def _profile(network, stock, patch, b: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(b, 1, *patch)
    out = {}
    for name, net in (("stock_instance_norm", stock), ("segforge", network)):
        with torch.inference_mode():
            net(x)
            with profile(activities=[ProfilerActivity.CPU]) as p:
                net(x)
        events = sorted(p.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
        total = sum(e.self_cpu_time_total for e in p.key_averages())
        out[name] = [{"op": e.key, "calls": e.count, "share": e.self_cpu_time_total / total} for e in events]
        print(f"{b} window(s)/pass, {name}: " + ", ".join(f"{e['op']} {e['share']:.0%} ({e['calls']})"
                                                         for e in out[name]), flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
