"""Inference seconds per case: single-stage sliding window, and the cascade against whole-volume sliding window.

    python benchmarks/bench_inference.py                    # organs + small-target datasets, CPU, no mirroring
    python benchmarks/bench_inference.py --tta              # with mirroring (8 passes per window in 3D)
    python benchmarks/bench_inference.py --tta --bf16       # bfloat16 networks (CPUs with native BF16)
    python benchmarks/bench_inference.py --fast             # segforge_predict --fast
    python benchmarks/bench_inference.py --skip-cascade
    python benchmarks/bench_inference.py --smoke

Models are trained for a few iterations only (their speed, not their quality, is measured),
with the real ``segforge_train``. Each held-out case is then predicted in this process by
the real predictor (``create_predictor``), timed per step: preprocess (crop, resample,
normalise), predict (sliding window; for the cascade: locate, crop, segment, paste),
restore (back onto the input grid). The first case is a warm-up and left out of the means.

1. single-stage: the ``organs`` dataset, ``3d_fullres``;
2. cascade: the ``small_target`` dataset (a small target in a large field of view, which
   the planner sends through the cascade): ``cascade_fullres`` (locator + crop segmenter)
   against ``3d_fullres`` (sliding window over the whole volume) on the same images.
"""

from __future__ import annotations

import sys

import numpy as np
from _common import (
    Timer,
    base_parser,
    plan_and_preprocess,
    prepare_training_data,
    remove_pipeline_folders,
    train_briefly,
    use_workdir,
    write_result,
)


def main(argv=None) -> int:
    parser = base_parser(__doc__, "bench_inference")
    parser.add_argument("--num-test", type=int, default=3, help="held-out cases predicted per model (default 3)")
    parser.add_argument("--num-train", type=int, default=4, help="training cases (default 4)")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 128, 128), metavar=("Z", "Y", "X"),
                        help="organs case shape (default 64 128 128)")
    parser.add_argument("--cascade-shape", type=int, nargs=3, default=(96, 192, 192), metavar=("Z", "Y", "X"),
                        help="small-target case shape (default 96 192 192)")
    parser.add_argument("--gpu-memory-gb", type=float, default=0.5, help="memory the plans are sized for (default 0.5)")
    parser.add_argument("--tta", action="store_true", help="mirroring test-time augmentation (default off)")
    parser.add_argument("--step", type=float, default=0.5, help="sliding-window step (default 0.5)")
    parser.add_argument("--bf16", action="store_true", help="networks in bfloat16")
    parser.add_argument("--fast", action="store_true", help="the --fast settings (overrides --tta and --step)")
    parser.add_argument("--skip-cascade", action="store_true", help="only the single-stage part")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_test, args.num_train, args.shape, args.cascade_shape = 2, 2, (20, 40, 40), (48, 96, 96)
        args.gpu_memory_gb, args.step = 0.1, 1.0  # small patches, abutting windows: still a cascade plan
    out = args.out or args.workdir / "bench_inference.json"
    env = use_workdir(args.workdir)
    result: dict = {"tta": args.tta, "step": args.step, "num_test": args.num_test, "bf16": args.bf16,
                    "fast": args.fast}
    patch = (16, 32, 32) if args.smoke else None

    # 1. single-stage on organs
    name, plans = prepare_training_data(994, args.num_train, args.shape, args.gpu_memory_gb,
                                        num_processes=1 if args.smoke else 2, num_test=args.num_test,
                                        configurations=["3d_fullres"], patch_size=patch)
    train_briefly(name, "3d_fullres", env, args.workdir / "train_organs.log", iters_per_epoch=2, num_workers=0)
    single = time_model(name, "3d_fullres", args)
    result["single_stage"] = {"dataset": name, "shape": list(args.shape), **single}
    line = (f"inference on CPU ({'mirroring' if args.tta else 'no mirroring'}, step {args.step}): single-stage "
            f"{_fmt(single)}")

    # 2. cascade vs whole-volume sliding window on small-target data
    if not args.skip_cascade:
        result["cascade"] = cascade_part(args, env)
        c = result["cascade"]
        if c.get("available"):
            line += (f"; small target {'x'.join(map(str, args.cascade_shape))}: cascade {_fmt(c['cascade_fullres'])}, "
                     f"whole-volume {_fmt(c['3d_fullres'])} -> cascade {c['speedup']:.1f}x faster")
        else:
            line += f"; cascade not measured: {c['why']}"
    write_result(out, result, line)
    if not args.keep:
        remove_pipeline_folders(args.workdir)
    return 0


def cascade_part(args, env: dict) -> dict:
    name, plans = prepare_training_data(995, args.num_train, args.cascade_shape, args.gpu_memory_gb,
                                        num_processes=1 if args.smoke else 2, num_test=args.num_test,
                                        kind="small_target")
    if "cascade_fullres" not in plans.configurations:
        return {"available": False, "why": f"the planner did not plan a cascade for {name}: {plans.why.get('cascade')}"}
    # the whole-volume model to compare with
    plan_and_preprocess(name, args.gpu_memory_gb, 1 if args.smoke else 2, configurations=["3d_fullres"])
    cascade = plans.configuration("cascade_fullres")
    for configuration in ("3d_fullres", "cascade_fullres"):
        train_briefly(name, configuration, env, args.workdir / f"train_{configuration}.log", iters_per_epoch=2,
                      num_workers=0)
    rows = {c: time_model(name, c, args) for c in ("cascade_fullres", "3d_fullres")}
    return {"available": True, "dataset": name, "shape": list(args.cascade_shape),
            "crop_size": list(cascade.cascade.crop_size), "locator": cascade.cascade.locator_configuration,
            **rows, "speedup": rows["3d_fullres"]["seconds_per_case"] / rows["cascade_fullres"]["seconds_per_case"]}


def time_model(dataset: str, configuration: str, args) -> dict:
    """Per-step seconds per case (means over the cases after the first) of the real predictor."""
    from segforge.inference.model import resolve_model_folder
    from segforge.inference.registry import create_predictor
    from segforge.io.dataset import RawDataset
    from segforge.io.image import read_multichannel

    with Timer() as startup:
        from segforge.inference.predictor import FAST_MODE

        speed = dict(FAST_MODE["options"]) if args.fast else {"step": args.step}
        predictor = create_predictor(resolve_model_folder(dataset, None, configuration, None), folds=["0"],
                                     device="cpu", tta=args.tta or args.fast, bf16=args.bf16, **speed)
    cases = RawDataset.open(dataset).test_cases()
    steps: dict[str, list[float]] = {"preprocess": [], "predict": [], "restore": []}
    for case in cases:
        image, geometry = read_multichannel(case.image_files)
        with Timer() as t1:
            data, properties = predictor.preprocess(image, geometry)
        with Timer() as t2:
            probabilities = predictor.predict_preprocessed(data, properties)
        with Timer() as t3:
            labels, _ = predictor.restore(probabilities, properties)
        assert labels.shape == image.shape[1:]
        for key, t in zip(steps, (t1, t2, t3)):
            steps[key].append(t.seconds)
    timed = slice(1, None) if len(cases) > 1 else slice(None)
    means = {f"{k}_seconds": float(np.mean(v[timed])) for k, v in steps.items()}
    return {"configuration": configuration, "patch_size": list(predictor.configuration.patch_size),
            "cases_timed": len(steps["predict"][timed]), "startup_seconds": startup.seconds,
            "seconds_per_case": sum(means.values()), **means,
            "first_case_seconds": sum(v[0] for v in steps.values())}


def _fmt(row: dict) -> str:
    return (f"{row['seconds_per_case']:.2f} s/case (predict {row['predict_seconds']:.2f} s, preprocess "
            f"{row['preprocess_seconds']:.2f} s, restore {row['restore_seconds']:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
