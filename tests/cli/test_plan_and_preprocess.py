"""`segforge_plan_and_preprocess`, in process: exit codes, one-line errors, plans and preprocessed files."""

from __future__ import annotations

import json

import pytest

from segforge.cli.plan_and_preprocess import main
from segforge.planning.plans import Plans
from segforge.synthetic import make_synthetic_dataset
from segforge.workflows import plan_and_preprocess as experiment


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("segforge_plan_and_preprocess:")]


def test_unknown_dataset_is_one_line_exit_2(folders, capsys):
    assert main(["-d", "999"]) == 2
    (line,) = _errors(capsys)
    assert "no dataset with id 999" in line


def test_broken_dataset_lists_each_problem(folders, capsys):
    raw = make_synthetic_dataset(902, "Broken", num_train=2, num_test=0, shape=(12, 24, 24), raw_root=folders / "raw")
    images = sorted((raw / "imagesTr").iterdir())
    images[0].write_bytes(b"garbage")
    (raw / "labelsTr" / "case_001.nii.gz").unlink()
    assert main(["-d", "902", "-np", "1", "--verify"]) == 2
    lines = _errors(capsys)
    assert len(lines) >= 2
    assert any(images[0].name in line for line in lines)
    assert any("case_001" in line for line in lines)


def test_bad_override_says_what_to_do(folders, capsys):
    make_synthetic_dataset(903, "Tiny", num_train=2, num_test=0, shape=(12, 24, 24), raw_root=folders / "raw")
    assert main(["-d", "903", "--patch-size", "40", "48", "48", "--plan-only"]) == 2
    (line,) = _errors(capsys)
    assert "multiple of 16" in line and "48" in line


def _fingerprint(ds) -> dict:
    """The fingerprint keys the planner reads, for two 12 x 24 x 24 cases."""
    stats = {"mean": 40.0, "std": 120.0, "min": -1000.0, "max": 1500.0, "p00_5": -900.0, "p50": 35.0, "p99_5": 1200.0}
    case = {"spacing": [2.0, 1.5, 1.5], "shape": [12, 24, 24], "shape_after_crop": [12, 24, 24]}
    return {
        "dataset_name": ds.name, "channel_names": dict(ds.channel_names), "labels": dict(ds.labels),
        "cases": [dict(case, name="case_000"), dict(case, name="case_001")], "intensity": [stats],
        "summary": {"median_spacing": [2.0, 1.5, 1.5], "spacing_p10": [2.0, 1.5, 1.5],
                    "median_nonzero_fraction_removed": 0.0, "median_union_bbox_fraction": 0.3,
                    "p95_union_extent_mm": [12.0, 18.0, 18.0]},
    }


def test_plan_only_writes_plans_with_overrides(folders, capsys, monkeypatch):
    make_synthetic_dataset(904, "Tiny", num_train=2, num_test=0, shape=(12, 24, 24), raw_root=folders / "raw")

    def extract(ds, execution, progress, log):
        return _fingerprint(ds)

    monkeypatch.setattr(experiment, "_extract_fingerprint", extract)
    code = main(["-d", "904", "-np", "1", "--plan-only", "--patch-size", "16", "32", "32", "--batch-size", "3",
                 "--default-configuration", "2d", "--gpu-memory-gb", "0.5"])
    assert code == 0, capsys.readouterr().err
    plans = Plans.load(folders / "preprocessed" / "Dataset904_Tiny" / "plans.json")
    c = plans.configuration("3d_fullres")
    assert c.patch_size == [16, 32, 32] and c.batch_size == 3 and c.why["patch_size"] == "user override"
    assert plans.default_configuration == "2d" and plans.gpu_memory_gb == 0.5
    assert not (folders / "preprocessed" / "Dataset904_Tiny" / "2d").exists()


@pytest.mark.slow
def test_synthetic_organs_end_to_end(folders, capsys):
    """Real verification, fingerprint and preprocessing on a small synthetic dataset."""
    pytest.importorskip("segforge.fingerprint")
    make_synthetic_dataset(905, "Organs", kind="organs", num_train=3, num_test=0, shape=(20, 40, 40),
                           raw_root=folders / "raw")
    assert main(["-d", "905", "-np", "1", "--gpu-memory-gb", "0.5"]) == 0, capsys.readouterr().err
    out = folders / "preprocessed" / "Dataset905_Organs"
    plans = Plans.load(out / "plans.json")
    assert (out / "fingerprint.json").is_file() and (out / "dataset.json").is_file()
    for name in experiment.configurations_to_preprocess(plans):
        configuration = plans.configuration(name)
        folder = out / configuration.data_identifier
        for case in ("case_000", "case_001", "case_002"):
            props = json.loads((folder / f"{case}.json").read_text())
            assert props["plans_version"] == configuration.version()
            assert (folder / f"{case}.npy").is_file() and (folder / f"{case}_seg.npy").is_file()


@pytest.mark.slow
def test_forced_cascade_preprocesses_locator_and_segmenter(folders, capsys):
    make_synthetic_dataset(906, "Small", kind="small_target", num_train=2, num_test=0, shape=(24, 48, 48),
                           raw_root=folders / "raw")
    code = main(["-d", "906", "-np", "1", "--gpu-memory-gb", "0.5", "--default-configuration", "cascade_fullres"])
    assert code == 0, capsys.readouterr().err
    out = folders / "preprocessed" / "Dataset906_Small"
    plans = Plans.load(out / "plans.json")
    assert plans.default_configuration == "cascade_fullres"
    for name in ("locator", "cascade_fullres"):
        configuration = plans.configuration(name)
        props = json.loads((out / configuration.data_identifier / "case_000.json").read_text())
        assert props["preprocessed_spacing"] == pytest.approx(configuration.spacing, rel=0.05)  # shapes are whole voxels
    assert not (out / "3d_fullres").exists()
