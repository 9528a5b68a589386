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
