"""The demo: a synthetic dataset through the whole pipeline, as numbered steps.

Each step runs the library function the corresponding command runs (and prints that
command, so a user can type it), in-process: generate -> plan and preprocess -> train fold
0 (with its fold validation) -> predict the held-out scans -> evaluate. Steps already done
are reused when the demo is run again. The demo sits above the workflows and below the
command line: ``segforge_demo`` (:mod:`segforge.cli.demo`) only parses its arguments.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from segforge import paths
from segforge.errors import InputError

__all__ = ["DemoSettings", "run_demo"]


@dataclass
class DemoSettings:
    cascade: bool = False
    device: str | None = None  # None: cuda when available
    train_minutes: float = 6.0
    epochs: int = 12
    iters_per_epoch: int = 25
    val_iters: int = 5
    num_train: int = 10
    num_test: int = 4
    shape: tuple[int, int, int] | None = None
    gpu_memory_gb: float | None = None  # None: 0.1 on CPU (a small network), 10 on a GPU
    num_processes: int = 2
    seed: int = 0

    @property
    def dataset_id(self) -> int:
        return 902 if self.cascade else 901

    @property
    def dataset_name(self) -> str:
        return paths.dataset_folder_name(self.dataset_id, "DemoSmallTarget" if self.cascade else "DemoOrgans")


def run_demo(settings: DemoSettings) -> dict:
    """Run the pipeline; returns a summary dict (paths, Dice, timings)."""
    from segforge.data.splits import parse_fold
    from segforge.devices import resolve_device
    from segforge.evaluation.evaluate import evaluate_folders, format_table, save_summary
    from segforge.inference.inputs import check_output_folder, discover_cases
    from segforge.inference.model import ModelFolder, resolve_model_folder
    from segforge.inference.pipeline import predict_cases
    from segforge.inference.registry import create_predictor
    from segforge.planning.plans import Plans
    from segforge.synthetic import make_synthetic_dataset
    from segforge.training.options import TrainingOptions
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess
    from segforge.workflows.train import train_fold

    device = resolve_device(settings.device).type
    budget = settings.gpu_memory_gb or (10.0 if device == "cuda" else 0.1)
    name = settings.dataset_name
    raw = paths.raw_root() / name
    timings: dict[str, float] = {}

    def step(number: int, title: str, command: str, run) -> None:
        print(f"\n[{number}/5] {title}\n      $ {command}", flush=True)
        start = time.perf_counter()
        run()
        timings[title] = time.perf_counter() - start

    print(f"segforge demo: {name} on {device}; folders {paths.raw_root()}, {paths.preprocessed_root()}, "
          f"{paths.results_root()}")
    print(f"\n[1/5] synthetic dataset ({'small target in a large field' if settings.cascade else 'organs'})")
    if (raw / "dataset.json").is_file():
        print(f"      reusing {raw}")
    else:
        start = time.perf_counter()
        make_synthetic_dataset(settings.dataset_id, name.split("_", 1)[1],
                               kind="small_target" if settings.cascade else "organs",
                               num_train=settings.num_train, num_test=settings.num_test, shape=settings.shape,
                               seed=settings.seed)
        timings["synthetic dataset"] = time.perf_counter() - start
        print(f"      wrote {raw}")

    step(2, "plan and preprocess", f"segforge_plan_and_preprocess -d {name} -np {settings.num_processes} "
         f"--gpu-memory-gb {budget}",
         lambda: plan_and_preprocess(name, num_processes=settings.num_processes, gpu_memory_gb=budget))

    # A CPU affords a few hundred iterations: AdamW at 3e-3 gets there (mean pseudo-Dice ~0.9 after
    # ~175 iterations on this data), SGD at nnU-Net's 1e-2/0.99 needs thousands. Mirroring costs 8x on a CPU.
    on_cpu = device == "cpu"
    options = TrainingOptions(epochs=settings.epochs, iters_per_epoch=settings.iters_per_epoch,
                              val_iters=settings.val_iters, max_minutes=settings.train_minutes, seed=settings.seed,
                              **({"optimizer": "adamw", "initial_lr": 3e-3} if on_cpu else {}))
    train_command = (f"segforge_train {name} 0 --device {device} --epochs {settings.epochs} --iters-per-epoch "
                     f"{settings.iters_per_epoch} --val-iters {settings.val_iters} --max-minutes "
                     f"{settings.train_minutes} --seed {settings.seed}" + (" --optimizer adamw --lr 3e-3" if on_cpu else ""))
    plans_path = paths.preprocessed_root() / name / "plans.json"
    step(3, "train fold 0", train_command,
         lambda: train_fold(Plans.load(plans_path), parse_fold("0"), device=device, options=options))

    predictions = paths.results_root() / name / "demo_predictions"

    def predict() -> None:
        model = ModelFolder.open(resolve_model_folder(name))
        cases = discover_cases(raw / "imagesTs", model.plans.num_channels)
        check_output_folder(raw / "imagesTs", predictions, cases)
        predictor = create_predictor(model, device=device, tta=not on_cpu)
        failed = [r for r in predict_cases(predictor, cases, predictions) if r.status == "failed"]
        if failed:
            raise InputError(f"demo step 4 could not predict {', '.join(f'{r.name} ({r.reason})' for r in failed)}")

    step(4, "predict held-out scans", f"segforge_predict -i {raw / 'imagesTs'} -o {predictions} -d {name} "
         f"--device {device}" + (" --disable-tta" if on_cpu else ""), predict)
    summary_path = predictions / "summary.json"

    def evaluate() -> None:
        summary = evaluate_folders(raw / "labelsTs", predictions)
        save_summary(summary, summary_path)
        print(format_table(summary, {v: k for k, v in Plans.load(plans_path).labels.items()}))
        not_scored = [c["case"] if isinstance(c, dict) else c
                      for k in ("missing_predictions", "geometry_mismatches", "unreadable") for c in summary[k]]
        if not_scored:
            raise InputError(f"demo step 5 could not score {', '.join(not_scored)}")

    step(5, "evaluate", f"segforge_evaluate -ref {raw / 'labelsTs'} -pred {predictions} -o {summary_path}", evaluate)

    summary = json.loads(summary_path.read_text())
    dice = summary["foreground_mean"]["dice"]
    model_folders = sorted(p for p in (paths.results_root() / name).iterdir()
                           if paths.parse_model_folder_name(p.name) is not None)
    print("\nsegforge demo finished\n")
    print(f"  plans (every decision with its reason): {plans_path}")
    for folder in model_folders:
        print(f"  model + plots (progress.png, train_example.png, ...): {folder / 'fold_0'}")
    print(f"  predictions (open next to {raw / 'imagesTs'}): {predictions}")
    print(f"  evaluation: {summary_path}")
    print(f"  mean foreground Dice on {settings.num_test} held-out scans: {dice:.3f}")
    print("  time per step: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    return {"dataset": name, "dice": dice, "plans": str(plans_path), "predictions": str(predictions),
            "summary": str(summary_path), "model_folders": [str(f) for f in model_folders], "seconds": timings}
