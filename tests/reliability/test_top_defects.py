"""The five most serious defects of issue 18, each reproduced as it was reported.

Each of these failed before its fix (see the report of issue 18): the disk-full prediction
reported success with zero-byte outputs, a truncated .nii.gz was read as valid, ...
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import assert_refused, can_mount_tmpfs, run, run_on_small_disk, tree_hashes
from segforge.io.image import read_image

DISK_FULL_SCRIPT = r'''
import json, subprocess
from pathlib import Path
from segforge.cli.predict import main
from segforge.io.image import read_image
out = Path("{out}")
report = {{}}
report["first"] = main(["-i", "{inp}", "-o", str(out), "-d", "987", "--disable-tta"])

def state():
    files = {{}}
    for p in sorted(out.iterdir()):
        if p.name in (".predictions.json.lock", "predictions.json"):  # the manifest and its lock: checked apart
            continue
        try:
            read_image(p)
            files[p.name] = "whole"
        except Exception as exc:
            files[p.name] = "damaged: " + str(exc)
    return files

report["after_first"] = state()
subprocess.run(["mount", "-o", "remount,size=4m", str(out)], check=True)  # space freed, as a user would
report["second"] = main(["-i", "{inp}", "-o", str(out), "-d", "987", "--disable-tta", "--continue"])
report["after_second"] = state()
report["manifest_after_second"] = json.loads((out / "predictions.json").read_text())
print("REPORT " + json.dumps(report))
'''


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root and unshare to mount a private 12 KB tmpfs")
def test_1_disk_full_during_prediction_fails_the_cases_and_continue_redoes_them(folders, model, tmp_path):
    from helpers.inference_fixtures import write_case

    inp = tmp_path / "many"
    for i in range(8):
        write_case(inp, f"case_{i}")
    out = tmp_path / "full"
    env = {k: str(folders / v) for k, v in (("SEGFORGE_RAW", "raw"), ("SEGFORGE_PREPROCESSED", "preprocessed"),
                                               ("SEGFORGE_RESULTS", "results"))}
    done = run_on_small_disk(out, "12k", DISK_FULL_SCRIPT.format(out=out, inp=inp), env)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    report = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith("REPORT "))[7:])
    # the disk holds a few cases: the others failed, by name, and exit 1 (not "8 predicted, 0 failed")
    assert report["first"] == 1
    failed = [ln for ln in done.stderr.splitlines() if ln.startswith("segforge_predict: failed:")]
    assert 3 <= len(report["after_first"]) <= 6 and len(failed) == 8 - len(report["after_first"]), done.stderr
    assert all("no space left on device" in ln for ln in failed), done.stderr
    # nothing under a final name is damaged: every output there reads back whole
    assert report["after_first"] and all(v == "whole" for v in report["after_first"].values()), report
    # --continue keeps the whole output and predicts the rest again
    assert report["second"] == 0, done.stderr
    assert len(report["after_second"]) == 8 and all(v == "whole" for v in report["after_second"].values())
    assert done.stdout.count("skipped (output complete)") == len(report["after_first"])
    assert len(report["manifest_after_second"]["cases"]) == 8  # the manifest lists every case once space is back


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_2_a_truncated_nifti_is_refused_by_every_command(folders, model, images, tmp_path):
    from segforge.synthetic import make_synthetic_dataset

    raw = make_synthetic_dataset(961, "Cut", num_train=3, num_test=0, shape=(12, 24, 24), raw_root=folders / "raw")
    victim = raw / "imagesTr" / "case_001_0000.nii.gz"
    _truncate(victim)
    # plan/verify
    assert_refused(run("plan", ["-d", "961", "-np", "1", "--verify"]), 2, victim, r"truncated")
    # import (as a plain images/labels source), nothing written into segforge_raw
    source = tmp_path / "src"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    for case in ("case_000", "case_001"):
        (source / "images" / f"{case}.nii.gz").write_bytes((raw / "imagesTr" / f"{case}_0000.nii.gz").read_bytes())
        (source / "labels" / f"{case}.nii.gz").write_bytes((raw / "labelsTr" / f"{case}.nii.gz").read_bytes())
    before = tree_hashes(folders / "raw")
    assert_refused(run("import", ["-i", source, "-d", "962", "-n", "Imp", "--modality", "CT", "-np", "1"]), 2,
                   "case_001.nii.gz", r"truncated")
    assert tree_hashes(folders / "raw") == before
    assert not [p for p in (folders / "raw").iterdir() if p.name.startswith(".")]
    # predict: that case fails by name, the others are predicted
    _truncate(images / "b_0000.nii.gz")
    out = tmp_path / "pred"
    answer = run("predict", ["-i", images, "-o", out, "-d", "987", "--disable-tta"])
    assert_refused(answer, 1, "b_0000.nii.gz", r"truncated", kind="failed")
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "c.nii.gz", "predictions.json"]
    # evaluate: a truncated prediction is not scored as a zero-filled one
    ref = tmp_path / "ref"
    ref.mkdir()
    for name in ("a", "c"):
        (ref / f"{name}.nii.gz").write_bytes((out / f"{name}.nii.gz").read_bytes())
    _truncate(out / "c.nii.gz")
    answer = run("evaluate", ["-ref", ref, "-pred", out, "-o", tmp_path / "summary.json", "-np", "1"])
    assert answer.code == 1 and "Traceback" not in answer.err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [c["case"] for c in summary["cases"]] == ["a"]
    assert summary["unreadable"][0]["case"] == "c" and "truncated" in summary["unreadable"][0]["reason"]


def test_5_a_patch_too_large_is_refused_with_the_estimate_before_anything_is_allocated(folders, model, images,
                                                                                         tmp_path):
    plans_file = model / "plans.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["3d_fullres"]["patch_size"] = [1024, 1024, 1024]
    plans_file.write_text(json.dumps(plans))
    out = tmp_path / "pred"
    line = assert_refused(run("predict", ["-i", images, "-o", out, "-d", "987", "--disable-tta"]), 2,
                          "plans.json", r"patch 1024x1024x1024 .* needs about [\d.]+ (GB|TB) \(estimate\), but the "
                                        r"cpu has [\d.]+ (GB|MB) available")
    assert not out.exists() or not list(out.iterdir())
    # the same patch asked for at planning, on 12x24x24 images: refused there too, with the budget
    from segforge.synthetic import make_synthetic_dataset

    make_synthetic_dataset(963, "Big", num_train=2, num_test=0, shape=(12, 24, 24), raw_root=folders / "raw")
    answer = run("plan", ["-d", "963", "-np", "1", "--plan-only", "--patch-size", "1024", "1024", "1024"])
    assert_refused(answer, 2, None, r"patch 1024x1024x1024 at batch \d+ needs about [\d.]+ GB .*budget is [\d.]+ GB")
    assert not (folders / "preprocessed" / "Dataset963_Big" / "plans.json").exists()
    assert line
