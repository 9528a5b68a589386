"""Iterations per second of the candidate plans, measured, against the planner's prediction.

    python benchmarks/budget_speed.py                           # all datasets, the CPU ladder (~10 minutes)
    python benchmarks/budget_speed.py --datasets organs --seconds 20
    python benchmarks/budget_speed.py --smoke

Run it ALONE on a quiet machine: its figures are what docs/planning.md turns budgets into
iterations with. For each dataset of ``budget_curves.DATASETS`` (generated with the same
seed and case count as the Dice curves, so the plans are the same) and each memory budget
of the planner's ladder that gives a distinct plan (``--max-gb`` at most):

1. calibration: :func:`segforge.planning.calibration.calibrate` once, fresh, with the
   thread count training uses; the cost model's predicted seconds per iteration per plan;
2. end to end: the real ``SegmentationTrainer`` with its default loader workers and
   threads, ``train_step(next(loader))`` for ``--seconds`` after ``--warmup`` steps
   (validation left out: the trainer sizes it to a share of the budget);
3. compute only: ``train_step`` on one fixed batch for the same time.

It also records, for ``--budgets`` minutes, which plan the planner picks with this
calibration. ``benchmarks/budget_table.py`` joins this with the Dice curves.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import base_parser, use_workdir, write_result  # noqa: E402
from budget_curves import DATASETS, make_dataset  # noqa: E402


def _time_steps(step, seconds: float, warmup: int, min_steps: int = 3) -> dict:
    for _ in range(warmup):
        step()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < min_steps:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    total = sum(times)
    return {"iters_per_second": len(times) / total, "median_seconds": times[len(times) // 2], "steps": len(times)}


def measure_plan(plans, name: str, seconds: float, warmup: int) -> dict:
    from segforge.data import TrainingBatches, make_loader
    from segforge.training import SegmentationTrainer, TrainingOptions

    options = TrainingOptions(epochs=1, iters_per_epoch=1, val_iters=1, progress_bar=False, plots=False)
    trainer = SegmentationTrainer(plans, name, 0, device="cpu", options=options, log=lambda line: None)
    trainer.initialize()
    trainer.wrap_network()
    loader = trainer.make_training_loader()
    try:
        end_to_end = _time_steps(lambda: trainer.train_step(trainer.prepare_batch(next(loader))).item(), seconds,
                                 warmup)
    finally:
        for each in [loader, *trainer.loaders]:
            each.close()
    batch = trainer.prepare_batch(next(make_loader(TrainingBatches(trainer.build_training_sampler()),
                                                   trainer.training_transforms(), 0)))
    compute = _time_steps(lambda: trainer.train_step(batch).item(), seconds, warmup)
    import torch

    return {"end_to_end": end_to_end, "compute_only": compute, "torch_threads": torch.get_num_threads(),
            "loader_workers": trainer.num_workers}


def main(argv=None) -> int:
    parser = base_parser(__doc__, "budget_speed")
    parser.add_argument("--datasets", nargs="+", default=sorted(DATASETS), choices=sorted(DATASETS))
    parser.add_argument("--max-gb", type=float, default=2.0, help="largest memory budget of the ladder measured")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per plan and mode")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budgets", type=float, nargs="+", default=[5.0, 15.0, 60.0])
    parser.add_argument("--replan", action="store_true",
                        help="measure nothing: the planner's choices again, with the calibration recorded in --out "
                        "(after a change of the rule)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.datasets, args.max_gb, args.seconds, args.warmup, args.budgets = ["organs"], 0.05, 0.5, 1, [5.0]
    out = args.out or args.workdir / "budget_speed.json"
    use_workdir(args.workdir)
    if args.replan:
        return replan(out, args)

    from segforge import paths
    from segforge.planning.budget_rule import MEMORY_LADDER_GB, plan_for_device, training_stages
    from segforge.planning.calibration import calibrate
    from segforge.planning.compute_rule import iteration_gflop, iteration_seconds
    from segforge.planning.device_profile import DeviceProfile, training_threads
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess
    from segforge.planning.planner import plan_experiment

    threads = training_threads()
    rates = calibrate("cpu", threads)
    profile = DeviceProfile(kind="cpu", name="this machine", memory_gb=args.max_gb, threads=threads, **rates)
    print(f"calibration ({threads} threads, {rates['calibration_seconds']} s): {json.dumps(rates)}", flush=True)
    result: dict = {"calibration": rates, "threads": threads, "datasets": {}}
    for key in args.datasets:
        spec = argparse_namespace(DATASETS[key], smoke=args.smoke)
        name = make_dataset(spec)
        ladder = [g for g in MEMORY_LADDER_GB if g <= args.max_gb]
        plan_and_preprocess(name, num_processes=2, gpu_memory_gb=ladder[0], configurations=["3d_fullres"],
                            progress=False, log=lambda line: None)
        fingerprint = json.loads((paths.preprocessed_root() / name / "fingerprint.json").read_text())
        rows, last = [], None
        for gb in ladder:
            plans = plan_experiment(fingerprint, gpu_memory_gb=gb)
            stage = training_stages(plans)[-1]
            config = "3d_fullres" if plans.configuration(stage).cascade is not None else stage
            c = plans.configuration(config)
            shape = (config, c.patch_size, c.batch_size, c.network.features_per_stage)
            if shape == last:
                continue
            last = shape
            plans.default_configuration = config
            measured = measure_plan(plans, config, args.seconds, args.warmup)
            predicted = iteration_seconds(c, profile, plans.num_channels, plans.num_classes)
            row = {"memory_gb": gb, "configuration": config, "patch_size": c.patch_size, "batch_size": c.batch_size,
                   "features": c.network.features_per_stage,
                   "gflop_per_iteration": iteration_gflop(c, plans.num_channels, plans.num_classes),
                   "predicted_seconds_per_iteration": predicted, **measured}
            row["measured_over_predicted"] = 1 / measured["end_to_end"]["iters_per_second"] / predicted
            rows.append(row)
            print(f"{key} {gb:g} GB {config} {'x'.join(map(str, c.patch_size))} b{c.batch_size} "
                  f"f{c.network.features_per_stage[0]}: end to end {measured['end_to_end']['iters_per_second']:.2f} "
                  f"it/s, compute only {measured['compute_only']['iters_per_second']:.2f} it/s, predicted "
                  f"{1 / predicted:.2f} it/s", flush=True)
        choices = {}
        for minutes in args.budgets:
            plans = plan_for_device(fingerprint, profile, train_minutes=minutes)
            choices[str(minutes)] = {"memory_gb": plans.gpu_memory_gb, "why": plans.compute.why["memory_gb"]}
        result["datasets"][key] = {"dataset": name, "plans": rows, "planner_choice": choices}
    lines = [f"{k}: " + ", ".join(f"{r['memory_gb']:g} GB {r['end_to_end']['iters_per_second']:.2f} it/s "
                                  f"(x{r['measured_over_predicted']:.2f} of predicted time)" for r in v["plans"])
             for k, v in result["datasets"].items()]
    write_result(out, result, "\n".join(lines))
    return 0


def replan(out: Path, args) -> int:
    """The planner's choices for ``--budgets`` with the calibration and datasets recorded in ``out``."""
    from segforge import paths
    from segforge.planning.budget_rule import MIN_ITERATIONS, plan_for_device
    from segforge.planning.device_profile import DeviceProfile
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess

    result = json.loads(out.read_text())
    profile = DeviceProfile(kind="cpu", name="this machine", memory_gb=args.max_gb, threads=result["threads"],
                            **{k: v for k, v in result["calibration"].items()})
    for key, entry in result["datasets"].items():
        name = make_dataset(argparse_namespace(DATASETS[key], smoke=args.smoke))
        plan_and_preprocess(name, num_processes=2, configurations=["3d_fullres"], plan_only=True, progress=False,
                            log=lambda line: None)
        fingerprint = json.loads((paths.preprocessed_root() / name / "fingerprint.json").read_text())
        entry["planner_choice"] = {}
        for minutes in args.budgets:
            plans = plan_for_device(fingerprint, profile, train_minutes=minutes)
            entry["planner_choice"][str(minutes)] = {"memory_gb": plans.gpu_memory_gb,
                                                     "why": plans.compute.why["memory_gb"]}
    result["replanned"] = f"planner_choice recomputed with MIN_ITERATIONS = {MIN_ITERATIONS} (budget_speed.py --replan)"
    write_result(out, result, "\n".join(f"{k}: " + ", ".join(f"{m} min -> {c['memory_gb']:g} GB"
                                                             for m, c in v["planner_choice"].items())
                                        for k, v in result["datasets"].items()))
    return 0


def argparse_namespace(spec: dict, smoke: bool):
    import argparse

    ns = argparse.Namespace(shape=None, data_seed=0, **spec)
    if smoke:
        ns.shape, ns.num_train, ns.num_test = (24, 40, 40), 4, 1
    return ns


if __name__ == "__main__":
    sys.exit(main())
