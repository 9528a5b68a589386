"""Distributed training with two gloo processes on the CPU: the same gradients and validation numbers as
one process holding the whole batch, one writer, one stop decision, resume; the CLI under torchrun."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.ddp_ranks import both, one_step
from helpers.distributed import run_ranks
from helpers.fake_preprocessed import make_plans, write_fake_dataset

from segforge.errors import InputError
from segforge.training.distributed import ProcessGroup, batch_share, torchrun_command


def test_batch_shares_add_up_and_refuse_too_small_a_batch():
    assert [batch_share(5, r, 2) for r in range(2)] == [3, 2]
    assert [batch_share(2, r, 2) for r in range(2)] == [1, 1]
    with pytest.raises(InputError, match="batch of 2 cannot be shared by 3 processes"):
        batch_share(2, 0, 3)
    assert ProcessGroup.current() == ProcessGroup() and not ProcessGroup().enabled
    cmd = torchrun_command("segforge.cli.train", ["999", "0"], 2)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] and cmd[-2:] == ["999", "0"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One start of two gloo processes for the two tests below (starting processes is the slow part)."""
    root = tmp_path_factory.mktemp("ddp")
    step_data = write_fake_dataset(root / "step", plans=make_plans(batch_size=3))
    run_data = write_fake_dataset(root / "run", plans=make_plans(batch_size=2))
    ranks = run_ranks(both, 2, str(step_data), str(run_data), str(root / "out"))
    return root, step_data, ranks


def test_two_processes_compute_the_gradients_and_validation_of_one(two_ranks):
    """A global batch of 3 split 2 + 1: batch Dice sums added across processes, cross-entropy weighed by
    the share; gradients within 1e-6 of one process's, validation Dice identical."""
    torch.set_num_threads(1)
    root, step_data, results = two_ranks
    ranks = [r["step"] for r in results]
    single = one_step(-1, str(step_data), str(root / "out"))
    assert [r["batch_size"] for r in ranks] == [2, 1] and single["batch_size"] == 3
    assert [r["writes_files"] for r in ranks] == [True, False]
    for name, expected in single["grads"].items():
        for r in ranks:
            assert np.abs(r["grads"][name] - expected).max() < 1e-6, name
    assert any(np.abs(g).max() > 1e-4 for g in single["grads"].values())  # gradients that mean something
    assert np.mean([r["loss"] for r in ranks]) == pytest.approx(single["loss"], rel=1e-5)
    for r in ranks:
        assert r["dice"] == single["dice"] and r["val_loss"] == pytest.approx(single["val_loss"], rel=1e-5)


def test_rank_zero_decides_writes_and_the_run_resumes(two_ranks):
    """Rank 1's clock runs 1000x slower: alone it would train on; it stops with rank 0 after epoch 0
    (else it would wait forever in the next epoch's first all-reduce). Only rank 0's folder exists."""
    root, _, results = two_ranks
    ranks = [r["run"] for r in results]
    assert [r["first"] for r in ranks] == [[0], [0]]
    assert [r["writes_files"] for r in ranks] == [True, False]
    assert not (root / "out" / "rank1").exists()
    fold = root / "out" / "rank0"
    for name in ("checkpoint_final.pt", "checkpoint_latest.pt", "log.csv", "training_options.json"):
        assert (fold / name).is_file(), name
    assert [r["resumed"] for r in ranks] == [[0, 1, 2], [0, 1, 2]]
    rows = list(csv.DictReader((fold / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert float(rows[0]["train_loss"]) == pytest.approx(ranks[0]["losses"][0], rel=1e-5)  # the first run's row kept


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_segforge_train_num_gpus_2_on_the_cpu(tmp_path):
    write_fake_dataset(tmp_path / "preprocessed", plans=make_plans(batch_size=2))
    args = ["999", "0", "--num-gpus", "2", "--device", "cpu", "--epochs", "2", "--iters-per-epoch", "2",
            "--val-iters", "2", "--num-workers", "0", "--no-progress-bar", "--no-validation"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "segforge.cli.train", *args], env=env, capture_output=True,
                          text=True, timeout=800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "distributed training: 2 processes" in proc.stdout
    assert proc.stdout.count("epoch 1/1:") == 1  # rank 0 alone prints
    fold = tmp_path / "results" / "Dataset999_Fake" / "SegmentationTrainer__3d_fullres" / "fold_0"
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and not any(k.startswith(("module.", "_orig_mod.")) for k in ckpt["network_state"])
    assert '"processes": 2' in (fold / "training_options.json").read_text()
    # --continue goes through the relaunch too: both processes resume from rank 0's checkpoint
    more = [a if a != "2" or i != args.index("--epochs") + 1 else "3" for i, a in enumerate(args)] + ["--continue"]
    proc = subprocess.run([sys.executable, "-m", "segforge.cli.train", *more], env=env, capture_output=True,
                          text=True, timeout=800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming fold 0 at epoch 2" in proc.stdout and proc.stdout.count("epoch 2/2:") == 1
    rows = list(csv.DictReader((fold / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert torch.load(fold / "checkpoint_final.pt", weights_only=True)["epoch"] == 2
