"""`segforge_train` on a cascade: the locator first, then the segmenter that uses its measured error."""

import json

import pytest
import torch

from helpers.cascade_dataset import DATASET, make_cascade_dataset

from segforge.cli.train import main as train_main
from segforge.training.registry import look_up_step, training_steps
from segforge.training.cascade_segmenter import CascadeSegmentationTrainer


@pytest.fixture
def dataset(tmp_path):
    torch.set_num_threads(1)
    return make_cascade_dataset(tmp_path / "preprocessed", n_cases=4)


def test_cascade_trains_locator_then_segmenter(dataset, tmp_path, capsys):
    assert training_steps(dataset) == [("locator", "locator"), ("cascade_segmenter", "cascade_fullres")]
    assert training_steps(dataset, "locator") == [("locator", "locator")]
    assert look_up_step("cascade_segmenter") is CascadeSegmentationTrainer

    code = train_main(["950", "0", "--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0",
                       "--device", "cpu", "--no-progress-bar", "--no-plots", "--no-validation", "--seed", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.index("training locator (locator)") < out.index("training cascade_fullres (cascade_segmenter)")
    results = tmp_path / "results" / DATASET
    locator = results / "LocatorTrainer__locator" / "fold_0"
    segmenter = results / "CascadeSegmentationTrainer__cascade_fullres" / "fold_0"
    for fold in (locator, segmenter):
        assert torch.load(fold / "checkpoint_final.pt", weights_only=True)["epoch"] == 0
    measured = json.loads((locator / "locator_validation.json").read_text())["centroid_error"]
    jitter = json.loads((segmenter / "crop_jitter.json").read_text())
    # the segmenter ran after the locator: its crop jitter is the locator's measured error on this fold
    assert jitter["source"] == str(locator / "locator_validation.json")
    assert jitter["std_zyx_mm"] == pytest.approx([min(s, 8.0) for s in measured["rms_zyx_mm"]])
    # every option reached both stages
    for fold, optimizer in ((locator, "adam"), (segmenter, "sgd")):
        recorded = json.loads((fold / "training_options.json").read_text())
        assert recorded["seed"] == 2 and recorded["num_workers"] == 0 and recorded["optimizer"] == optimizer


def test_validation_only_of_a_locator_is_a_clear_error(dataset, capsys):
    assert train_main(["950", "0", "-c", "locator", "--validation-only", "--device", "cpu"]) == 2
    assert "locator_validation.json" in capsys.readouterr().err
