"""The demo: a synthetic dataset through the whole pipeline, as numbered steps.

Each step calls the same command a user would type, in-process, so the demo shows (and
tests) the real path: generate -> plan and preprocess -> train fold 0 -> predict the
held-out scans -> evaluate. Steps already done are reused when the demo is run again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch

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
    from segforge.cli import evaluate, plan_and_preprocess, predict, train
    from segforge.synthetic import make_synthetic_dataset

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    budget = settings.gpu_memory_gb or (10.0 if device == "cuda" else 0.1)
    name = settings.dataset_name
    raw = paths.raw_root() / name
    timings: dict[str, float] = {}

    def step(number: int, title: str, command, argv: list[str]) -> None:
        print(f"\n[{number}/5] {title}\n      $ {command.__name__.rsplit('.', 1)[-1]} {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        code = command.main(argv)
        timings[title] = time.perf_counter() - start
        if code != 0:
            raise InputError(f"demo step {number} ({title}) failed with exit code {code}")

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

    step(2, "plan and preprocess", plan_and_preprocess,
         ["-d", name, "-np", str(settings.num_processes), "--gpu-memory-gb", str(budget)])
    train_argv = [name, "0", "--device", device, "--epochs", str(settings.epochs), "--iters-per-epoch",
                  str(settings.iters_per_epoch), "--val-iters", str(settings.val_iters),
                  "--max-minutes", str(settings.train_minutes), "--seed", str(settings.seed)]
    predictions = paths.results_root() / name / "demo_predictions"
    predict_argv = ["-i", str(raw / "imagesTs"), "-o", str(predictions), "-d", name, "--device", device]
    if device == "cpu":
        # A CPU affords a few hundred iterations: AdamW at 3e-3 gets there (mean pseudo-Dice ~0.9 after
        # ~175 iterations on this data), SGD at nnU-Net's 1e-2/0.99 needs thousands. Mirroring costs 8x on a CPU.
        train_argv += ["--optimizer", "adamw", "--lr", "3e-3"]
        predict_argv += ["--disable-tta"]
    step(3, "train fold 0", train, train_argv)
    step(4, "predict held-out scans", predict, predict_argv)
    summary_path = predictions / "summary.json"
    step(5, "evaluate", evaluate, ["-ref", str(raw / "labelsTs"), "-pred", str(predictions), "-o", str(summary_path)])

    summary = json.loads(summary_path.read_text())
    dice = summary["foreground_mean"]["dice"]
    plans_path = paths.preprocessed_root() / name / "plans.json"
    model_folders = sorted(p for p in (paths.results_root() / name).iterdir() if "__" in p.name)
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
