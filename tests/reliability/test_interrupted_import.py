"""A killed import leaves nothing behind that the next import does not clear (issue 18)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from harness import ROOT, run


def _source(tmp_path, n=6):
    from segforge.synthetic import make_synthetic_dataset

    made = make_synthetic_dataset(968, "Src", num_train=n, num_test=0, shape=(24, 48, 48), raw_root=tmp_path / "made")
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    for p in (made / "imagesTr").iterdir():
        shutil.copyfile(p, source / "images" / p.name.replace("_0000", ""))
    for p in (made / "labelsTr").iterdir():
        shutil.copyfile(p, source / "labels" / p.name)
    return source


def test_kill_9_during_import_leaves_a_staging_folder_the_next_import_removes(folders, tmp_path):
    source = _source(tmp_path)
    raw = folders / "raw"
    argv = ["-i", source, "-d", "969", "-n", "Killed", "--modality", "CT", "-np", "1"]
    process = subprocess.Popen([sys.executable, "-m", "segforge.cli.import_dataset", *map(str, argv)],
                               env={**os.environ, "PYTHONPATH": str(ROOT), "SEGFORGE_RAW": str(raw)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(p.name.startswith(".importing-") and any(p.rglob("*.nii.gz")) for p in raw.iterdir()):
        assert process.poll() is None, "the import ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    staging = [p for p in raw.iterdir() if p.name.startswith(".importing-")]
    assert staging and not (raw / "Dataset969_Killed").exists()  # the kill left a half-converted staging folder

    answer = run("import", argv)
    assert answer.code == 0, answer.err
    assert not [p for p in raw.iterdir() if p.name.startswith(".")], list(raw.iterdir())
    assert len(list((raw / "Dataset969_Killed" / "imagesTr").iterdir())) == 6


def test_an_interrupted_overwrite_puts_the_old_dataset_back(folders, tmp_path):
    """Killed between moving the old dataset aside and moving the new one in: the old one comes back."""
    source = _source(tmp_path, n=3)
    raw = folders / "raw"
    argv = ["-i", source, "-d", "969", "-n", "Kept", "--modality", "CT", "-np", "1"]
    assert run("import", argv).code == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    aside = raw / f".replaced-{dead.pid}-abcd1234-Dataset969_Kept"
    os.replace(raw / "Dataset969_Kept", aside)  # where a killed --overwrite leaves it
    answer = run("import", argv)
    assert answer.code == 0, answer.err
    assert "already holds exactly this import" in answer.out  # the old dataset was put back first
    assert not aside.exists() and (raw / "Dataset969_Kept" / "dataset.json").is_file()
