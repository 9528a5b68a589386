"""Training iterations per second of the real trainer, end to end and with data loading taken out.

    python benchmarks/bench_training.py                      # 8 synthetic CT cases, the CPU plan (0.5 GB budget)
    python benchmarks/bench_training.py --patch-size 64 96 96 --batch-size 2 --iters 20
    python benchmarks/bench_training.py --smoke

1. end to end: ``segforge_train DATASET 0`` as a child process, two epochs of ``--iters``
   iterations with ``--num-workers`` loader processes; the second epoch's training
   iterations/s from ``log.csv`` (the first is warm-up: worker start, first allocations);
2. compute only: the same ``SegmentationTrainer`` in this process, ``train_step`` on one
   fixed augmented batch (no loader), after ``--warmup`` steps, with the torch threads the
   trainer gives itself (CPU count less the loader workers).
When (1) is clearly below (2), training waits for data; compare with
``bench_dataloader.py``, which measures the loader alone.
"""

from __future__ import annotations

import csv
import sys

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
    parser = base_parser(__doc__, "bench_training")
    add_training_data_arguments(parser)
    parser.add_argument("--iters", type=int, default=20, help="measured iterations (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="compute-only warm-up iterations (default 3)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="loader processes (default: the trainer's default, CPU count - 1)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_cases, args.shape, args.iters, args.warmup = 3, (20, 40, 40), 2, 1
        args.patch_size, args.batch_size = (16, 32, 32), 2
    out = args.out or args.workdir / "bench_training.json"
    env = use_workdir(args.workdir)

    import torch

    from segforge.data import TrainingBatches, default_num_workers, make_loader
    from segforge.training import SegmentationTrainer, TrainingOptions

    workers = default_num_workers() if args.num_workers is None else args.num_workers
    name, plans = prepare_training_data(992, args.num_cases, args.shape, args.gpu_memory_gb,
                                        num_processes=1 if args.smoke else 2, configurations=["3d_fullres"],
                                        patch_size=args.patch_size, batch_size=args.batch_size)
    configuration = plans.configuration("3d_fullres")
    network = configuration.network
    result: dict = {
        "dataset": name, "num_cases": args.num_cases, "shape": list(args.shape), "configuration": "3d_fullres",
        "patch_size": list(configuration.patch_size), "batch_size": configuration.batch_size,
        "features_per_stage": list(network.features_per_stage), "stages": len(network.features_per_stage),
        "loader_workers": workers,
    }

    # 1. end to end, the real command
    log = args.workdir / "train.log"
    m = train_briefly(name, "3d_fullres", env, log, epochs=2, iters_per_epoch=args.iters, num_workers=workers)
    rows = list(csv.DictReader(open(next((args.workdir / "segforge_results").glob(f"{name}/*/fold_0/log.csv")))))
    result["end_to_end"] = {"iters_per_second": float(rows[-1]["iters_per_second"]),
                            "first_epoch_iters_per_second": float(rows[0]["iters_per_second"]),
                            "command_seconds": m.seconds, "peak_rss_gib": m.peak_rss_bytes / 2**30,
                            "what": f"segforge_train, 2 epochs of {args.iters} iterations, second epoch from log.csv"}

    # 2. compute only: one fixed batch, no loader
    options = TrainingOptions(epochs=1, iters_per_epoch=args.iters, val_iters=1, num_workers=workers,
                              progress_bar=False)
    trainer = SegmentationTrainer(plans, "3d_fullres", 0, device="cpu", options=options, log=lambda line: None)
    trainer.initialize()
    loader = make_loader(TrainingBatches(trainer.build_training_sampler()), trainer.training_transforms(), 0)
    batch = next(loader)
    for _ in range(args.warmup):
        trainer.train_step(batch)
    with Timer() as t:
        for _ in range(args.iters):
            loss = trainer.train_step(batch)
        float(loss)  # wait for the last step
    parameters = sum(p.numel() for p in trainer.network.parameters())
    result["compute_only"] = {"iters_per_second": args.iters / t.seconds, "torch_threads": torch.get_num_threads(),
                              "what": f"train_step on one fixed batch, {args.iters} iterations after {args.warmup}"}
    result["parameters"] = parameters
    e2e, compute = result["end_to_end"]["iters_per_second"], result["compute_only"]["iters_per_second"]
    result["end_to_end_over_compute_only"] = e2e / compute
    line = (f"training {'x'.join(map(str, configuration.patch_size))} batch {configuration.batch_size} "
            f"({len(network.features_per_stage)} stages, {parameters / 1e6:.2f} M parameters) on CPU: "
            f"{e2e:.2f} it/s end to end with {workers} loader worker(s), {compute:.2f} it/s compute only "
            f"({torch.get_num_threads()} threads) -> {100 * e2e / compute:.0f}% of compute-bound speed")
    write_result(out, result, line)
    if not args.keep:
        remove_pipeline_folders(args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
