"""Stage functions for the runner tests (module level: workers import them by name)."""

import os
import signal
import time
from pathlib import Path

from segforge.errors import InputError


def square(context, payload):
    """``payload``: ``{"x": int, "out": folder or None}``; writes ``x.txt`` when a folder is given."""
    x = payload["x"]
    if payload.get("bad"):
        raise InputError("not a readable case", f"case_{x}.nii.gz")
    if payload.get("out"):
        Path(payload["out"], f"{x}.txt").write_text(str(x * x))
    return {"square": x * x, "pid": os.getpid(), "context": context}


def kill_own_worker_once(context, payload):
    """The first try writes its pid to ``marker`` and waits to be killed (the test SIGKILLs it);
    with ``self_kill`` it kills itself. Later tries (the marker exists) return at once."""
    marker = Path(payload["marker"])
    if payload["x"] == payload["victim"] and not marker.exists():
        marker.write_text(str(os.getpid()))
        if payload.get("self_kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(120)
    return square(context, payload)


def load_offset(setup_arg, device):
    """A set-up: what a predictor would load once per worker."""
    return {"offset": setup_arg, "device": device, "pid": os.getpid()}


def add_offset(context, payload):
    return {"value": payload["x"] + context["offset"], "setup_pid": context["pid"], "pid": os.getpid()}


def broken_setup(setup_arg, device):
    raise InputError("cannot load checkpoint", "fold_0/checkpoint_final.pt")


def die_on_victim(context, payload):
    """Kills its worker every time it gets the victim case."""
    if payload.get("x") == payload.get("victim"):
        os.kill(os.getpid(), signal.SIGKILL)
    return square(context, payload)


def device_of(context, payload):
    """Which device the worker's set-up was given (``load_offset``'s context), and by which process."""
    return {"device": context["device"], "setup_pid": context["pid"], "pid": os.getpid()}


def numbered_tasks(n, **extra):
    """``case_0 .. case_{n-1}`` with payload ``{"x": i, **extra}``."""
    from segforge.execution import CaseTask

    return [CaseTask(f"case_{i}", {"x": i, **extra}) for i in range(n)]


class KillFromOutside:
    """A thread that SIGKILLs the process whose pid :func:`kill_own_worker_once`'s victim writes to ``marker``
    (waiting up to ``seconds``); ``with KillFromOutside(marker): run_cases(...)``."""

    def __init__(self, marker: Path, seconds: float = 60.0):
        import threading

        self.marker, self.polls = Path(marker), int(seconds / 0.05)
        self.thread = threading.Thread(target=self._kill)

    def _kill(self):
        for _ in range(self.polls):
            if self.marker.exists() and self.marker.read_text():
                os.kill(int(self.marker.read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join()
