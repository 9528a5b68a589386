"""What each inference lever costs in Dice and buys in time, on a trained model and held-out cases.

    python benchmarks/inference_levers.py -m MODEL_FOLDER -i imagesTs -l labelsTs
    python benchmarks/inference_levers.py -m ... -i ... -l ... --threads 2 --out levers.json
    python benchmarks/inference_levers.py --smoke

Each held-out case is read and preprocessed once; then, per setting, the real predictor
(``create_predictor``) predicts it, restores it onto the input grid and the labels are scored
against the reference (Dice per foreground class, mean over classes and cases). Settings:
mirroring over all axes (the reference, segforge's default), none, each single axis, each pair;
sliding-window steps 0.5 / 0.75 / 1.0; bf16; windows 1.5x and 2x the training patch (per axis,
rounded to the network's divisor); and ``--fast``. Dice does not depend on the machine's load;
the seconds are CPU seconds of the network step (``time.process_time``: steadier than wall time on a
shared machine; with one thread they equal the compute), and their ratios are what to read.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from _common import base_parser, write_result


def settings(dims: int) -> list[tuple[str, dict]]:
    from segforge.inference.predictor import FAST_MODE

    out = [("mirror all (reference)", {}), ("no mirroring", {"tta": False})]
    out += [(f"mirror axis {a}", {"mirror_axes": (a,)}) for a in range(dims)]
    if dims == 3:
        out += [(f"mirror axes {a},{b}", {"mirror_axes": (a, b)}) for a, b in ((0, 1), (0, 2), (1, 2))]
    out += [("step 0.75, mirror all", {"step": 0.75}), ("step 1.0, mirror all", {"step": 1.0}),
            ("bf16, mirror all", {"bf16": True}), ("window 1.5x, mirror all", {"window_scale": 1.5}),
            ("window 2x, mirror all", {"window_scale": 2.0}),
            (f"--fast ({FAST_MODE['why']})", dict(FAST_MODE["options"]))]
    return out


def main(argv=None) -> int:
    parser = base_parser(__doc__, "inference_levers")
    parser.add_argument("-m", "--model-folder", type=Path, help="trained model folder <trainer>__<configuration>")
    parser.add_argument("-i", "--images", type=Path, help="held-out images (CASE_0000.nii.gz)")
    parser.add_argument("-l", "--labels", type=Path, help="their reference labels (CASE.nii.gz)")
    parser.add_argument("-f", "--folds", nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--only", nargs="+", help="run only the settings whose name starts with one of these")
    args = parser.parse_args(argv)
    import torch

    if args.smoke:
        args.model_folder, args.images, args.labels = _smoke_model(args.workdir)
    if not (args.model_folder and args.images and args.labels):
        parser.error("-m, -i and -l are required (or --smoke)")
    from segforge.inference import create_predictor
    from segforge.inference.inputs import discover_cases, read_case
    from segforge.io.image import read_image

    torch.set_num_threads(args.threads)
    reference = create_predictor(args.model_folder, folds=args.folds, device="cpu")
    torch.set_num_threads(args.threads)  # pick_device sets every core; keep the asked number
    cases = discover_cases(args.images, reference.plans.num_channels)
    prepared = []
    for case in cases:
        image, geometry = read_case(case)
        data, properties = reference.preprocess(image, geometry)
        truth, _ = read_image(args.labels / f"{case.name}{case.ending}")
        prepared.append((case.name, data, properties, truth))
    classes = sorted(v for v in reference.plans.labels.values() if v != 0)
    rows = []
    for name, options in settings(reference.configuration.dims):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        options = dict(options)
        scale = options.pop("window_scale", None)
        predictor = create_predictor(args.model_folder, folds=args.folds, device="cpu", **options)
        torch.set_num_threads(args.threads)
        if scale:
            predictor.window_size = _scaled_window(predictor, scale)
        dice, seconds = [], []
        for case_name, data, properties, truth in prepared:
            start = time.process_time()
            probabilities = predictor.predict_preprocessed(data, dict(properties))
            seconds.append(time.process_time() - start)
            labels, _ = predictor.restore(probabilities, properties)
            dice.append([_dice(labels == c, truth == c) for c in classes])
        row = {"setting": name, "options": {**options, **({"window_scale": scale} if scale else {})},
               "window": predictor.window_size, "mirror_axes": list(predictor.mirror_axes),
               "step": predictor.step, "cpu_seconds_per_case": float(np.mean(seconds)),
               "dice_per_class": np.mean(dice, axis=0).tolist(), "mean_dice": float(np.mean(dice)),
               "dice_per_case": [float(np.mean(d)) for d in dice]}
        rows.append(row)
        print(f"{name:<40} Dice {row['mean_dice']:.4f}  CPU {row['cpu_seconds_per_case']:.1f} s/case", flush=True)
    ref = rows[0]
    for row in rows:
        row["dice_change"] = row["mean_dice"] - ref["mean_dice"]
        row["speedup"] = ref["cpu_seconds_per_case"] / row["cpu_seconds_per_case"]
    print(f"\n{'setting':<40}{'mean Dice':>10}{'vs ref':>9}{'CPU s/case':>12}{'speed-up':>10}")
    for row in rows:
        print(f"{row['setting']:<40}{row['mean_dice']:>10.4f}{row['dice_change']:>+9.4f}"
              f"{row['cpu_seconds_per_case']:>12.2f}{row['speedup']:>9.2f}x")
    result = {"model_folder": str(args.model_folder), "cases": [p[0] for p in prepared], "threads": args.threads,
              "classes": classes, "settings": rows}
    write_result(args.out or args.workdir / "inference_levers.json", result,
                 f"{len(rows)} settings on {len(prepared)} case(s); reference Dice {ref['mean_dice']:.4f}")
    if args.smoke and not args.keep:
        from _common import remove_pipeline_folders

        remove_pipeline_folders(args.workdir)
    return 0


def _scaled_window(predictor, scale: float) -> list[int]:
    c = predictor.configuration
    divisor = [int(np.prod([s[a] for s in c.network.strides])) for a in range(c.dims)]
    return [int(np.ceil(p * scale / d) * d) for p, d in zip(c.patch_size, divisor)]


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(pred, truth).sum() / total)


def _smoke_model(workdir: Path):
    """A model trained for 2 iterations on 2 tiny synthetic cases (runs the script, measures nothing)."""
    from _common import prepare_training_data, train_briefly, use_workdir

    env = use_workdir(workdir)
    name, _ = prepare_training_data(993, 2, (20, 40, 40), 0.1, num_processes=1, num_test=1,
                                    configurations=["3d_fullres"], patch_size=(16, 32, 32))
    train_briefly(name, "3d_fullres", env, workdir / "train.log", iters_per_epoch=2, num_workers=0)
    from segforge import paths

    raw = paths.raw_dataset_dir(name)
    return paths.results_dataset_dir(name) / "SegmentationTrainer__3d_fullres", raw / "imagesTs", raw / "labelsTs"


if __name__ == "__main__":
    sys.exit(main())
