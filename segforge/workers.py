"""Worker processes die with the process that started them.

A ``kill -9`` of a training run, a preprocessing run or a prediction gives its children no
chance to be told; without this they keep running (and holding memory) as orphans. A
worker calls :func:`die_with_parent` first thing: on Linux the kernel then sends it SIGKILL
when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread checks every
second whether the parent is still there. Either way, a parent that died before the call
is noticed at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process end when ``parent_pid`` (default: the current parent) ends. No-op in the parent itself."""
    parent_pid = os.getppid() if parent_pid is None else int(parent_pid)
    if parent_pid == os.getpid():
        return
    if not (sys.platform.startswith("linux") and _set_death_signal()):
        threading.Thread(target=_watch, args=(parent_pid,), name="segforge-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _set_death_signal() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)
