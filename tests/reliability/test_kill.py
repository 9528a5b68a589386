"""SIGKILL at random points of preprocessing, prediction and training (issue 18).

For each command: an uninterrupted reference run, then a chain of runs each killed (the
whole process group, ``kill -9``) at a random point drawn from a seeded generator -- after
a random number of finished cases or epochs plus a random delay, so the kill lands in the
middle of the work, not in Python's start-up. After every kill no file under a final name
is damaged (every case file, prediction and checkpoint loads whole); the next run (with
``--continue`` where the command has it) picks up, and the last one completes with exactly
the reference's result: the same preprocessed arrays, the same predictions, the same
training log. 3 + 3 + 4 = 10 kill points.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _env(folders: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SEGFORGE_RAW": str(folders / "raw"),
            "SEGFORGE_PREPROCESSED": str(folders / "preprocessed"), "SEGFORGE_RESULTS": str(folders / "results")}


def _start(folders: Path, module: str, argv: list) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *map(str, argv)], env=_env(folders),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8", errors="replace",
                            start_new_session=True)


def _finish(folders: Path, module: str, argv: list, timeout: float = 600) -> str:
    process = _start(folders, module, argv)
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    return output


def _kill_when(process: subprocess.Popen, reached, delay: float, timeout: float = 600) -> bool:
    """SIGKILL the process group ``delay`` s after ``reached()`` is true; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while not reached():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return True


def _digests(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


# ------------------------------------------------------------------------------ preprocessing
def _check_cases_whole(folder: Path) -> int:
    """Every finished case (its JSON is written last) has whole arrays; returns how many are finished."""
    finished = 0
    for properties in folder.glob("case_*.json"):
        json.loads(properties.read_text())
        data = np.load(folder / f"{properties.stem}.npy", allow_pickle=False)
        seg = np.load(folder / f"{properties.stem}_seg.npy", allow_pickle=False)
        assert data.shape[1:] == seg.shape and np.isfinite(data).all()
        finished += 1
    for array in folder.glob("case_*.npy"):  # arrays of unfinished cases too: whole or absent, never cut
        np.load(array, allow_pickle=False)
    return finished


def test_sigkill_during_preprocessing_then_rerun_completes_identically(folders):
    from segforge.synthetic import make_synthetic_dataset

    n = 8
    make_synthetic_dataset(967, "Kill", num_train=n, num_test=0, shape=(24, 48, 48), raw_root=folders / "raw")
    argv = ["-d", "967", "-np", "1", "--gpu-memory-gb", "0.5"]
    _finish(folders, "segforge.cli.plan_and_preprocess", argv)
    cases = folders / "preprocessed" / "Dataset967_Kill" / "3d_fullres"
    reference = _digests(cases, "case_*")
    assert len(reference) == 3 * n
    for p in cases.iterdir():
        p.unlink()

    rng = random.Random(1801)
    for k in sorted(rng.sample(range(1, n - 1), 3)):
        process = _start(folders, "segforge.cli.plan_and_preprocess", argv)
        killed = _kill_when(process, lambda: len(list(cases.glob("case_*.json"))) >= k, rng.uniform(0, 0.05))
        assert killed, "preprocessing finished before it could be killed"
        _check_cases_whole(cases)
    _finish(folders, "segforge.cli.plan_and_preprocess", argv)
    assert _check_cases_whole(cases) == n
    assert _digests(cases, "case_*") == reference
    assert not [p for p in cases.iterdir() if p.name.startswith(".tmp-")]


# ------------------------------------------------------------------------------ prediction
def test_sigkill_during_prediction_then_continue_completes_identically(folders, tmp_path):
    from helpers.inference_fixtures import tiny_plans, write_case, write_model_folder

    from segforge.io.image import read_label

    write_model_folder(folders / "results", tiny_plans(patch=(16, 32, 32)))
    inp, out = tmp_path / "in", tmp_path / "out"
    n = 8
    rng_images = np.random.default_rng(0)
    for i in range(n):
        image = rng_images.normal(size=(40, 80, 72)).astype(np.float32)
        image[10:30, 20:60, 20:50] += 2
        write_case(inp, f"case_{i}", image=image)
    argv = ["-i", inp, "-o", out, "-d", "987", "--disable-tta"]
    _finish(folders, "segforge.cli.predict", argv)
    reference = _digests(out, "*.nii.gz")
    assert len(reference) == n
    for p in out.iterdir():
        p.unlink()

    rng = random.Random(1802)
    for k in sorted(rng.sample(range(1, n - 1), 3)):
        process = _start(folders, "segforge.cli.predict", argv + ["--continue"])
        killed = _kill_when(process, lambda: len(list(out.glob("case_*.nii.gz"))) >= k, rng.uniform(0, 0.2))
        assert killed, "prediction finished before it could be killed"
        for p in out.glob("case_*.nii.gz"):
            read_label(p)  # whole, or not there at all
    output = _finish(folders, "segforge.cli.predict", argv + ["--continue"])
    assert "skipped (output complete)" in output
    assert _digests(out, "*.nii.gz") == reference
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


# ------------------------------------------------------------------------------ training
EPOCHS, ITERS = 5, 4
TRAIN = ["999", "0", "--epochs", EPOCHS, "--iters-per-epoch", ITERS, "--val-iters", 2, "--num-workers", 0,
         "--device", "cpu", "--no-progress-bar", "--no-validation", "--seed", 7]


def _log(fold: Path) -> list[dict]:
    """log.csv without the timing columns (those differ between any two runs)."""
    return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "iters_per_second")}
            for row in csv.DictReader((fold / "log.csv").open())]


def _check_fold_whole(fold: Path) -> int:
    """Every checkpoint loads; returns the epoch of checkpoint_latest.pt (-1 when there is none yet)."""
    epoch = -1
    for checkpoint in fold.glob("checkpoint_*.pt"):
        state = torch.load(checkpoint, weights_only=True)
        assert "network_state" in state
        if checkpoint.name == "checkpoint_latest.pt":
            epoch = int(state["epoch"])
    if (fold / "log.csv").is_file():
        list(csv.DictReader((fold / "log.csv").open()))
    return epoch


def test_sigkill_during_training_then_continue_gives_the_uninterrupted_log(folders):
    from helpers.fake_preprocessed import write_fake_dataset

    write_fake_dataset(folders / "preprocessed", n_cases=4)
    fold = folders / "results" / "Dataset999_Fake" / "SegmentationTrainer__3d_fullres" / "fold_0"
    _finish(folders, "segforge.cli.train", TRAIN)
    reference = _log(fold)
    assert [r["epoch"] for r in reference] == [str(e) for e in range(EPOCHS)]
    for p in fold.parent.iterdir():
        if p.name == "fold_0":
            for q in p.iterdir():
                q.unlink() if q.is_file() else None

    def latest_epoch() -> int:
        try:
            return int(torch.load(fold / "checkpoint_latest.pt", weights_only=True)["epoch"])
        except (OSError, RuntimeError, KeyError):
            return -1

    rng = random.Random(1803)
    # kill before the first checkpoint, then after random epochs, each time a random moment into the next one
    points = [-1] + sorted(rng.sample(range(0, EPOCHS - 1), 3))
    for after_epoch in points:
        process = _start(folders, "segforge.cli.train", TRAIN + ["--continue"])
        reached = (lambda e=after_epoch: latest_epoch() >= e) if after_epoch >= 0 else \
            (lambda: (fold / "training_options.json").is_file())
        if not _kill_when(process, reached, rng.uniform(0, 0.3)):
            continue  # this run got to the end first: the next one only has to confirm it
        assert _check_fold_whole(fold) >= min(after_epoch, EPOCHS - 1) - 0
        assert not (fold / "checkpoint_final.pt").is_file() or latest_epoch() == EPOCHS - 1
    _finish(folders, "segforge.cli.train", TRAIN + ["--continue"])
    assert _check_fold_whole(fold) == EPOCHS - 1
    assert _log(fold) == reference
