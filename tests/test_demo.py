"""The demo's whole pipeline at a tiny size: every step runs and leaves what it promises."""

import json

import pytest
import torch

from segforge.cli import demo


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    torch.set_num_threads(1)
    code = demo.main(["--device", "cpu", "--epochs", "1", "--iters-per-epoch", "2", "--num-train", "4",
                      "--num-test", "1", "--shape", "32", "48", "48", "-np", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    name = "Dataset901_DemoOrgans"
    plans = json.loads((tmp_path / "preprocessed" / name / "plans.json").read_text())
    assert plans["default_configuration"] == "3d_fullres"
    fold = tmp_path / "results" / name / "SegmentationTrainer__3d_fullres" / "fold_0"
    for produced in ("checkpoint_final.pt", "log.csv", "progress.png", "train_example.png",
                     "validation/summary.json"):
        assert (fold / produced).is_file(), produced
    predictions = tmp_path / "results" / name / "demo_predictions"
    assert (predictions / "case_004.nii.gz").is_file()
    summary = json.loads((predictions / "summary.json").read_text())
    assert 0.0 <= summary["foreground_mean"]["dice"] <= 1.0
    assert "mean foreground Dice on 1 held-out scans" in out
    assert str(predictions) in out


def test_demo_help_names_the_cascade_switch(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    assert "--cascade" in capsys.readouterr().out
