#!/usr/bin/env python
"""Cases per minute on one machine: local executor vs Ray, processes vs threads (docs/scaling.md).

1. preprocessing of ``--num-train`` synthetic CT cases: local executor with ``--workers``
   processes, then the Ray executor with as many actors (each case redone from scratch);
2. prediction of ``--num-test`` cases with a briefly trained model (its weights do not
   matter for speed), three ways on the CPU:
   * one process with ``--workers`` intra-op threads (the default of ``segforge_predict``),
   * ``--workers`` processes with one thread each (``segforge_predict -np W``),
   * ``--workers`` Ray actors with one thread each (``--executor ray``).

Wall-clock includes starting the workers (and loading the model in each), not starting
Ray itself (reported apart). Run it on a quiet machine: timings under load are not
measurements. Smoke run: ``python benchmarks/bench_scaling.py --smoke``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from _common import Timer, base_parser, make_organs_dataset, plan_and_preprocess, remove_pipeline_folders, \
    train_briefly, use_workdir, write_result


def main(argv=None) -> int:
    parser = base_parser(__doc__, "bench_scaling")
    parser.add_argument("--num-train", type=int, default=16, help="cases preprocessed (default 16)")
    parser.add_argument("--num-test", type=int, default=16, help="cases predicted (default 16)")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 128, 128), metavar=("Z", "Y", "X"),
                        help="voxels per case (default 64 128 128)")
    parser.add_argument("--workers", type=int, default=2, help="processes / actors / threads compared (default 2)")
    parser.add_argument("--gpu-memory-gb", type=float, default=0.5, help="memory the plan is sized for (default 0.5)")
    parser.add_argument("--no-ray", action="store_true", help="only the local executor")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_train, args.num_test, args.shape, args.gpu_memory_gb = 2, 4, (20, 40, 40), 0.1
    out = args.out or args.workdir / "bench_scaling.json"
    env = use_workdir(args.workdir)
    result: dict = {"workers": args.workers, "shape": list(args.shape), "num_train": args.num_train,
                    "num_test": args.num_test}

    name = make_organs_dataset(996, args.num_train, args.num_test, args.shape)
    plans = plan_and_preprocess(name, args.gpu_memory_gb, args.workers, configurations=["3d_fullres"],
                                patch_size=(16, 32, 32) if args.smoke else None)
    ray_ok, why = _ray_available(args.no_ray)
    if ray_ok:
        import ray

        with Timer() as start:
            ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        result["ray_start_seconds"] = start.seconds
    else:
        result["ray"] = why

    # 1. preprocessing
    from segforge.execution import ExecutionSettings

    rows = {"local": ExecutionSettings(workers=args.workers)}
    if ray_ok:
        rows["ray"] = ExecutionSettings(executor="ray", workers=args.workers)
    result["preprocessing"] = {k: _time_preprocessing(name, plans, s) for k, s in rows.items()}

    # 2. prediction
    train_briefly(name, "3d_fullres", env, args.workdir / "train.log", iters_per_epoch=2, num_workers=0)
    rows = {f"1 process x {args.workers} threads": ExecutionSettings(workers=1, threads_per_worker=args.workers),
            f"{args.workers} processes x 1 thread": ExecutionSettings(workers=args.workers, threads_per_worker=1)}
    if ray_ok:
        rows[f"ray {args.workers} actors x 1 thread"] = ExecutionSettings(executor="ray", workers=args.workers)
    result["prediction"] = {k: _time_prediction(name, s, args.workdir / "predictions") for k, s in rows.items()}

    line = "cases per minute: preprocessing " + ", ".join(
        f"{k} {v['cases_per_minute']:.1f}" for k, v in result["preprocessing"].items())
    line += "; prediction " + ", ".join(f"{k} {v['cases_per_minute']:.1f}" for k, v in result["prediction"].items())
    write_result(out, result, line)
    if not args.keep:
        remove_pipeline_folders(args.workdir)
        shutil.rmtree(args.workdir / "predictions", ignore_errors=True)
    return 0


def _ray_available(disabled: bool) -> tuple[bool, str]:
    if disabled:
        return False, "not measured (--no-ray)"
    try:
        import ray  # noqa: F401
    except ImportError:
        return False, "not measured: Ray is not installed (pip install 'segforge[ray]')"
    return True, ""


def _time_preprocessing(name: str, plans, settings) -> dict:
    from segforge import paths
    from segforge.preprocessing import preprocess_dataset

    folder = paths.preprocessed_dataset_dir(name) / plans.configuration("3d_fullres").data_identifier
    for p in folder.glob("*.json"):
        p.unlink()  # every case is redone
    with Timer() as t:
        done = preprocess_dataset(name, plans, ["3d_fullres"], progress=False, execution=settings)
    n = len(done["3d_fullres"])
    return {"cases": n, "seconds": t.seconds, "cases_per_minute": 60.0 * n / t.seconds}


def _time_prediction(name: str, settings, out_root: Path) -> dict:
    from segforge.inference import create_predictor, discover_cases, predict_cases, resolve_model_folder
    from segforge.io.dataset import RawDataset

    predictor = create_predictor(resolve_model_folder(name, None, "3d_fullres", None), folds=["0"], device="cpu",
                                 tta=False)
    cases = discover_cases(RawDataset.open(name).root / "imagesTs")
    out = out_root / f"run{len(list(out_root.glob('run*'))) if out_root.exists() else 0}"
    phases: dict[str, float] = {}
    with Timer() as t:
        reports = predict_cases(predictor, cases, out, log=lambda line: None, execution=settings)
    failed = [r.name for r in reports if r.status != "done"]
    if failed:
        raise SystemExit(f"prediction failed for {failed}: {[r.reason for r in reports if r.status != 'done']}")
    for r in reports:
        for k, v in r.seconds.items():
            phases[k] = phases.get(k, 0.0) + v / len(reports)
    return {"cases": len(reports), "seconds": t.seconds, "cases_per_minute": 60.0 * len(reports) / t.seconds,
            "mean_phase_seconds": phases}


if __name__ == "__main__":
    sys.exit(main())
