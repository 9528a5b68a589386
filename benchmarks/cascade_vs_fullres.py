"""Cascade (locator + crop segmenter) vs single-stage 3d_fullres on small-target data.

On a synthetic ``small_target`` dataset (one 1-2 cm target among look-alikes in a large
volume), planned with a small memory budget so it trains on a CPU:

1. train fold 0 of ``3d_fullres`` for ``--minutes``, and the cascade for the same total
   time (the locator for ``--locator-share`` of it, then ``cascade_fullres``), with the
   real ``segforge_train`` in child processes;
2. predict the held-out ``imagesTs`` cases in this process with each model, without
   mirroring, timing the network step per case (preprocessing and export are the same
   work for both);
3. score Dice against ``labelsTs`` and the locator's centroid error against the labels'
   centroids (mm, and in full-resolution voxels of the mean 3d_fullres spacing).

    python benchmarks/cascade_vs_fullres.py --cases 12 --test 4 --minutes 10
    python benchmarks/cascade_vs_fullres.py --smoke        # a minute: checks the script runs

Writes ``cascade_vs_fullres.json`` (``--out``) with the command and the machine.
"""

from __future__ import annotations

import shutil
import sys
import time

import numpy as np
from _common import (
    base_parser,
    make_organs_dataset,
    plan_and_preprocess,
    run_measured,
    use_workdir,
    write_result,
)


def train(dataset: str, configuration: str, minutes: float, env: dict, log, threads: int) -> float:
    cmd = [sys.executable, "-m", "segforge.cli.train", dataset, "0", "-c", configuration, "--device", "cpu",
           "--epochs", "1000", "--iters-per-epoch", "10", "--val-iters", "2", "--max-minutes", f"{minutes:.3f}",
           "--num-workers", "0", "--no-progress-bar", "--no-validation"]
    env = {**env, "OMP_NUM_THREADS": str(threads)}
    m = run_measured(cmd, env=env, log_path=log)
    if m.returncode != 0:
        raise SystemExit(f"training {configuration} failed ({m.returncode}), see {log}:\n{m.output_tail}")
    return m.seconds


def dice(a: np.ndarray, b: np.ndarray) -> float:
    denominator = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / denominator) if denominator else 1.0


def predict_and_score(model_folder, cases, is_cascade: bool) -> dict:
    from segforge.inference.registry import create_predictor
    from segforge.io.image import read_image, read_multichannel

    predictor = create_predictor(model_folder, device="cpu", tta=False)
    rows = []
    for case in cases:
        image, geometry = read_multichannel(case.image_files)
        truth, _ = read_image(case.label_file)
        data, properties = predictor.preprocess(image, geometry)
        start = time.perf_counter()
        probabilities = predictor.predict_preprocessed(data, properties)
        network = time.perf_counter() - start
        labels, _ = predictor.restore(probabilities, properties)
        row = {"case": case.name, "network_seconds": network, "dice": dice(labels > 0, truth > 0)}
        if is_cascade:
            result = properties["cascade_result"]
            true_world = geometry.index_to_world(np.argwhere(truth > 0).mean(axis=0))
            row["centroid_error_mm"] = float(np.linalg.norm(np.asarray(result["centroid_world"]) - true_world))
        rows.append(row)
    return {"cases": rows, "mean_dice": float(np.mean([r["dice"] for r in rows])),
            "mean_network_seconds": float(np.mean([r["network_seconds"] for r in rows]))}


def main() -> None:
    parser = base_parser(__doc__, "cascade_vs_fullres")
    parser.add_argument("--cases", type=int, default=12, help="training cases")
    parser.add_argument("--test", type=int, default=4, help="held-out cases to predict and score")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], help="voxels per case (z y x)")
    parser.add_argument("--gpu-memory-gb", type=float, default=0.3, help="planner budget (small: CPU-sized networks)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time of each approach")
    parser.add_argument("--locator-share", type=float, default=0.4, help="share of the cascade's time for the locator")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training processes")
    args = parser.parse_args()
    if args.smoke:
        args.cases, args.test, args.shape, args.minutes, args.gpu_memory_gb = 4, 1, [48, 80, 80], 0.3, 0.05

    env = use_workdir(args.workdir)
    from segforge.io.dataset import RawDataset
    from segforge.paths import results_dataset_dir

    name = make_organs_dataset(970, args.cases, args.test, args.shape, kind="small_target")
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess as plan_only

    plans = plan_only(name, gpu_memory_gb=args.gpu_memory_gb, plan_only=True, progress=False, log=lambda line: None)
    if "cascade_fullres" not in plans.configurations:
        raise SystemExit(f"the planner did not choose the cascade for this shape/budget: {plans.why}")
    plans = plan_and_preprocess(name, args.gpu_memory_gb, configurations=["3d_fullres", "locator", "cascade_fullres"])

    logs = args.workdir / "logs"
    logs.mkdir(exist_ok=True)
    seconds = {
        "3d_fullres": train(name, "3d_fullres", args.minutes, env, logs / "train_3d_fullres.log", args.threads),
        "locator": train(name, "locator", args.minutes * args.locator_share, env, logs / "train_locator.log",
                         args.threads),
    }
    # -c cascade_fullres would train the locator again; the segmenter step alone:
    seconds["cascade_fullres"] = train_segmenter_only(name, args.minutes * (1 - args.locator_share), env,
                                                      logs / "train_cascade_fullres.log", args.threads)

    test_cases = [c for c in RawDataset.open(name).test_cases() if c.label_file is not None]
    results = results_dataset_dir(name)
    single = predict_and_score(results / "SegmentationTrainer__3d_fullres", test_cases, False)
    cascade = predict_and_score(results / "CascadeSegmentationTrainer__cascade_fullres", test_cases, True)
    errors = [r["centroid_error_mm"] for r in cascade["cases"]]
    fullres_voxel = float(np.mean(plans.configurations["3d_fullres"].spacing))
    speedup = single["mean_network_seconds"] / cascade["mean_network_seconds"]
    result = {
        "dataset": {"cases": args.cases, "test": args.test, "shape": args.shape, "kind": "small_target"},
        "plans": {n: {"spacing": c.spacing, "patch_size": c.patch_size,
                      "crop_size": c.cascade.crop_size if c.cascade else None}
                  for n, c in plans.configurations.items() if n in ("3d_fullres", "locator", "cascade_fullres")},
        "training_seconds": seconds,
        "single_stage_3d_fullres": single,
        "cascade": cascade,
        "locator_centroid_error": {"median_mm": float(np.median(errors)), "max_mm": float(np.max(errors)),
                                   "median_fullres_voxels": float(np.median(errors)) / fullres_voxel},
        "inference_speedup_network": speedup,
        "note": "inference without mirroring, CPU; network time = locate + crop segmentation (cascade) vs whole-"
                "volume sliding window; Dice of the union of foreground labels",
    }
    line = (f"cascade Dice {cascade['mean_dice']:.3f} vs 3d_fullres {single['mean_dice']:.3f}; locator median "
            f"error {np.median(errors):.2f} mm ({np.median(errors) / fullres_voxel:.2f} voxels); inference "
            f"{cascade['mean_network_seconds']:.2f} s vs {single['mean_network_seconds']:.2f} s per case "
            f"({speedup:.1f}x)")
    write_result(args.out or args.workdir / "cascade_vs_fullres.json", result, line)
    if not args.keep:
        for sub in ("raw", "segforge_preprocessed", "segforge_results"):
            shutil.rmtree(args.workdir / sub, ignore_errors=True)


def train_segmenter_only(dataset: str, minutes: float, env: dict, log, threads: int) -> float:
    """Only the cascade's second stage (the locator is trained already), via the training registry."""
    code = (
        "import sys; from segforge import paths; from segforge.planning.plans import Plans; "
        "from segforge.training.options import TrainingOptions; from segforge.training.registry import look_up_step; "
        f"plans = Plans.load(paths.preprocessed_dataset_dir({dataset!r}) / 'plans.json'); "
        f"o = TrainingOptions(epochs=1000, iters_per_epoch=10, val_iters=2, max_minutes={minutes!r}, num_workers=0, "
        "progress_bar=False); "
        "look_up_step('cascade_segmenter')(plans, 'cascade_fullres', 0, device='cpu', options=o).run()"
    )
    env = {**env, "OMP_NUM_THREADS": str(threads)}
    m = run_measured([sys.executable, "-c", code], env=env, log_path=log)
    if m.returncode != 0:
        raise SystemExit(f"training cascade_fullres failed ({m.returncode}), see {log}:\n{m.output_tail}")
    return m.seconds


if __name__ == "__main__":
    main()
