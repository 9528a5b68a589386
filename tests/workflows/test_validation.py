"""Fold validation predicts the fold's raw validation cases and scores them."""

import json

import numpy as np

from helpers.inference_fixtures import DATASET, blob_image, odd_geometry, write_case
from segforge.workflows.validation import validate_fold
from segforge.io.image import read_image, write_image


def test_validate_fold_writes_predictions_and_summary(folders, model_folder):
    raw = folders / "raw" / DATASET
    for i in range(3):
        image = blob_image(seed=i)
        write_case(raw / "imagesTr", f"case_{i}", image=image)
        write_image((image > 1).astype(np.uint8), odd_geometry(), raw / "labelsTr" / f"case_{i}.nii.gz")
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MR"}, "labels": {"background": 0, "blob": 1},
                                                  "numTraining": 3, "file_ending": ".nii.gz"}))
    pre = folders / "preprocessed" / DATASET
    pre.mkdir(parents=True)
    (pre / "splits.json").write_text(json.dumps({"source": "kfold", "seed": 1, "folds": [
        {"train": ["case_0"], "val": ["case_1", "case_2"]}, {"train": ["case_1", "case_2"], "val": ["case_0"]}]}))

    summary = validate_fold(model_folder, 0, device="cpu", tta=False, log=lambda line: None)
    out = model_folder / "fold_0" / "validation"
    assert sorted(p.name for p in out.iterdir()) == ["case_1.nii.gz", "case_2.nii.gz", "predictions.json",
                                                         "summary.json"]  # predictions.json: the manifest
    assert [c["case"] for c in summary["cases"]] == ["case_1", "case_2"]
    assert summary["labels"] == [1] and summary["fold"] == "0"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["cases"][0]["case"] == "case_1"
    _, geometry = read_image(out / "case_1.nii.gz")
    assert geometry.same_grid(odd_geometry())
