"""Run a command and measure its wall time and the peak resident memory of its process tree.

Peak memory is the largest sum of RSS over the command and all its descendants, sampled
every 0.1 s from /proc (Linux), so worker pools are counted together.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measured", "run_measured"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measured:
    seconds: float
    peak_rss_bytes: int
    returncode: int
    output_tail: str


def run_measured(cmd: list[str], env: dict | None = None, log_path: Path | None = None, cwd=None) -> Measured:
    peak = 0
    start = time.perf_counter()
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if log_path:
        log.close()
        tail = Path(log_path).read_text(errors="replace")[-3000:]
    else:
        tail = ""
    return Measured(seconds, peak, code, tail)


def _children(pid: int) -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tree.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError):
            continue
    return tree


def _tree_rss(root: int) -> int:
    tree = _children(root)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except OSError:
            continue
    return total
