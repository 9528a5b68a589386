"""kill -9 of a run leaves no worker process behind (issue 18, item 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness import ROOT

LOADER_SCRIPT = r'''
import os, sys, time
from helpers.batches import ConstantBatches
from segforge.data.loader import make_loader

loader = make_loader(ConstantBatches(), None, num_workers=2)
next(loader)
children = [p.pid for p in loader.augmenter._processes]
print("CHILDREN", *children, flush=True)
time.sleep(600)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its (dead) parent counts as gone
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_loader_workers_die_when_training_is_killed():
    process = subprocess.Popen([sys.executable, "-c", LOADER_SCRIPT], stdout=subprocess.PIPE, encoding="utf-8",
                               errors="replace",
                               env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])})
    try:
        line = process.stdout.readline()
        children = [int(p) for p in line.split()[1:]]
        assert len(children) == 2 and all(_alive(p) for p in children), line
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [p for p in children if _alive(p)]
        assert not orphans, f"loader workers {orphans} outlived their killed parent"
    finally:
        process.kill()
        for pid in locals().get("children", []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
