"""``--augment-on cpu`` (batchgenerators in the loader's workers) against ``--augment-on gpu`` (the workers
read each sample's source box, the torch module augments) — here on the CPU, where "gpu" means the
torch module running on the CPU device in the training process.

    python benchmarks/bench_augmentation.py                  # 8 synthetic CT cases 64x128x128, the CPU plan
    python benchmarks/bench_augmentation.py --patch-size 64 96 96 --batch-size 2 --workers 1 --iters 20
    python benchmarks/bench_augmentation.py --smoke

For each mode and worker count, on the same data and plan:

1. loader: augmented batches per second as the training loop receives them, after ``--warmup``
   batches (worker start): for ``cpu`` the batchgenerators loader; for ``gpu`` the tight-region loader
   plus the torch augmentation of each batch in this process (``SegmentationTrainer.prepare_batch``),
   and the loader alone (a fresh one, after its own warm-up); with the voxels a sample reads (``cpu``: the region any rotation and zoom
   could need; ``gpu``: the sample's source box, mean over the batches);
2. the torch augmentation alone, per batch, on boxes already read;
3. end to end: ``segforge_train`` as a child process, two epochs of ``--iters`` iterations with the
   first worker count, the second epoch's iterations/s from ``log.csv``.
"""

from __future__ import annotations

import csv
import shutil
import sys

import numpy as np

from _common import (
    Timer,
    add_training_data_arguments,
    base_parser,
    prepare_training_data,
    remove_pipeline_folders,
    train_briefly,
    use_workdir,
    write_result,
)


def main(argv=None) -> int:
    parser = base_parser(__doc__, "bench_augmentation")
    add_training_data_arguments(parser)
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="loader worker counts (default 1)")
    parser.add_argument("--batches", type=int, default=30, help="measured batches per loader run (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="batches taken before timing (default 3)")
    parser.add_argument("--iters", type=int, default=20, help="iterations per epoch of the end-to-end runs (default 20)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_cases, args.shape, args.batches, args.warmup, args.iters = 3, (20, 40, 40), 3, 1, 2
        args.patch_size, args.batch_size, args.workers = (16, 32, 32), 2, [1]
    out = args.out or args.workdir / "bench_augmentation.json"
    env = use_workdir(args.workdir)

    import torch

    from segforge.data import TrainingBatches, make_loader, sample_region_size, worker_seeds
    from segforge.data.region_batches import RegionBatches, label_dtype
    from segforge.training import SegmentationTrainer, TrainingOptions

    name, plans = prepare_training_data(994, args.num_cases, args.shape, args.gpu_memory_gb,
                                        num_processes=1 if args.smoke else 2, configurations=["3d_fullres"],
                                        patch_size=args.patch_size, batch_size=args.batch_size)
    configuration = plans.configuration("3d_fullres")
    patch, batch_size = list(configuration.patch_size), configuration.batch_size
    region = sample_region_size(patch, TrainingOptions().augmentation)
    result: dict = {"dataset": name, "num_cases": args.num_cases, "shape": list(args.shape), "patch_size": patch,
                    "batch_size": batch_size, "cpu_region": region, "loader": [], "end_to_end": {}}

    def trainer(mode: str, workers: int) -> SegmentationTrainer:
        options = TrainingOptions(progress_bar=False, augment_on=mode, num_workers=workers)
        t = SegmentationTrainer(plans, "3d_fullres", 0, device="cpu", options=options, log=lambda line: None)
        t.initialize()  # the fold's cases, the case store, the torch threads the trainer would use
        return t

    def timed(loader, step, batches: int) -> float:
        """Batches/s of ``step(next(loader))`` after ``--warmup`` batches (the workers' start)."""
        for _ in range(args.warmup):
            step(next(loader))
        with Timer() as whole:
            for _ in range(batches):
                step(next(loader))
        return batches / whole.seconds

    boxes_for_alone = None
    for workers in args.workers:
        for mode in ("cpu", "gpu"):
            t = trainer(mode, workers)
            seeds = worker_seeds(0, 0, workers) if workers else None

            def fresh_loader():
                if mode == "cpu":
                    return make_loader(TrainingBatches(t.build_training_sampler()), t.training_transforms(), workers,
                                       seeds)
                batches = RegionBatches(t.build_training_sampler(), t.batch_augmentation, plans.num_channels,
                                        labels=label_dtype(t.num_classes))
                return make_loader(batches, None, workers, seeds)

            volumes, raw = [], []

            def augment(item):
                if mode == "gpu":
                    volumes.extend(int(np.prod(s)) for s in item["box_sizes"])
                    raw.append(item)
                t.prepare_batch(item)

            loader = fresh_loader()
            try:
                rate = timed(loader, augment, args.batches)
            finally:
                loader.close()
            row = {"mode": mode, "workers": workers, "torch_threads": torch.get_num_threads(),
                   "augmented_batches_per_second": rate,
                   "voxels_read_per_sample": float(np.mean(volumes)) if volumes else float(np.prod(region))}
            if mode == "gpu":
                loader = fresh_loader()  # the loader alone, from its start (a queue filled meanwhile would flatter it)
                try:
                    row["loader_alone_batches_per_second"] = timed(loader, lambda item: None, args.batches)
                finally:
                    loader.close()
                boxes_for_alone = (t, raw[args.warmup:])
            result["loader"].append(row)

    t, raw = boxes_for_alone
    with Timer() as alone:
        for item in raw:
            t.prepare_batch(item)
    result["torch_augmentation_seconds_per_batch"] = alone.seconds / len(raw)

    for mode in ("cpu", "gpu"):
        log = args.workdir / f"train_{mode}.log"
        m = train_briefly(name, "3d_fullres", env, log, epochs=2, iters_per_epoch=args.iters,
                          num_workers=args.workers[0], extra=["--augment-on", mode, "--no-plots"])
        fold = next((args.workdir / "segforge_results").glob(f"{name}/*/fold_0"))
        rows = list(csv.DictReader(open(fold / "log.csv")))
        result["end_to_end"][mode] = {"iters_per_second": float(rows[-1]["iters_per_second"]),
                                      "command_seconds": m.seconds, "peak_rss_gib": m.peak_rss_bytes / 2**30}
        shutil.rmtree(fold.parent)  # the next mode trains from scratch
    result["what"] = ("loader: augmented batches/s as the training loop receives them (gpu: tight-region loader + "
                      f"torch augmentation in this process); end to end: segforge_train --device cpu, 2 epochs of "
                      f"{args.iters} iterations, second epoch")

    by = {(r["mode"], r["workers"]): r for r in result["loader"]}
    w = args.workers[0]
    line = (f"augmentation {'x'.join(map(str, patch))} batch {batch_size}, {w} worker(s): loader "
            f"cpu {by[('cpu', w)]['augmented_batches_per_second']:.2f} vs gpu-on-cpu "
            f"{by[('gpu', w)]['augmented_batches_per_second']:.2f} batches/s (loader alone "
            f"{by[('gpu', w)]['loader_alone_batches_per_second']:.2f}; voxels read per sample "
            f"{by[('cpu', w)]['voxels_read_per_sample']:.0f} vs {by[('gpu', w)]['voxels_read_per_sample']:.0f}); "
            f"torch augmentation {1000 * result['torch_augmentation_seconds_per_batch']:.0f} ms/batch; training "
            f"{result['end_to_end']['cpu']['iters_per_second']:.2f} vs {result['end_to_end']['gpu']['iters_per_second']:.2f}"
            " it/s")
    write_result(out, result, line)
    if not args.keep:
        remove_pipeline_folders(args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
