"""--labels at planning: the plan keeps the named labels with their dataset values, records what became
background and why; a typo answers "did you mean". Region-based dataset.json plans sigmoid outputs."""

from __future__ import annotations

import json

import pytest

from segforge.cli.plan_and_preprocess import main
from segforge.errors import InputError
from segforge.planning.overrides import PlanOverrides
from segforge.planning.planner import plan_experiment
from segforge.planning.plans import Plans
from segforge.synthetic import make_synthetic_dataset
from segforge.workflows import plan_and_preprocess as experiment

ORGANS = {"background": 0, "liver": 1, "gallbladder": 2, "kidney": 3, "spleen": 4}


def _fingerprint(labels: dict, regions_class_order=None) -> dict:
    stats = {"mean": 40.0, "std": 120.0, "min": -1000.0, "max": 1500.0, "p00_5": -900.0, "p50": 35.0, "p99_5": 1200.0}
    case = {"spacing": [2.0, 1.5, 1.5], "shape": [12, 24, 24], "shape_after_crop": [12, 24, 24]}
    fingerprint = {
        "dataset_name": "Dataset930_Labels", "channel_names": {"0": "CT"}, "labels": labels,
        "cases": [dict(case, name="case_000"), dict(case, name="case_001")], "intensity": [stats],
        "summary": {"median_spacing": [2.0, 1.5, 1.5], "spacing_p10": [2.0, 1.5, 1.5],
                    "median_nonzero_fraction_removed": 0.0, "median_union_bbox_fraction": 0.3,
                    "p95_union_extent_mm": [12.0, 18.0, 18.0]},
    }
    if regions_class_order is not None:
        fingerprint["regions_class_order"] = regions_class_order
    return fingerprint


def test_a_label_subset_keeps_the_named_labels_and_records_the_rest_as_background():
    plans = plan_experiment(_fingerprint(ORGANS), 0.5, PlanOverrides(labels=("kidney", "liver")))
    assert plans.labels == {"background": 0, "liver": 1, "kidney": 3}  # dataset values kept
    assert plans.dropped_labels == {"gallbladder": 2, "spleen": 4}
    assert plans.num_classes == 3  # background, liver, kidney: softmax outputs 0, 1, 2
    assert plans.label_scheme.output_values == [0, 1, 3]
    assert "--labels" in plans.why["labels"] and "gallbladder, spleen become(s) background" in plans.why["labels"]
    again = Plans.from_dict(json.loads(json.dumps(plans.to_dict())))
    assert again.dropped_labels == plans.dropped_labels and again.version() == plans.version()
    every = plan_experiment(_fingerprint(ORGANS), 0.5)
    assert every.num_classes == 5 and every.dropped_labels == {} and "dropped_labels" not in every.to_dict()


def test_regions_and_an_ignore_label_are_planned_as_their_outputs():
    labels = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": [3], "ignore": 4}
    plans = plan_experiment(_fingerprint(labels, [1, 2, 3]), 0.5)
    assert plans.num_classes == 3 and plans.regions_class_order == [1, 2, 3]  # one sigmoid per region
    assert "regions (sigmoid outputs" in plans.why["labels"] and "ignore label 4" in plans.why["labels"]
    subset = plan_experiment(_fingerprint(labels, [1, 2, 3]), 0.5, PlanOverrides(labels=("whole", "enhancing")))
    assert subset.num_classes == 2 and subset.regions_class_order == [1, 3] and subset.dropped_labels == {
        "core": [2, 3]}


def test_a_misspelt_label_is_refused_with_did_you_mean():
    with pytest.raises(InputError, match=r"unknown label 'kidny'; did you mean 'kidney'"):
        plan_experiment(_fingerprint(ORGANS), 0.5, PlanOverrides(labels=("kidny",)))


def test_the_cli_records_the_subset_in_plans_json(folders, capsys, monkeypatch):
    raw = make_synthetic_dataset(931, "Organs", kind="organs", num_train=2, num_test=0, shape=(12, 24, 24),
                                 raw_root=folders / "raw")
    labels = json.loads((raw / "dataset.json").read_text())["labels"]
    monkeypatch.setattr(experiment, "_extract_fingerprint", lambda ds, execution, progress, log: _fingerprint(
        dict(ds.labels)) | {"dataset_name": ds.name})
    kept = sorted(n for n, v in labels.items() if v)[0]
    assert main(["-d", "931", "-np", "1", "--plan-only", "--gpu-memory-gb", "0.5", "--labels", kept]) == 0, \
        capsys.readouterr().err
    plans = json.loads((folders / "preprocessed" / "Dataset931_Organs" / "plans.json").read_text())
    assert plans["labels"] == {"background": 0, kept: labels[kept]}
    assert set(plans["dropped_labels"]) == {n for n, v in labels.items() if v and n != kept}
    assert main(["-d", "931", "-np", "1", "--plan-only", "--labels", kept + "x"]) == 2
    assert f"did you mean '{kept}'" in capsys.readouterr().err
