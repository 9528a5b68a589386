"""Faults by real means: a full disk (a private tmpfs of a few KB) and a read-only output folder.

Each scenario runs in a private mount namespace (``unshare -m``), so the tiny disk exists
only for that process: the command fails with one line per problem naming the file and
"no space left on device", no file under a final name is damaged, and after space is freed
(the tmpfs is remounted larger, as a user would delete files) the same command, or
``--continue``, completes. Skipped where mounting is not permitted (not root, no unshare).
"""

from __future__ import annotations

import json
import shutil

import pytest

from harness import can_mount_tmpfs, run_on_small_disk

pytestmark = pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root and unshare to mount a private tmpfs")

# run inside the namespace: the command, a check of every file on the small disk, then more space and a re-run
SCRIPT = r'''
import io, json, subprocess, contextlib, sys
from pathlib import Path
import numpy as np, torch
from segforge.io.image import read_image

def run(module, argv):
    import importlib
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return {{"code": code, "out": out.getvalue(), "err": err.getvalue()}}

def whole(root):
    states = {{}}
    for p in sorted(Path(root).rglob("*")):
        if not p.is_file():
            continue
        try:
            if p.name.endswith((".nii.gz", ".nii")):
                read_image(p)
            elif p.suffix == ".npy":
                np.load(p, allow_pickle=False)
            elif p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".pt":
                torch.load(p, weights_only=True)
            states[str(p.relative_to(root))] = "whole"
        except Exception as exc:
            states[str(p.relative_to(root))] = "damaged: " + str(exc)[:200]
    return states

report = {{"first": run("{module}", {argv})}}
report["after_first"] = whole("{disk}")
subprocess.run(["mount", "-o", "remount,size=64m", "{disk}"], check=True)
report["second"] = run("{module}", {argv2})
report["after_second"] = whole("{disk}")
print("REPORT " + json.dumps(report))
'''


def _scenario(folders, disk, size, module, argv, argv2=None):
    env = {k: str(folders / v) for k, v in (("SEGFORGE_RAW", "raw"), ("SEGFORGE_PREPROCESSED", "preprocessed"),
                                               ("SEGFORGE_RESULTS", "results"))}
    env["OMP_NUM_THREADS"] = "1"
    script = SCRIPT.format(module=module, argv=[str(a) for a in argv], argv2=[str(a) for a in (argv2 or argv)],
                           disk=disk)
    done = run_on_small_disk(disk, size, script, env)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("REPORT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[0][7:])


def _error_lines(answer, prog):
    assert "Traceback" not in answer["out"] + answer["err"], answer["err"]
    return [ln for ln in answer["err"].splitlines() if ln.startswith(f"{prog}: error:")]


def _plan_only(folders, dataset_id):
    from segforge.cli.plan_and_preprocess import main

    assert main(["-d", str(dataset_id), "-np", "1", "--plan-only"]) == 0


def test_disk_full_during_preprocessing(folders):
    from segforge.synthetic import make_synthetic_dataset

    make_synthetic_dataset(964, "Full", num_train=6, num_test=0, shape=(12, 24, 24), raw_root=folders / "raw")
    _plan_only(folders, 964)
    disk = folders / "preprocessed" / "Dataset964_Full" / "3d_fullres"  # the preprocessed cases go onto a 120 KB disk
    report = _scenario(folders, disk, "120k", "segforge.cli.plan_and_preprocess", ["-d", "964", "-np", "1"])
    first = report["first"]
    assert first["code"] == 2
    lines = _error_lines(first, "segforge_plan_and_preprocess")
    assert lines and all("no space left on device" in ln and "3d_fullres" in ln for ln in lines), first["err"]
    done_first = [p for p in report["after_first"] if p.endswith(".json")]
    assert 1 <= len(done_first) < 6, report["after_first"]  # some cases finished before the disk filled up
    assert all(v == "whole" for v in report["after_first"].values()), report["after_first"]
    # with space again, the same command finishes the rest and keeps what was done
    assert report["second"]["code"] == 0, report["second"]["err"]
    assert len([p for p in report["after_second"] if p.endswith(".json")]) == 6
    assert all(v == "whole" for v in report["after_second"].values()), report["after_second"]


def test_disk_full_during_training_stops_with_one_line_and_continue_completes(folders):
    from helpers.fake_preprocessed import write_fake_dataset

    write_fake_dataset(folders / "preprocessed", n_cases=4)
    disk = folders / "results" / "Dataset999_Fake"
    argv = ["999", "0", "--epochs", "2", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0",
            "--no-progress-bar", "--no-validation", "--device", "cpu"]
    report = _scenario(folders, disk, "200k", "segforge.cli.train", argv, argv + ["--continue"])
    first = report["first"]
    assert first["code"] == 2
    (line,) = _error_lines(first, "segforge_train")
    assert "no space left on device" in line and "SegmentationTrainer__3d_fullres" in line, line
    assert all(v == "whole" for v in report["after_first"].values()), report["after_first"]
    assert report["second"]["code"] == 0, report["second"]["err"]
    assert report["after_second"]["SegmentationTrainer__3d_fullres/fold_0/checkpoint_final.pt"] == "whole"
    assert all(v == "whole" for v in report["after_second"].values()), report["after_second"]


def test_disk_full_during_import_leaves_segforge_raw_as_it_was(folders, tmp_path):
    from segforge.synthetic import make_synthetic_dataset

    made = make_synthetic_dataset(965, "Src", num_train=4, num_test=0, shape=(12, 24, 24), raw_root=tmp_path / "made")
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    for p in (made / "imagesTr").iterdir():
        shutil.copyfile(p, source / "images" / p.name.replace("_0000", ""))
    for p in (made / "labelsTr").iterdir():
        shutil.copyfile(p, source / "labels" / p.name)
    argv = ["-i", source, "-d", "966", "-n", "Imported", "--modality", "CT", "-np", "1"]
    report = _scenario(folders, folders / "raw", "40k", "segforge.cli.import_dataset", argv)
    first = report["first"]
    assert first["code"] == 2
    (line,) = _error_lines(first, "segforge_import")
    assert "no space left on device" in line, line
    assert report["after_first"] == {}, report["after_first"]  # no half dataset, no staging folder left
    assert report["second"]["code"] == 0, report["second"]["err"]
    assert len([p for p in report["after_second"] if p.startswith("Dataset966_Imported/imagesTr/")]) == 4


def test_read_only_output_is_refused_before_the_network_runs(folders, tmp_path):
    from helpers.inference_fixtures import tiny_plans, write_case, write_model_folder

    write_model_folder(folders / "results", tiny_plans())
    write_case(tmp_path / "in", "a")
    out = tmp_path / "ro"
    env = {k: str(folders / v) for k, v in (("SEGFORGE_RAW", "raw"), ("SEGFORGE_PREPROCESSED", "preprocessed"),
                                               ("SEGFORGE_RESULTS", "results"))}
    script = (f"import sys; from segforge.cli.predict import main; "
              f"sys.exit(main(['-i', '{tmp_path / 'in'}', '-o', '{out}', '-d', '987', '--disable-tta']))")
    done = run_on_small_disk(out, "1m", script, env, read_only=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("segforge_predict: error:")]
    assert len(lines) == 1 and str(out) in lines[0] and "not writable (read-only file system)" in lines[0]
    assert "model " not in done.stdout  # refused before the model was loaded and any case was predicted
