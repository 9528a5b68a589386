"""Held-out Dice of the training extras, by iteration count (load-independent): mixup, 2.5D, self-distillation.

Each experiment trains the arms it compares on the same synthetic data, for the same number of
iterations, with the same seed, and scores every arm's final model on held-out cases with the
real predictor (no mirroring) and ``evaluate_folders``:

* ``mixup``: ``--mixup none`` vs ``input`` vs ``manifold`` on a small training set (default 4 cases,
  fold ``all``), where a regulariser should help;
* ``2.5d``: the ``2d``, ``2.5d`` and ``3d_fullres`` configurations;
* ``pseudo``: the self-distillation round trip: train on a few labelled cases, predict the
  unlabelled scans (``imagesTs`` cases not held out) with their probabilities, train again with
  ``--pseudo-labels`` on them.

    python benchmarks/extras_effect.py mixup --iterations 400 --seeds 0 1
    python benchmarks/extras_effect.py mixup --smoke        # checks that it runs, measures nothing

Prints one line per arm and writes ``--out`` (JSON: per arm and seed the held-out Dice per label).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import base_parser, remove_pipeline_folders, use_workdir, write_result

EXPERIMENTS = ("mixup", "2.5d", "pseudo")


def parse() -> argparse.Namespace:
    parser = base_parser(__doc__, "extras_effect")
    parser.add_argument("experiment", choices=EXPERIMENTS)
    parser.add_argument("--num-train", type=int, default=4, help="labelled training cases (default 4)")
    parser.add_argument("--num-unlabelled", type=int, default=8, help="pseudo: unlabelled scans (default 8)")
    parser.add_argument("--num-test", type=int, default=6, help="held-out scored cases (default 6)")
    parser.add_argument("--shape", type=int, nargs=3, default=(32, 64, 64), metavar=("Z", "Y", "X"))
    parser.add_argument("--kind", default="organs", choices=("organs", "small_target"))
    parser.add_argument("--anisotropic", action="store_true", help="5 x 0.7 x 0.7 mm data (thick slices)")
    parser.add_argument("--gpu-memory-gb", type=float, default=0.1, help="plan size (default 0.1: a CPU-sized net)")
    parser.add_argument("--iterations", type=int, default=400, help="training iterations per arm (default 400)")
    parser.add_argument("--iters-per-epoch", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--optimizer", default="adamw", help="default adamw at --lr 3e-3 (what a CPU run affords)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mixup-alpha", type=float, default=0.2)
    parser.add_argument("--configuration", default=None, help="mixup / pseudo: configuration (default: the plan's)")
    parser.add_argument("--num-workers", type=int, default=1)
    return parser.parse_args()


def main() -> int:
    args = parse()
    if args.smoke:
        args.num_train, args.num_unlabelled, args.num_test = 2, 2, 1
        args.shape, args.iterations, args.iters_per_epoch, args.seeds = (16, 32, 32), 2, 1, [0]
    args.out = args.out or args.workdir / f"extras_effect_{args.experiment}.json"
    use_workdir(args.workdir)

    from segforge import paths
    from segforge.synthetic import make_synthetic_dataset
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess

    unlabelled = args.num_unlabelled if args.experiment == "pseudo" else 0
    raw = make_synthetic_dataset(990, "ExtrasEffect", kind=args.kind, num_train=args.num_train,
                                 num_test=unlabelled + args.num_test, shape=tuple(args.shape),
                                 anisotropic=args.anisotropic, seed=0)
    cases = sorted(p.name[:-len("_0000.nii.gz")] for p in (raw / "imagesTs").glob("*_0000.nii.gz"))
    pool, held_out = cases[:unlabelled], cases[unlabelled:]
    configurations = ["2d", "2.5d", "3d_fullres"] if args.experiment == "2.5d" else None
    plans = plan_and_preprocess(raw.name, num_processes=2, gpu_memory_gb=args.gpu_memory_gb,
                                configurations=configurations, progress=False, log=lambda line: None)
    work = Path(paths.results_root())
    test_images, test_labels = _subset(raw, held_out, work / "held_out")
    arms = {}
    for seed in args.seeds:
        for arm, result in _run(args, plans, raw, pool, test_images, test_labels, seed).items():
            arms.setdefault(arm, []).append({"seed": seed, **result})
    lines = []
    for arm, runs in arms.items():
        mean = sum(r["foreground_dice"] for r in runs) / len(runs)
        per_seed = ", ".join(f"seed {r['seed']} {r['foreground_dice']:.3f}" for r in runs)
        lines.append(f"{arm}: held-out foreground Dice {mean:.3f} ({per_seed})")
    result = {"experiment": args.experiment, "dataset": raw.name, "kind": args.kind, "shape": list(args.shape),
              "num_train": args.num_train, "num_unlabelled": unlabelled, "held_out": held_out,
              "iterations": args.iterations, "optimizer": args.optimizer, "lr": args.lr, "arms": arms}
    write_result(args.out, result, "\n".join(lines))
    if not args.keep:
        remove_pipeline_folders(args.workdir)
    return 0


def _subset(raw: Path, cases: list[str], folder: Path) -> tuple[Path, Path]:
    """``folder/images`` and ``folder/labels`` holding links to ``cases`` of ``imagesTs``/``labelsTs``."""
    images, labels = folder / "images", folder / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for case in cases:
        for source in (raw / "imagesTs").glob(f"{case}_*.nii.gz"):
            (images / source.name).symlink_to(source)
        (labels / f"{case}.nii.gz").symlink_to(raw / "labelsTs" / f"{case}.nii.gz")
    return images, labels


def _options(args, seed: int, **extra):
    from segforge.training.options import TrainingOptions

    epochs = max(1, args.iterations // args.iters_per_epoch)
    return TrainingOptions(epochs=epochs, iters_per_epoch=args.iters_per_epoch, val_iters=2, seed=seed,
                           optimizer=args.optimizer, initial_lr=args.lr, num_workers=args.num_workers,
                           progress_bar=False, plots=False, **extra)


def _train_and_score(plans, configuration, options, test_images, test_labels, tag: str, fold="all") -> dict:
    """Train ``fold`` of ``configuration``, predict the held-out images with the final model, score them."""
    from segforge import paths
    from segforge.evaluation.evaluate import evaluate_folders
    from segforge.inference.inputs import discover_cases
    from segforge.inference.model import ModelFolder
    from segforge.inference.pipeline import predict_cases
    from segforge.inference.registry import create_predictor
    from segforge.workflows.train import train_fold

    quiet = lambda line: None  # noqa: E731
    folders = train_fold(plans, fold, configuration, "cpu", options, validate=False, log=quiet)
    model = ModelFolder.open(folders[-1].parent)
    output = paths.results_root() / "predictions" / tag
    predictor = create_predictor(model, folds=[fold], device="cpu", tta=False)
    predict_cases(predictor, discover_cases(test_images, plans.num_channels), output, log=quiet)
    summary = evaluate_folders(test_labels, output)
    log = json.loads((folders[-1] / "training_options.json").read_text())
    return {"foreground_dice": summary["foreground_mean"]["dice"],
            "dice": {k: v["dice"] for k, v in summary["mean"].items()},
            "model": str(folders[-1]), "options": {k: log[k] for k in ("epochs", "iters_per_epoch", "seed")}}


def _run(args, plans, raw, pool, test_images, test_labels, seed) -> dict:
    import shutil

    from segforge import paths

    configuration = args.configuration
    results = {}
    if args.experiment == "mixup":
        for mode in ("none", "input", "manifold"):
            options = _options(args, seed, mixup=mode, mixup_alpha=args.mixup_alpha)
            results[f"mixup {mode}"] = _train_and_score(plans, configuration, options, test_images, test_labels,
                                                        f"mixup_{mode}_{seed}")
            _forget_model(plans, configuration)
    elif args.experiment == "2.5d":
        for name in ("2d", "2.5d", "3d_fullres"):
            results[name] = _train_and_score(plans, name, _options(args, seed), test_images, test_labels,
                                             f"{name}_{seed}")
    else:
        base = _train_and_score(plans, configuration, _options(args, seed), test_images, test_labels,
                                f"labelled_{seed}")
        results["labelled only"] = base
        unlabelled, _ = _subset(raw, pool, paths.results_root() / "unlabelled")
        pseudo = paths.results_root() / "pseudo_labels" / str(seed)
        _predict_unlabelled(Path(base["model"]).parent, unlabelled, pseudo)
        _forget_model(plans, configuration)
        options = _options(args, seed, pseudo_labels=str(pseudo))
        results["labelled + pseudo-labelled"] = _train_and_score(plans, configuration, options, test_images,
                                                                 test_labels, f"pseudo_{seed}")
        _forget_model(plans, configuration)
        shutil.rmtree(unlabelled.parent, ignore_errors=True)
    return results


def _predict_unlabelled(model_folder: Path, images: Path, output: Path) -> None:
    from segforge.inference.inputs import discover_cases
    from segforge.inference.model import ModelFolder
    from segforge.inference.pipeline import predict_cases
    from segforge.inference.registry import create_predictor

    model = ModelFolder.open(model_folder)
    predictor = create_predictor(model, folds=["all"], device="cpu", tta=False)
    predict_cases(predictor, discover_cases(images, model.plans.num_channels), output, save_probabilities=True,
                  log=lambda line: None)  # the probabilities become soft targets


def _forget_model(plans, configuration) -> None:
    """Move the trained model folder aside so the next arm starts from scratch."""
    import os

    from segforge import paths
    from segforge.training.registry import training_steps

    for step, name in training_steps(plans, configuration):
        trainer = {"locator": "LocatorTrainer", "cascade_segmenter": "CascadeSegmentationTrainer"}.get(
            step, "SegmentationTrainer")
        folder = paths.results_root() / plans.dataset_name / paths.model_folder_name(trainer, name)
        if folder.exists():
            target = folder.with_name(f"{folder.name}.done-{len(list(folder.parent.glob(folder.name + '.done-*')))}")
            os.replace(folder, target)


if __name__ == "__main__":
    sys.exit(main())
