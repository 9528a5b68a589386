"""Executors by name: ``local`` (always there) and ``ray`` (with ``pip install 'segforge[ray]'``)."""

from __future__ import annotations

import difflib
from importlib import import_module

from segforge.errors import InputError
from segforge.execution.settings import ExecutionSettings

__all__ = ["EXECUTORS", "create_executor"]

# name -> (module, class); modules are imported on use, so `local` never imports Ray
EXECUTORS = {
    "local": ("segforge.execution.local", "LocalExecutor"),
    "ray": ("segforge.execution.ray_executor", "RayExecutor"),
}


def create_executor(settings: ExecutionSettings):
    """The executor ``settings.executor`` names; an unknown name answers with the closest known one."""
    if settings.executor not in EXECUTORS:
        close = difflib.get_close_matches(settings.executor, list(EXECUTORS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"unknown executor {settings.executor!r} (known: {', '.join(EXECUTORS)}){hint}")
    module, cls = EXECUTORS[settings.executor]
    return getattr(import_module(module), cls)(settings)
