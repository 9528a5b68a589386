"""Kill a training run with SIGKILL, --continue it, and compare with an uninterrupted run."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.fake_preprocessed import write_fake_dataset

from segforge.planning.plans import Plans
from segforge.training.options import TrainingOptions
from segforge.training.segmentation_trainer import SegmentationTrainer

EPOCHS, ITERS = 4, 6
ARGS = ["999", "0", "--epochs", str(EPOCHS), "--iters-per-epoch", str(ITERS), "--val-iters", "2", "--num-workers", "0",
        "--device", "cpu", "--no-progress-bar", "--no-validation", "--seed", "5"]


def cli(*extra, **popen):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the SEGFORGE_* folders of the test (tests/conftest.py)
    return subprocess.Popen([sys.executable, "-m", "segforge.cli.train", *ARGS, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def lr_column(path: Path) -> list[tuple[str, str]]:
    return [(r["epoch"], r["lr"]) for r in csv.DictReader(path.open())]


def results(path: Path) -> list[dict]:
    """Every column but the timings."""
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "iters_per_second")}
            for r in csv.DictReader(path.open())]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_then_continue_matches_uninterrupted_run(tmp_path):
    write_fake_dataset(tmp_path / "preprocessed")
    fold = tmp_path / "results" / "Dataset999_Fake" / "SegmentationTrainer__3d_fullres" / "fold_0"
    proc = cli(start_new_session=True)
    deadline = time.monotonic() + 400
    while not (fold / "checkpoint_latest.pt").is_file():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (fold / "checkpoint_final.pt").is_file(), "the run finished before it could be killed"
    killed_at = torch.load(fold / "checkpoint_latest.pt", weights_only=True)["epoch"]

    resumed = cli("--continue")
    output, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, output
    assert f"resuming fold 0 at epoch {killed_at + 1}" in output

    torch.set_num_threads(1)
    plans = Plans.load(tmp_path / "preprocessed" / "Dataset999_Fake" / "plans.json")
    reference = tmp_path / "reference" / "fold_0"
    opts = TrainingOptions(epochs=EPOCHS, iters_per_epoch=ITERS, val_iters=2, num_workers=0, cpu_threads=1,
                           progress_bar=False, seed=5)
    SegmentationTrainer(plans, "3d_fullres", 0, output_folder=reference, device="cpu", options=opts,
                        preprocessed_dir=tmp_path / "preprocessed" / "Dataset999_Fake", log=lambda *_: None).run()

    assert lr_column(fold / "log.csv") == lr_column(reference / "log.csv")
    # in-process loading (--num-workers 0) restores the data stream too: the same losses and Dice
    assert results(fold / "log.csv") == results(reference / "log.csv")
    assert [e for e, _ in lr_column(fold / "log.csv")] == [str(e) for e in range(EPOCHS)]
    final = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert final["epoch"] == EPOCHS - 1 and final["scheduler_state"]["step"] == EPOCHS * ITERS
