"""Concurrent runs on one folder: refused with the holder named, or sharing disjoint parts;
each run's temporary files are its own."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from segforge.errors import InputError
from segforge.execution import FolderClaim
from segforge.execution.claims import RUNS_DIR
from segforge.io.atomic import RUN_ID_ENV, temporary_name, temporary_run_id


def _temporary(folder, run_id, name):
    previous = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run_id
    try:
        path = temporary_name(folder / name)
    finally:
        os.environ.pop(RUN_ID_ENV) if previous is None else os.environ.__setitem__(RUN_ID_ENV, previous)
    path.write_bytes(b"half a file")
    return path


def test_temporary_names_carry_the_run_id(tmp_path, monkeypatch):
    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    plain = temporary_name(tmp_path / "case_000.nii.gz")
    assert plain.name.startswith(f".tmp-{os.getpid()}-") and plain.name.endswith("-case_000.nii.gz")
    assert temporary_run_id(plain.name) is None
    monkeypatch.setenv(RUN_ID_ENV, "abc123def456")
    tagged = temporary_name(tmp_path / "case_000.nii.gz")
    assert tagged.name.startswith(f".tmp-{os.getpid()}-abc123def456.") and tagged.name.endswith("-case_000.nii.gz")
    assert temporary_run_id(tagged.name) == "abc123def456"
    assert temporary_run_id("case.tmp-x.y") is None
    assert temporary_run_id(".tmp-123-abcd1234-case.v2.npy") is None


def test_a_second_whole_run_is_refused_naming_the_holder(tmp_path):
    with FolderClaim(tmp_path, "run1", what="preprocessing"):
        with pytest.raises(InputError) as info:
            FolderClaim(tmp_path, "run2", what="preprocessing").acquire()
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: in use by another run (preprocessing by pid {os.getpid()} on ")
    assert "\n" not in message
    with FolderClaim(tmp_path, "run3"):  # free again once the first ended
        (claim,) = (tmp_path / RUNS_DIR).glob("*.claim")
        assert claim.name.startswith(f"run3~{os.getpid()}~") and claim.stat().st_size == 0
    assert not (tmp_path / RUNS_DIR).exists()  # the last run out leaves no trace


def test_parts_of_the_same_split_share_a_folder_and_nothing_else_does(tmp_path):
    with FolderClaim(tmp_path, "p0", part=(0, 4)), FolderClaim(tmp_path, "p1", part=(1, 4)):
        for part in (None, (1, 4), (2, 3)):
            with pytest.raises(InputError, match=r"part \d/4"):
                FolderClaim(tmp_path, "other", part=part).acquire()


def test_a_run_removes_its_own_temporaries_but_not_another_live_runs(tmp_path):
    first = FolderClaim(tmp_path, "aaaa1111", part=(0, 2)).__enter__()
    theirs = _temporary(tmp_path, "aaaa1111", "case_000.npy")
    with FolderClaim(tmp_path, "bbbb2222", part=(1, 2)):
        mine = _temporary(tmp_path, "bbbb2222", "case_001.npy")
    assert theirs.exists() and not mine.exists()
    first.release()
    assert not theirs.exists()


def test_leftovers_of_a_killed_run_go_when_the_next_run_starts(tmp_path):
    untagged = tmp_path / ".tmp-deadbeef-case_009.npy"
    script = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from segforge.execution import FolderClaim
        from segforge.io.atomic import RUN_ID_ENV, temporary_name
        claim = FolderClaim(Path({str(tmp_path)!r}), "killed000001", part=(0, 2))
        claim.acquire()
        os.environ[RUN_ID_ENV] = "killed000001"
        temporary_name(Path({str(tmp_path)!r}) / "case_000.npy").write_bytes(b"half")
        print("ready", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        untagged.write_bytes(b"from a run before run ids")
        leftover = [p for p in tmp_path.iterdir() if temporary_run_id(p.name) == "killed000001"]
        assert len(leftover) == 1
        with FolderClaim(tmp_path, "alive0000002", part=(1, 2)):  # the child still lives: its files stay
            assert leftover[0].exists() and untagged.exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with FolderClaim(tmp_path, "next00000003"):
        assert not leftover[0].exists() and not untagged.exists()
        assert [p.name.split("~")[0] for p in (tmp_path / RUNS_DIR).glob("*.claim")] == ["next00000003"]


def test_temporaries_of_live_processes_and_live_runs_survive_every_sweep(tmp_path):
    from segforge.io.atomic import remove_stale_temporaries

    mine = tmp_path / f".tmp-{os.getpid()}-abcd1234-plans.json"  # written outside a run, by a live process
    mine.write_text("x")
    remote = tmp_path / ".tmp-999999-livrun000001.abcd1234-case.npy"  # a worker on another machine: pid unknown here
    with FolderClaim(tmp_path, "livrun000001", part=(0, 2)):
        remote.write_text("x")
        remove_stale_temporaries(tmp_path)
        with FolderClaim(tmp_path, "other0000002", part=(1, 2)):
            pass
        assert remote.exists()
    assert not remote.exists()  # its own run removed it at its end
    with FolderClaim(tmp_path, "alone0000003"):
        assert mine.exists()
