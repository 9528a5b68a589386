"""End to end through the real stages: synthetic raw data -> plan -> preprocess -> segforge_train -> fold validation."""

import csv
import json

import pytest
import torch

from segforge.cli import train as train_cli
from segforge.planning.plans import Plans
from segforge.synthetic import make_synthetic_dataset
from segforge.workflows.plan_and_preprocess import plan_and_preprocess


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_cli_on_a_preprocessed_synthetic_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    make_synthetic_dataset(990, "Tiny", kind="organs", num_train=4, num_test=0, shape=(24, 40, 40),
                           raw_root=tmp_path / "raw")
    plans = plan_and_preprocess(990, num_processes=1, gpu_memory_gb=0.25, progress=False, log=lambda *_: None)
    # a narrower network than planned keeps the CPU test short; preprocessing does not depend on it
    conf = plans.configurations[plans.default_configuration]
    conf.network.features_per_stage = [4 * 2**i for i in range(conf.network.n_stages)]
    plans.save(tmp_path / "preprocessed" / plans.dataset_name / "plans.json")

    rc = train_cli.main(["990", "0", "--epochs", "2", "--iters-per-epoch", "3", "--val-iters", "1",
                         "--num-workers", "1", "--device", "cpu", "--no-progress-bar"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    fold = tmp_path / "results" / plans.dataset_name / f"SegmentationTrainer__{conf.name}" / "fold_0"
    rows = list(csv.DictReader((fold / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    names = [n for n, v in sorted(plans.labels.items(), key=lambda kv: kv[1]) if v != 0]
    assert [k for k in rows[0] if k.startswith("dice_")] == [f"dice_{n}" for n in names]
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["network_state"] and Plans.from_dict(ckpt["plans"]).configurations[conf.name].network.features_per_stage[0] == 4
    splits = json.loads((tmp_path / "preprocessed" / plans.dataset_name / "splits.json").read_text())
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert sorted(c["case"] for c in summary["cases"]) == sorted(splits["folds"][0]["val"])
