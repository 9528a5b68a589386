"""Issue 18, item 9: the tests never read or write the SEGFORGE_* folders a user exported.

As reported: a user follows the README ("Your own data"), exports SEGFORGE_RAW/PREPROCESSED/
RESULTS, and already has datasets with the ids the tests use. Each reliability test below
addresses its dataset by number (961, 987, 999): had it looked into the user's folders, the
id would be ambiguous ("dataset id 961 is ambiguous: ...") and it would fail. They pass, and
the user's folders are byte for byte and time for time as they were.
"""

from __future__ import annotations

import os
import subprocess
import sys

from harness import ROOT

TESTS = [
    "tests/reliability/test_matrix.py::test_bad_input_is_refused_cleanly[plan-numtraining-string]",
    "tests/reliability/test_matrix.py::test_bad_input_is_refused_cleanly[predict-checkpoint-nan-weights]",
    "tests/reliability/test_matrix.py::test_bad_input_is_refused_cleanly[train-lr-nan]",
    "tests/reliability/test_training_faults.py::test_a_single_case_dataset_trains_fold_all_and_refuses_fold_0_saying_why",
]


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_exported_user_folders_with_the_same_dataset_ids_change_nothing(tmp_path):
    user = tmp_path / "user"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for variable, name in (("SEGFORGE_RAW", "raw"), ("SEGFORGE_PREPROCESSED", "preprocessed"),
                           ("SEGFORGE_RESULTS", "results")):
        for dataset in ("Dataset961_Users", "Dataset987_Users", "Dataset999_Users"):
            (user / name / dataset).mkdir(parents=True)
            (user / name / dataset / "dataset.json").write_text('{"channel_names": {"0": "CT"}, '
                                                                '"labels": {"background": 0}}')
        env[variable] = str(user / name)
    before = _snapshot(user)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT, env=env,
                          capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(TESTS)} passed" in done.stdout
    assert _snapshot(user) == before
