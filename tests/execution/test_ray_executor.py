"""The ray executor on a local Ray with 2 CPUs (started once for this module): the same
outputs as the local executor, bad cases reported, a worker SIGKILLed mid-task survived."""

import os
from pathlib import Path

import pytest
from case_functions import KillFromOutside, add_offset, kill_own_worker_once, load_offset, numbered_tasks, square

from segforge.execution import CaseStage, CaseTask, ExecutionSettings, run_cases

ray = pytest.importorskip("ray")
RAY = ExecutionSettings(executor="ray")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    here = str(Path(__file__).parent)  # the workers import case_functions from here
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, previous) if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()
    if previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = previous


@pytest.fixture
def folders(tmp_path, monkeypatch):
    for name, sub in (("SEGFORGE_RAW", "raw"), ("SEGFORGE_PREPROCESSED", "pre"), ("SEGFORGE_RESULTS", "res")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    return tmp_path


_tasks = numbered_tasks


def test_actors_set_up_once_and_report_a_bad_case_while_the_others_finish():
    stage = CaseStage("offsets", add_offset, setup=load_offset, setup_arg=10)
    summary = run_cases(stage, _tasks(5), RAY, progress=False, log=None)
    assert [summary.results()[f"case_{i}"]["value"] for i in range(5)] == [10, 11, 12, 13, 14]
    assert all(r["setup_pid"] == r["pid"] != os.getpid() for r in summary.results().values())
    tasks = _tasks(4)
    tasks[2] = CaseTask("case_2", {"x": 2, "bad": True})
    summary = run_cases(CaseStage("squares", square), tasks, RAY, progress=False, log=None)
    assert summary.done == ["case_0", "case_1", "case_3"]
    assert summary.failure_lines() == ["case_2: case_2.nii.gz: not a readable case"]


def test_a_worker_sigkilled_mid_task_is_replaced_and_the_run_completes(tmp_path):
    marker = tmp_path / "pid"
    with KillFromOutside(marker, seconds=60):
        summary = run_cases(CaseStage("kills", kill_own_worker_once), _tasks(4, marker=str(marker), victim=1), RAY,
                            progress=False, log=None)
    assert summary.done == [f"case_{i}" for i in range(4)] and not summary.failed
    assert {o.name: o.attempts for o in summary.outcomes}["case_1"] == 2
    assert summary.results()["case_1"]["pid"] != int(marker.read_text())


@pytest.mark.slow
def test_preprocessing_on_ray_writes_byte_identical_arrays(folders):
    from segforge.cli.plan_and_preprocess import main
    from segforge.synthetic import make_synthetic_dataset

    make_synthetic_dataset(911, "RayTiny", num_train=3, num_test=0, shape=(12, 24, 24), raw_root=folders / "raw")
    common = ["-d", "911", "--gpu-memory-gb", "0.1"]
    assert main(common + ["-np", "2"]) == 0
    root = folders / "pre" / "Dataset911_RayTiny"
    (identifier,) = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    local = {p.name: p.read_bytes() for p in identifier.glob("*.npy")}
    for p in identifier.glob("*.json"):
        p.unlink()
    assert main(common + ["--executor", "ray"]) == 0
    assert sorted(local) == sorted(p.name for p in identifier.glob("*.npy")) and len(local) == 6
    for name, data in local.items():
        assert (identifier / name).read_bytes() == data, name
    assert not [p for p in identifier.iterdir() if p.name.startswith(".tmp-")]


def test_verification_on_ray_names_the_broken_file(folders, capsys):
    from segforge.cli.plan_and_preprocess import main
    from segforge.synthetic import make_synthetic_dataset

    raw = make_synthetic_dataset(912, "RayBroken", num_train=3, num_test=0, shape=(12, 24, 24),
                                 raw_root=folders / "raw")
    broken = raw / "imagesTr" / "case_001_0000.nii.gz"
    broken.write_bytes(b"garbage")
    assert main(["-d", "912", "--verify", "--executor", "ray"]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("segforge_plan_and_preprocess:")]
    assert len(lines) == 1 and str(broken) in lines[0]
