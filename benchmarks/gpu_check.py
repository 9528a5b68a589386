"""The GPU check of issue 13: nnU-Net's reference plan on one GPU, in a few minutes, as JSON.

    python benchmarks/gpu_check.py --out $OUT/gpu_check.json      # on a CUDA machine (docs/benchmarks.md)
    python benchmarks/gpu_check.py --smoke                        # tiny, on the CPU: checks that it runs

The reference (nnU-Net v2 on one H100, 16 CPU cores, default 3d_fullres plan of 16 MRI cases
at 1 mm): patch 128³, batch 2, a 6-stage U-Net with 32→320 features, compiled, mixed
precision: 12.5-13.9 training iterations/s end to end, 20.7 it/s with data loading taken out,
7.1 GiB. This script makes the same situation and measures segforge in it:

0. data: ``--num-cases`` synthetic cases of ``--shape`` voxels (default 16 of 200³), written
   straight as preprocessed arrays (z-scored image, labels 0..2, the case JSON), and plans
   with exactly that network, patch and batch (no SimpleITK reading, no planner);
1. end to end, ``--augment-on gpu``: the trainer's own epoch (``Trainer.train_epoch``: loader
   workers reading each sample's source box, pinned memory, the side-stream prefetcher, the
   torch augmentation on the GPU, the compiled bf16/fp16 step), ``--warmup`` iterations first
   (the compilation, the workers' start), then ``--iters`` timed;
2. end to end, ``--augment-on cpu``: the same epoch with batchgenerators in the loader's workers
   (nnU-Net's way), on the same trainer and compiled network;
3. the GPU step alone: ``train_step`` on one augmented batch already on the GPU, compiled;
   then eager, with contiguous and with channels-last weights and inputs (for the decision of
   docs/training.md); peak GPU memory of the compiled step and of the whole check;
4. sliding-window prediction of one case with and without mirroring (``Predictor`` with the
   weights just trained: network + float16 accumulation, then labels made on the GPU).

Each phase's figures are written to ``--out`` as soon as they are known, so a run cut short
still leaves what it measured; a phase that fails records its error and the others go on
(exit code 1). ``--workers`` loader processes (default: the trainer's default, CPU count - 1,
at most 12 — nnU-Net used 12). Needs segforge's imports: SimpleITK and batchgenerators (the
device machine lacks them: docs/benchmarks.md says how to carry their wheels).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from _common import Timer, base_parser, machine, remove_pipeline_folders, use_workdir, write_result

DATASET = "Dataset913_GpuCheck"
LABELS = {"background": 0, "organ": 1, "lesion": 2}


def _refusal(args) -> str | None:
    """Why this machine cannot run the check (one line), or None."""
    missing = []
    for module in ("SimpleITK", "batchgenerators", "scipy", "skimage"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return (f"segforge needs {', '.join(missing)} here; carry the wheels (docs/benchmarks.md, "
                "'The GPU check')")
    import torch

    if args.device is None and not args.smoke and not torch.cuda.is_available():
        return ("no CUDA device here; --smoke runs it on the CPU at toy size (--device cpu runs the full size "
                "on the CPU, for hours)")
    return None


def make_plans(patch, batch_size, features, shape):
    """nnU-Net's 3d_fullres for the data: one stride-1 stage, then stride 2 on every axis per stage."""
    from segforge.networks.topology import NetworkTopology
    from segforge.planning.plans import ChannelNormalization, Configuration, Plans, ResamplingSettings

    n = len(features)
    network = NetworkTopology(features_per_stage=list(features), kernel_sizes=[[3, 3, 3]] * n,
                              strides=[[1, 1, 1]] + [[2, 2, 2]] * (n - 1))
    configuration = Configuration(name="3d_fullres", kind="segmentation", spacing=[1.0, 1.0, 1.0],
                                  patch_size=list(patch), batch_size=int(batch_size), network=network,
                                  normalization=[ChannelNormalization("zscore")], resampling=ResamplingSettings(),
                                  median_shape=list(shape), why={"gpu_check": "nnU-Net's default 3d_fullres plan"})
    return Plans(dataset_name=DATASET, channel_names={"0": "MR"}, labels=dict(LABELS),
                 configurations={"3d_fullres": configuration}, default_configuration="3d_fullres",
                 gpu_memory_gb=8.0)


def write_case(folder: Path, name: str, shape, rng: np.random.Generator, version: str) -> None:
    """A z-scored image: an ellipsoidal organ (1) holding a few lesions (2), on noise."""
    zz, yy, xx = np.ogrid[tuple(slice(0, s) for s in shape)]
    shape_arr = np.asarray(shape, dtype=np.float64)
    centre = shape_arr * rng.uniform(0.4, 0.6, 3)
    radii = shape_arr * rng.uniform(0.2, 0.3, 3)
    organ = ((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 + ((xx - centre[2]) / radii[2]) ** 2 <= 1
    seg = organ.astype(np.int16)
    for _ in range(3):
        c = centre + rng.uniform(-0.5, 0.5, 3) * radii
        r = float(rng.uniform(0.05, 0.12) * shape_arr.min())
        seg[((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r) & organ] = 2
    image = rng.standard_normal(shape, dtype=np.float32) * 0.5
    image += np.array([0.0, 1.5, -1.0], np.float32)[seg]
    np.save(folder / f"{name}.npy", image[None])
    np.save(folder / f"{name}_seg.npy", seg)
    locations = {}
    for k in (1, 2):
        points = np.argwhere(seg == k)
        if len(points) > 10_000:
            points = points[rng.choice(len(points), 10_000, replace=False)]
        locations[str(k)] = points.tolist()
    foreground = np.argwhere(seg > 0).mean(0).tolist()
    geometry = {"spacing": [1.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0], "direction": np.eye(3).ravel().tolist(),
                "shape": list(shape)}
    props = {"case": name, "configuration": "3d_fullres", "plans_version": version,
             "crop_box": [[0, s] for s in shape], "shape_after_crop": list(shape), "preprocessed_shape": list(shape),
             "preprocessed_spacing": [1.0, 1.0, 1.0], "original_geometry": geometry, "class_locations": locations,
             "centroid_voxel": foreground, "centroid_world": foreground[::-1]}
    (folder / f"{name}.json").write_text(json.dumps(props))


def write_dataset(root: Path, plans, num_cases: int, shape) -> Path:
    folder = root / DATASET
    cases = folder / "3d_fullres"
    cases.mkdir(parents=True)
    plans.save(folder / "plans.json")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": plans.channel_names, "labels": plans.labels,
                                                     "numTraining": num_cases, "file_ending": ".nii.gz"}))
    rng = np.random.default_rng(0)
    version = plans.configurations["3d_fullres"].version()
    for i in range(num_cases):
        write_case(cases, f"case_{i:03d}", tuple(shape), rng, version)
    return folder


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory(device) -> dict:
    import torch

    if device.type != "cuda":
        return {}
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30}


def _reset_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def epoch_its(trainer, mode: str, warmup: int, iters: int) -> dict:
    """Iterations/s of the trainer's own epoch with ``--augment-on mode``: loader workers, transfer,
    augmentation and the step, after ``warmup`` iterations; keeps one augmented batch for the step alone."""
    from segforge.data.batch_augmentation import BatchAugmentation

    trainer.augment_on = mode
    trainer.batch_augmentation = (BatchAugmentation(trainer.configuration.patch_size, trainer.options.augmentation)
                                  if mode == "gpu" else None)
    trainer.train_loader = trainer.on_device(trainer.make_training_loader())
    trainer.loaders.append(trainer.train_loader)
    try:
        with Timer() as warm:
            trainer.options = dataclasses.replace(trainer.options, iters_per_epoch=warmup)
            trainer.train_epoch(0)
        _reset_memory(trainer.device)
        trainer.options = dataclasses.replace(trainer.options, iters_per_epoch=iters)
        loss, its = trainer.train_epoch(1)
        trainer.fixed_batch = trainer.prepare_batch(next(trainer.train_loader))
    finally:
        for loader in trainer.loaders:
            loader.close()
        trainer.loaders.clear()
    return {"iters_per_second": its, "iterations": iters, "warmup_iterations": warmup,
            "warmup_seconds": warm.seconds, "loss": loss, **_memory(trainer.device)}


def step_its(trainer, batch: dict, warmup: int, iters: int) -> float:
    """``train_step`` alone on ``batch`` (already on the device), iterations/s."""
    for _ in range(warmup):
        trainer.train_step(batch)
    _sync(trainer.device)
    with Timer() as t:
        for _ in range(iters):
            loss = trainer.train_step(batch)
        float(loss)  # waits for the last step
    return iters / t.seconds


def step_alone(trainer, warmup: int, iters: int) -> dict:
    import torch

    batch = trainer.fixed_batch
    _reset_memory(trainer.device)
    result = {"compiled" if trainer.compiled else "as_trained": step_its(trainer, batch, warmup, iters),
              **_memory(trainer.device)}
    compiled_network = trainer.network
    trainer.network = trainer.plain_network  # eager, for the layout comparison
    try:
        for name, layout in (("eager_contiguous", torch.contiguous_format), ("eager_channels_last", torch.channels_last_3d)):
            trainer.plain_network.to(memory_format=layout)
            moved = dict(batch, data=batch["data"].contiguous(memory_format=layout))
            result[name] = step_its(trainer, moved, max(1, warmup // 2), iters)
    finally:
        trainer.plain_network.to(memory_format=torch.contiguous_format)
        trainer.network = compiled_network
    return result


def sliding_window(trainer, preprocessed: Path, repeats: int, warmup: bool = True) -> dict:
    """One case through ``Predictor`` with the weights just trained, mirroring on and off."""
    from segforge.inference.predictor import Predictor

    trainer.save_checkpoint("final", 0)
    trainer.write_model_folder_files()
    predictor = Predictor(trainer.model_folder, folds=[0], device=trainer.device, tta=True)
    name = "case_000"
    data = np.load(preprocessed / "3d_fullres" / f"{name}.npy")
    properties = json.loads((preprocessed / "3d_fullres" / f"{name}.json").read_text())
    result = {"windows_per_pass": predictor.window_batch, "case_shape": list(data.shape[1:])}
    for mirroring in (False, True):
        predictor.set_speed(tta=mirroring)
        times, network_times = [], []
        for i in range(repeats + warmup):  # the first is warm-up (cuDNN's choices, allocations)
            _sync(predictor.device)
            with Timer() as whole:
                probabilities = predictor.predict_preprocessed(data, properties)
                _sync(predictor.device)
                network_seconds = time.perf_counter() - whole.start
                labels, _ = predictor.restore(probabilities, properties)
            if i >= warmup:
                times.append(whole.seconds)
                network_times.append(network_seconds)
        key = "mirroring" if mirroring else "no_mirroring"
        result[key] = {"seconds_per_case": float(np.mean(times)), "network_seconds": float(np.mean(network_times)),
                       "mirror_axes": list(predictor.mirror_axes), "foreground_fraction": float((labels > 0).mean())}
    return result


def main(argv=None) -> int:
    parser = base_parser(__doc__, "gpu_check")
    parser.add_argument("--num-cases", type=int, default=16, help="synthetic cases (default 16)")
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 200, 200), metavar=("Z", "Y", "X"))
    parser.add_argument("--patch-size", type=int, nargs=3, default=(128, 128, 128), metavar=("Z", "Y", "X"))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--features", type=int, nargs="+", default=[32, 64, 128, 256, 320, 320],
                        help="features per stage (default nnU-Net's 32 64 128 256 320 320)")
    parser.add_argument("--workers", type=int, default=None, help="loader processes (default: the trainer's)")
    parser.add_argument("--warmup", type=int, default=30, help="iterations before timing (default 30)")
    parser.add_argument("--iters", type=int, default=150, help="timed iterations end to end (default 150)")
    parser.add_argument("--step-iters", type=int, default=60, help="timed iterations of the step alone (default 60)")
    parser.add_argument("--repeats", type=int, default=2, help="timed predictions per setting (default 2)")
    parser.add_argument("--device", default=None, help="default: cuda when there is one, else cpu")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_cases, args.shape, args.patch_size, args.batch_size = 4, (24, 48, 48), (16, 32, 32), 2
        args.features, args.workers, args.warmup, args.iters, args.step_iters, args.repeats = [4, 8, 16], 1, 1, 2, 2, 1
    refusal = _refusal(args)
    if refusal:
        print(f"gpu_check: {refusal}", file=sys.stderr)
        return 2
    out = args.out or args.workdir / "gpu_check.json"
    use_workdir(args.workdir)

    import torch

    from segforge.training import SegmentationTrainer, TrainingOptions

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    started = time.perf_counter()
    result: dict = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "reference": "nnU-Net v2.8.1, one H100, 16 cores: 12.5-13.9 it/s end to end, 20.7 it/s "
                                 "without data loading, 7.1 GiB (issue 13)", "errors": {}}
    plans = make_plans(args.patch_size, args.batch_size, args.features, args.shape)
    with Timer() as t:
        preprocessed = write_dataset(args.workdir / "segforge_preprocessed", plans, args.num_cases, args.shape)
    result["data"] = {"num_cases": args.num_cases, "shape": list(args.shape), "seconds": t.seconds}
    result["plan"] = {"patch_size": list(args.patch_size), "batch_size": args.batch_size,
                      "features_per_stage": list(args.features)}

    def save(phase: str) -> None:
        result["seconds_so_far"] = time.perf_counter() - started
        result["machine"] = machine()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[{result['seconds_so_far']:6.0f} s] {phase}: {json.dumps(result.get(phase, result['errors'].get(phase)))}",
              flush=True)

    save("data")
    # epochs only size the learning-rate schedule (it must not reach 0 during the check)
    options = TrainingOptions(epochs=1000, iters_per_epoch=args.iters, val_iters=2, num_workers=args.workers,
                              progress_bar=False, plots=False, augment_on="gpu", seed=0)
    trainer = SegmentationTrainer(plans, "3d_fullres", 0, device=device, options=options, preprocessed_dir=preprocessed,
                                  log=lambda line: None)
    trainer.initialize()
    trainer.wrap_network()
    from segforge.training.reporting import EpochReporter

    trainer.reporter = EpochReporter(trainer.output_folder, trainer.options, lambda line: None, False)
    result["training"] = {"workers": trainer.num_workers, "compiled": trainer.compiled,
                          "precision": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "float32",
                          "parameters": sum(p.numel() for p in trainer.plain_network.parameters())}
    phases = [
        ("end_to_end_gpu_augmentation", lambda: epoch_its(trainer, "gpu", args.warmup, args.iters)),
        ("end_to_end_cpu_augmentation", lambda: dict(epoch_its(trainer, "cpu", args.warmup, args.iters),
                                                     loader="batchgenerators in the loader's workers")),
        ("gpu_step_alone", lambda: step_alone(trainer, 5 if not args.smoke else 1, args.step_iters)),
        ("sliding_window", lambda: sliding_window(trainer, preprocessed, args.repeats, warmup=not args.smoke)),
    ]
    for phase, run in phases:
        try:
            result[phase] = run()
        except Exception as exc:  # noqa: BLE001 - one failing phase must not lose the others' figures
            result["errors"][phase] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        save(phase)
    result["total_seconds"] = time.perf_counter() - started
    e2e = result.get("end_to_end_gpu_augmentation", {}).get("iters_per_second", float("nan"))
    cpu = result.get("end_to_end_cpu_augmentation", {}).get("iters_per_second", float("nan"))
    step = result.get("gpu_step_alone", {})
    window = result.get("sliding_window", {})
    line = (f"gpu_check on {result['gpu'] or device}: end to end {e2e:.1f} it/s (GPU augmentation) vs {cpu:.1f} it/s "
            f"(CPU augmentation); step alone {step.get('compiled', step.get('as_trained', float('nan'))):.1f} it/s, "
            f"peak {step.get('peak_reserved_gib', float('nan')):.1f} GiB; sliding window "
            f"{window.get('no_mirroring', {}).get('seconds_per_case', float('nan')):.2f} s/case, mirrored "
            f"{window.get('mirroring', {}).get('seconds_per_case', float('nan')):.2f} s/case; "
            f"{result['total_seconds']:.0f} s in all" + (f"; FAILED: {', '.join(result['errors'])}" if result["errors"] else ""))
    write_result(out, result, line)
    if not args.keep:
        remove_pipeline_folders(args.workdir)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
