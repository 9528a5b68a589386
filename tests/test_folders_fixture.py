"""The suite never touches the SEGFORGE_* folders a user exported (tests/conftest.py ``folders``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from segforge import paths

REPOSITORY = Path(__file__).resolve().parents[1]
FOLDERS = {"SEGFORGE_RAW": "raw", "SEGFORGE_PREPROCESSED": "preprocessed", "SEGFORGE_RESULTS": "results"}


def test_each_test_gets_its_own_empty_folders(folders):
    for variable, name in FOLDERS.items():
        assert os.environ[variable] == str(folders / name)
        assert not (folders / name).exists()
    assert paths.raw_root() == folders / "raw" and paths.results_root() == folders / "results"


def test_dataset_ids_resolve_inside_the_test_folders(folders):
    """Run below under decoy folders that hold a Dataset901 too: id 901 must still be this test's."""
    (folders / "raw" / "Dataset901_Mine").mkdir(parents=True)
    assert paths.resolve_dataset_name(901) == "Dataset901_Mine"


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_exported_user_folders_are_neither_read_nor_written(tmp_path):
    user = tmp_path / "user"
    env = dict(os.environ)
    for variable, name in FOLDERS.items():
        dataset = user / name / "Dataset901_X"
        dataset.mkdir(parents=True)
        (dataset / "dataset.json").write_text('{"channel_names": {"0": "CT"}, "labels": {"background": 0}}')
        env[variable] = str(user / name)
    before = snapshot(user)
    # tests that address dataset 901 by number: a leak makes "901" ambiguous, and they fail
    tests = ["tests/test_folders_fixture.py::test_dataset_ids_resolve_inside_the_test_folders",
             "tests/test_folders_fixture.py::test_each_test_gets_its_own_empty_folders",
             "tests/io/test_dataset.py", "tests/workflows/test_plan_and_preprocess_steps.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests],
                          cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
    assert snapshot(user) == before
