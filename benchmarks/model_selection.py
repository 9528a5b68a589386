"""Model selection end to end on CPU: synthetic organs -> plan -> train 2d and 3d_fullres on some folds
(validation with probabilities) -> segforge_find_best_configuration -> predict the held-out cases with the choice.

    python benchmarks/model_selection.py --workdir /tmp/select --folds 0 1 --epochs 8 --iters 20

Dice figures depend on the iteration counts and seeds, not on the machine's load; times printed are not
measurements on a shared machine. The same steps by command line are in docs/model_selection.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--folds", nargs="+", default=["0", "1"])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--num-train", type=int, default=8)
    p.add_argument("--num-test", type=int, default=4)
    p.add_argument("--shape", type=int, nargs=3, default=[24, 40, 40])
    p.add_argument("--gpu-memory-gb", type=float, default=0.05)
    p.add_argument("--out", default=None, help="JSON with the table (default: WORKDIR/model_selection.json)")
    args = p.parse_args(argv)
    work = Path(args.workdir).absolute()
    for var, name in (("SEGFORGE_RAW", "raw"), ("SEGFORGE_PREPROCESSED", "preprocessed"),
                      ("SEGFORGE_RESULTS", "results")):
        os.environ[var] = str(work / name)

    from segforge.evaluation.evaluate import evaluate_folders
    from segforge.inference.api import load_predictor
    from segforge.inference.inputs import discover_cases
    from segforge.inference.pipeline import predict_cases
    from segforge.synthetic import make_synthetic_dataset
    from segforge.training.options import TrainingOptions
    from segforge.workflows.best_configuration import find_best_configuration
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess
    from segforge.workflows.train import train_fold

    raw = make_synthetic_dataset(931, "SelectOrgans", kind="organs", num_train=args.num_train,
                                 num_test=args.num_test, shape=tuple(args.shape), seed=0)
    plans = plan_and_preprocess(931, num_processes=1, gpu_memory_gb=args.gpu_memory_gb, progress=False,
                                configurations=["3d_fullres"])
    options = TrainingOptions(epochs=args.epochs, iters_per_epoch=args.iters, val_iters=2, num_workers=0,
                              progress_bar=False, plots=False, seed=0)
    for configuration in ("2d", "3d_fullres"):
        for fold in args.folds:
            train_fold(plans, fold, configuration, "cpu", options, save_probabilities=True)
    result = find_best_configuration(931, folds=args.folds)
    predictor = load_predictor(dataset=931, device="cpu")
    out = work / "test_predictions"
    predict_cases(predictor, discover_cases(raw / "imagesTs", plans.num_channels), out)
    held_out = evaluate_folders(raw / "labelsTs", out)
    result["held_out_foreground_dice"] = held_out["foreground_mean"]["dice"]
    result["settings"] = vars(args)
    target = Path(args.out) if args.out else work / "model_selection.json"
    target.write_text(json.dumps(result, indent=2))
    print(f"held-out foreground Dice of {result['best']['name']}: {result['held_out_foreground_dice']:.4f} -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
