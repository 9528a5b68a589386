"""The plan-and-preprocess steps: verification, fingerprint reuse, plans on disk, what gets preprocessed.

Fingerprint extraction and preprocessing are replaced by recorders here (their own tests
cover them); tests/cli/test_plan_and_preprocess.py runs the real ones end to end.
"""

from __future__ import annotations

import json
import os

import pytest

from helpers.fingerprints import make_fingerprint

from segforge.errors import DatasetProblems, InputError
from segforge.planning.overrides import PlanOverrides
from segforge.planning.planner import plan_experiment
from segforge.planning.plans import Plans
from segforge.synthetic import make_synthetic_dataset
from segforge.workflows import plan_and_preprocess as experiment
from segforge.workflows.plan_and_preprocess import configurations_to_preprocess, plan_and_preprocess, raw_signature


@pytest.fixture
def fingerprint_factory():
    return make_fingerprint


@pytest.fixture
def raw(tmp_path):
    return make_synthetic_dataset(901, "Tiny", num_train=2, num_test=0, shape=(12, 24, 24), raw_root=tmp_path / "raw")


@pytest.fixture
def recorders(monkeypatch, fingerprint_factory):
    calls = {"verify": 0, "fingerprint": 0, "preprocess": []}

    def verify(ds, num_processes, progress, execution):
        calls["verify"] += 1
        return []

    def extract(ds, execution, progress, log):
        calls["fingerprint"] += 1
        fp = fingerprint_factory(spacings=[2.0, 1.5, 1.5], shapes=[[12, 24, 24]] * 2)
        fp["dataset_name"] = ds.name
        fp["labels"] = dict(ds.labels)
        return fp

    def preprocess(name, plans, names, execution, progress, log):
        calls["preprocess"].append((name, list(names), execution.workers))

    monkeypatch.setattr(experiment, "_verify", verify)
    monkeypatch.setattr(experiment, "_extract_fingerprint", extract)
    monkeypatch.setattr(experiment, "_preprocess", preprocess)
    return calls


def test_raw_signature_follows_file_changes(raw):
    first = raw_signature(raw)
    assert raw_signature(raw) == first
    label = next((raw / "labelsTr").iterdir())
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert raw_signature(raw) != first


def test_steps_write_plans_and_reuse_the_fingerprint(raw, recorders, tmp_path):
    plans = plan_and_preprocess(901, num_processes=1, log=lambda _: None)
    out = tmp_path / "preprocessed" / raw.name
    assert Plans.load(out / "plans.json").to_dict() == plans.to_dict()
    assert json.loads((out / "dataset.json").read_text()) == json.loads((raw / "dataset.json").read_text())
    assert (out / "fingerprint.json").is_file()
    assert recorders["preprocess"] == [(raw.name, [plans.default_configuration], 1)]

    plan_and_preprocess(901, num_processes=1, log=lambda _: None)
    assert recorders["verify"] == 1 and recorders["fingerprint"] == 1  # unchanged raw data: both skipped

    image = next((raw / "imagesTr").iterdir())
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    plan_and_preprocess(901, num_processes=1, log=lambda _: None)
    assert recorders["verify"] == 2 and recorders["fingerprint"] == 2


def test_edited_fingerprint_is_not_trusted(raw, recorders, tmp_path):
    plan_and_preprocess(901, num_processes=1, plan_only=True, log=lambda _: None)
    path = tmp_path / "preprocessed" / raw.name / "fingerprint.json"
    path.write_text(path.read_text().replace('"Dataset', '"Datasetx', 1))
    plan_and_preprocess(901, num_processes=1, plan_only=True, log=lambda _: None)
    assert recorders["fingerprint"] == 2


def test_plan_only_and_verify_only(raw, recorders, tmp_path):
    assert plan_and_preprocess(901, verify_only=True, log=lambda _: None) is None
    assert recorders["fingerprint"] == 0 and not (tmp_path / "preprocessed" / raw.name / "plans.json").exists()
    plans = plan_and_preprocess(901, plan_only=True, overrides=PlanOverrides(batch_size=5), log=lambda _: None)
    assert plans.configuration("3d_fullres").batch_size == 5
    assert recorders["preprocess"] == []


def test_requested_configurations_are_preprocessed(raw, recorders):
    plan_and_preprocess(901, num_processes=1, configurations=["2d", "3d_fullres"], log=lambda _: None)
    assert recorders["preprocess"][0][1] == ["2d", "3d_fullres"]
    with pytest.raises(InputError, match="planned: 2d, 2.5d, 3d_fullres"):
        plan_and_preprocess(901, num_processes=1, configurations=["3d_lowres"], log=lambda _: None)


def test_verification_problems_stop_before_planning(raw, tmp_path):
    image = next((raw / "imagesTr").iterdir())
    image.write_bytes(b"not an image")
    with pytest.raises(DatasetProblems) as info:
        plan_and_preprocess(901, num_processes=1, progress=False, log=lambda _: None)
    assert any(image.name in line for line in info.value.problems)
    assert not (tmp_path / "preprocessed" / raw.name / "plans.json").exists()


def test_cascade_needs_its_locator(fingerprint_factory):
    fp = fingerprint_factory(spacings=[1, 1, 1], shapes=[[256, 256, 256]] * 4, bbox_fraction=0.01, extent_mm=[30, 30, 30])
    plans = plan_experiment(fp, gpu_memory_gb=0.5)
    assert configurations_to_preprocess(plans) == ["locator", "cascade_fullres"]
    assert configurations_to_preprocess(plans, ["cascade_fullres", "3d_fullres"]) == [
        "locator", "cascade_fullres", "3d_fullres"]
    assert configurations_to_preprocess(plans, ["locator"]) == ["locator"]
