"""Augmented training patches per second from the real training loader, by number of workers.

    python benchmarks/bench_dataloader.py                                  # workers 0 1 2
    python benchmarks/bench_dataloader.py --training-json benchmarks/work/bench_training/bench_training.json
    python benchmarks/bench_dataloader.py --smoke

The loader is the one ``SegmentationTrainer`` builds (its patch sampler with foreground
oversampling and spatial-augmentation margin, its batchgenerators pipeline), started with
``make_loader`` for each worker count. After ``--warmup`` batches (worker start), the
time for ``--batches`` batches gives batches/s and patches/s. With ``--training-json``
(a ``bench_training.py`` result on the same plan) it says whether the loader keeps up with
the trainer: loader batches/s over the trainer's compute-only iterations/s (below 1 means
training waits for data with that many workers; on a shared CPU both compete for cores).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _common import (
    Timer,
    add_training_data_arguments,
    base_parser,
    prepare_training_data,
    remove_pipeline_folders,
    use_workdir,
    write_result,
)


def main(argv=None) -> int:
    parser = base_parser(__doc__, "bench_dataloader")
    add_training_data_arguments(parser)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts to try (default 0 1 2)")
    parser.add_argument("--batches", type=int, default=30, help="measured batches per worker count (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="batches taken before timing (default 3)")
    parser.add_argument("--training-json", type=Path, help="bench_training.py result to compare with")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_cases, args.shape, args.batches, args.warmup = 3, (20, 40, 40), 3, 1
        args.patch_size, args.batch_size, args.workers = (16, 32, 32), 2, [0, 1]
    out = args.out or args.workdir / "bench_dataloader.json"
    use_workdir(args.workdir)

    from segforge.data import TrainingBatches, make_loader, worker_seeds
    from segforge.training import SegmentationTrainer, TrainingOptions

    name, plans = prepare_training_data(993, args.num_cases, args.shape, args.gpu_memory_gb,
                                        num_processes=1 if args.smoke else 2, configurations=["3d_fullres"],
                                        patch_size=args.patch_size, batch_size=args.batch_size)
    configuration = plans.configuration("3d_fullres")
    trainer = SegmentationTrainer(plans, "3d_fullres", 0, device="cpu", options=TrainingOptions(progress_bar=False),
                                  log=lambda line: None)
    trainer.initialize()  # the fold's cases, the case store; the network is built but not used
    batch_size = configuration.batch_size
    rows = []
    for workers in args.workers:
        loader = make_loader(TrainingBatches(trainer.build_training_sampler()), trainer.training_transforms(), workers,
                             worker_seeds(0, 0, workers) if workers else None)
        try:
            for _ in range(args.warmup):
                next(loader)
            with Timer() as t:
                for _ in range(args.batches):
                    next(loader)
        finally:
            loader.close()
        rows.append({"workers": workers, "batches_per_second": args.batches / t.seconds,
                     "patches_per_second": args.batches * batch_size / t.seconds})
    result: dict = {"dataset": name, "num_cases": args.num_cases, "shape": list(args.shape),
                    "patch_size": list(configuration.patch_size), "batch_size": batch_size,
                    "sample_size": [int(v) for v in trainer.build_training_sampler().sample_size], "loader": rows}
    line = (f"loader {'x'.join(map(str, configuration.patch_size))} batch {batch_size}: "
            + ", ".join(f"{r['workers']} worker(s) {r['batches_per_second']:.2f} batches/s "
                        f"({r['patches_per_second']:.1f} patches/s)" for r in rows))
    if args.training_json:
        training = json.loads(args.training_json.read_text())
        if list(training["patch_size"]) != list(configuration.patch_size) or training["batch_size"] != batch_size:
            raise SystemExit(f"{args.training_json} measured patch {training['patch_size']} batch "
                             f"{training['batch_size']}; run both with the same sizes")
        compute = training["compute_only"]["iters_per_second"]
        for r in rows:
            r["supply_over_demand"] = r["batches_per_second"] / compute
        result["trainer"] = {"compute_only_iters_per_second": compute,
                             "end_to_end_iters_per_second": training["end_to_end"]["iters_per_second"],
                             "from": str(args.training_json)}
        line += f"; the trainer consumes {compute:.2f} it/s (compute only)"
    write_result(out, result, line)
    if not args.keep:
        remove_pipeline_folders(args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
