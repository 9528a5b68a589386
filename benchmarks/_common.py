"""Shared pieces of the segforge-alone benchmarks (``bench_*.py``).

Each benchmark works in its own ``--workdir`` (the three segforge folders live under it,
set in ``os.environ`` so in-process library calls and child commands agree), prints one
result line, and writes its figures as JSON to ``--out`` with the machine it ran on and
the exact command line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import Measured, run_measured  # noqa: E402

__all__ = [
    "HERE",
    "Measured",
    "run_measured",
    "base_parser",
    "use_workdir",
    "machine",
    "write_result",
    "make_organs_dataset",
    "plan_and_preprocess",
    "prepare_training_data",
    "train_briefly",
    "Timer",
]


def base_parser(description: str, name: str) -> argparse.ArgumentParser:
    """``--smoke``, ``--workdir`` (default ``benchmarks/work/<name>``), ``--out``, ``--keep``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the benchmark runs, measures nothing")
    parser.add_argument("--workdir", type=Path, default=HERE / "work" / name,
                        help=f"scratch folder, emptied first (default benchmarks/work/{name})")
    parser.add_argument("--out", type=Path, default=None, help=f"result JSON (default <workdir>/{name}.json)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch data afterwards")
    return parser


def use_workdir(workdir: Path) -> dict[str, str]:
    """Empty ``workdir`` and point the segforge folders into it; returns the environment for child commands."""
    workdir = workdir.absolute()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    os.environ.update(
        SEGFORGE_RAW=str(workdir / "raw"),
        SEGFORGE_PREPROCESSED=str(workdir / "segforge_preprocessed"),
        SEGFORGE_RESULTS=str(workdir / "segforge_results"),
        PYTHONUNBUFFERED="1",
    )
    return dict(os.environ)


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_1min": os.getloadavg()[0]}  # > cpu_count: others shared the CPU, figures are pessimistic


def remove_pipeline_folders(workdir: Path) -> None:
    """Delete the raw, preprocessed and results folders a run made under ``workdir`` (the JSON stays)."""
    for sub in ("raw", "segforge_preprocessed", "segforge_results"):
        shutil.rmtree(workdir / sub, ignore_errors=True)


def write_result(out: Path, result: dict, line: str) -> None:
    """Print ``line`` and write ``result`` (plus the command and machine) to ``out`` atomically."""
    result = {"command": "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
              "machine": machine(), **result}
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(line)
    print(f"written: {out}")


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def make_organs_dataset(dataset_id: int, num_train: int, num_test: int, shape, kind: str = "organs") -> str:
    """A synthetic CT dataset in ``SEGFORGE_RAW``; returns its folder name."""
    from segforge.synthetic import make_synthetic_dataset

    folder = make_synthetic_dataset(dataset_id, "Bench" + "".join(p.title() for p in kind.split("_")), kind=kind,
                                    num_train=num_train, num_test=num_test, shape=tuple(shape), seed=0)
    return folder.name


def plan_and_preprocess(dataset: str, gpu_memory_gb: float, num_processes: int = 2, configurations=None,
                        patch_size=None, batch_size=None):
    """Plan and preprocess in this process (quietly); returns the Plans."""
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess as run
    from segforge.planning.overrides import PlanOverrides

    overrides = PlanOverrides(patch_size=tuple(patch_size) if patch_size else None, batch_size=batch_size)
    return run(dataset, num_processes=num_processes, gpu_memory_gb=gpu_memory_gb, configurations=configurations,
               overrides=overrides, progress=False, log=lambda line: None)


def add_training_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The synthetic training data and plan a loader or trainer benchmark runs on (see prepare_training_data)."""
    parser.add_argument("--num-cases", type=int, default=8, help="synthetic training cases (default 8)")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 128, 128), metavar=("Z", "Y", "X"),
                        help="voxels per case (default 64 128 128)")
    parser.add_argument("--gpu-memory-gb", type=float, default=0.5, help="memory the plan is sized for (default 0.5)")
    parser.add_argument("--patch-size", type=int, nargs=3, metavar=("Z", "Y", "X"), help="override the planned patch")
    parser.add_argument("--batch-size", type=int, help="override the planned batch size")


def prepare_training_data(dataset_id: int, num_cases: int, shape, gpu_memory_gb: float, num_processes: int = 2,
                          patch_size=None, batch_size=None, kind: str = "organs", num_test: int = 0,
                          configurations=None):
    """A synthetic dataset, planned and preprocessed in this process; returns ``(dataset name, Plans)``."""
    name = make_organs_dataset(dataset_id, num_cases, num_test, shape, kind=kind)
    plans = plan_and_preprocess(name, gpu_memory_gb, num_processes, configurations=configurations,
                                patch_size=patch_size, batch_size=batch_size)
    return name, plans


def train_briefly(dataset: str, configuration: str | None, env: dict, log: Path, epochs: int = 1,
                  iters_per_epoch: int = 5, num_workers: int = 1, extra: list[str] | None = None) -> Measured:
    """Train fold 0 with the real command in a child process (a model to time, not a good one)."""
    cmd = [sys.executable, "-m", "segforge.cli.train", dataset, "0", "--device", "cpu", "--epochs", str(epochs),
           "--iters-per-epoch", str(iters_per_epoch), "--val-iters", "1", "--num-workers", str(num_workers),
           "--no-progress-bar", "--no-validation", *(extra or [])]
    if configuration:
        cmd += ["-c", configuration]
    m = run_measured(cmd, env=env, log_path=log)
    if m.returncode != 0:
        raise SystemExit(f"training failed ({m.returncode}), see {log}:\n{m.output_tail}")
    return m
