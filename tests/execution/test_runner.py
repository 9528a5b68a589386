"""The per-case runner on the local executor: order, shards, skips, bad cases, dying workers."""

import os

import pytest
from case_functions import (KillFromOutside, add_offset, broken_setup, device_of, die_on_victim, kill_own_worker_once,
                            load_offset, numbered_tasks, square)

from segforge.errors import InputError
from segforge.execution import CaseStage, CaseTask, ExecutionSettings, run_cases, select_part

SQUARE = CaseStage("squares", square)


_tasks = numbered_tasks


def test_in_process_results_in_task_order_and_one_summary_line():
    lines = []
    summary = run_cases(SQUARE, _tasks(4), ExecutionSettings(workers=1), progress=False, log=lines.append)
    assert summary.done == ["case_0", "case_1", "case_2", "case_3"]
    assert [summary.results()[f"case_{i}"]["square"] for i in range(4)] == [0, 1, 4, 9]
    assert {r["pid"] for r in summary.results().values()} == {os.getpid()}
    assert lines[-1].startswith("squares: 4 done, 0 skipped, 0 failed in ")


def test_worker_processes_report_a_bad_case_and_finish_the_others(tmp_path):
    tasks = _tasks(5, out=str(tmp_path))
    tasks[3] = CaseTask("case_3", {"x": 3, "out": str(tmp_path), "bad": True})
    summary = run_cases(SQUARE, tasks, ExecutionSettings(workers=2), progress=False, log=None)
    assert summary.done == ["case_0", "case_1", "case_2", "case_4"]
    assert [o.name for o in summary.failed] == ["case_3"]
    assert summary.failure_lines() == ["case_3: case_3.nii.gz: not a readable case"]
    assert "4 done, 0 skipped, 1 failed (case_3)" in summary.line()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.txt", "1.txt", "2.txt", "4.txt"]
    assert os.getpid() not in {r["pid"] for r in summary.results().values()}


def test_finished_cases_are_skipped():
    summary = run_cases(SQUARE, _tasks(4), ExecutionSettings(workers=1), is_done=lambda t: t.payload["x"] % 2 == 0,
                        progress=False, log=None)
    assert summary.skipped == ["case_0", "case_2"] and summary.done == ["case_1", "case_3"]
    assert [o.status for o in summary.outcomes] == ["skipped", "done", "skipped", "done"]


@pytest.mark.parametrize("num_parts", [1, 2, 3, 7])
def test_parts_cover_every_case_exactly_once(num_parts):
    names = [f"c{i:03d}" for i in (5, 1, 9, 3, 0, 12, 7, 2, 8, 11)]
    shards = [select_part(names, part, num_parts) for part in range(num_parts)]
    together = [n for shard in shards for n in shard]
    assert sorted(together) == sorted(names)
    assert len(together) == len(set(together))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert select_part(list(reversed(names)), 0, num_parts) == shards[0]  # the order of discovery does not matter


def test_runs_of_all_parts_do_every_case_once(tmp_path):
    done = []
    for part in range(3):
        summary = run_cases(SQUARE, _tasks(8, out=str(tmp_path)), ExecutionSettings(workers=1, part=part, num_parts=3),
                            output_folder=tmp_path, progress=False, log=None)
        assert summary.part == (part, 3) and f"(part {part}/3)" in summary.line()
        done += summary.done
    assert sorted(done) == sorted(f"case_{i}" for i in range(8)) and len(done) == 8


def test_setup_runs_once_per_worker_and_its_context_reaches_every_case():
    stage = CaseStage("offsets", add_offset, setup=load_offset, setup_arg=100)
    summary = run_cases(stage, _tasks(6), ExecutionSettings(workers=2), progress=False, log=None)
    results = summary.results()
    assert [results[f"case_{i}"]["value"] for i in range(6)] == [100, 101, 102, 103, 104, 105]
    assert all(r["setup_pid"] == r["pid"] for r in results.values())
    assert len({r["pid"] for r in results.values()}) <= 2


def test_a_gpu_stage_runs_one_worker_per_gpu_and_splits_the_cases():
    """``segforge_predict --num-gpus 2``: two worker processes, set up on ``cuda:0`` and ``cuda:1`` (the
    predictor loads there), the cases shared between them, each done once; without --num-gpus the same
    stage runs in this process on the predictor's own device."""
    stage = CaseStage("gpu stage", device_of, setup=load_offset, setup_arg=0, uses_gpu=True)
    summary = run_cases(stage, _tasks(6), ExecutionSettings(workers=1, num_gpus=2), progress=False, log=None)
    results = summary.results()
    assert summary.done == [f"case_{i}" for i in range(6)]
    assert {r["device"] for r in results.values()} == {"cuda:0", "cuda:1"}
    by_pid = {}
    for r in results.values():
        assert r["pid"] == r["setup_pid"] != os.getpid()
        by_pid.setdefault(r["pid"], set()).add(r["device"])
    assert sorted(map(sorted, by_pid.values())) == [["cuda:0"], ["cuda:1"]]  # one GPU per process
    alone = run_cases(stage, _tasks(2), ExecutionSettings(workers=1), progress=False, log=None).results()
    assert {(r["device"], r["pid"]) for r in alone.values()} == {(None, os.getpid())}


def test_a_stage_that_cannot_start_stops_the_run_with_its_reason():
    stage = CaseStage("broken", add_offset, setup=broken_setup)
    with pytest.raises(InputError, match="a worker could not start: fold_0/checkpoint_final.pt: cannot load"):
        run_cases(stage, _tasks(3), ExecutionSettings(workers=2), progress=False, log=None)


def test_a_worker_killing_itself_is_replaced_and_its_case_retried(tmp_path):
    stage = CaseStage("kills", kill_own_worker_once)
    tasks = _tasks(6, marker=str(tmp_path / "marker"), victim=2, self_kill=True)
    summary = run_cases(stage, tasks, ExecutionSettings(workers=2), progress=False, log=None)
    assert summary.done == [f"case_{i}" for i in range(6)]
    assert {o.name: o.attempts for o in summary.outcomes}["case_2"] == 2
    assert summary.results()["case_2"]["pid"] != int((tmp_path / "marker").read_text())


def test_a_worker_killed_from_outside_mid_task_is_survived(tmp_path):
    marker = tmp_path / "marker"
    stage = CaseStage("kills", kill_own_worker_once)
    tasks = _tasks(4, marker=str(marker), victim=1)
    with KillFromOutside(marker, seconds=30):
        summary = run_cases(stage, tasks, ExecutionSettings(workers=2), progress=False, log=None)
    assert summary.done == [f"case_{i}" for i in range(4)] and not summary.failed


def test_a_case_that_kills_every_worker_fails_after_max_attempts():
    tasks = [CaseTask("case_0", {"x": 0, "victim": 0})] + _tasks(3)[1:]
    summary = run_cases(CaseStage("kills", die_on_victim), tasks, ExecutionSettings(workers=2, max_attempts=2),
                        progress=False, log=None)
    assert summary.done == ["case_1", "case_2"]
    (failed,) = summary.failed
    assert failed.name == "case_0" and failed.attempts == 2
    assert "its worker died 2 times" in failed.reason and "SIGKILL" in failed.reason


def test_unknown_executor_answers_did_you_mean():
    with pytest.raises(InputError, match="unknown executor 'rey'.*did you mean 'ray'"):
        run_cases(SQUARE, _tasks(1), ExecutionSettings(executor="rey"), progress=False, log=None)


@pytest.mark.parametrize("kwargs, message", [
    ({"part": 1}, "--part and --num-parts go together"),
    ({"part": 3, "num_parts": 3}, r"--part must be in 0..2"),
    ({"workers": 0}, "at least 1"),
    ({"ray_address": "auto"}, "--ray-address needs --executor ray"),
])
def test_settings_are_checked(kwargs, message):
    with pytest.raises(InputError, match=message):
        ExecutionSettings(**kwargs)


def test_repeated_case_names_are_refused():
    with pytest.raises(InputError, match="repeated: case_0"):
        run_cases(SQUARE, _tasks(2) + _tasks(1), progress=False, log=None)
