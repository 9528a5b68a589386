"""The driver loop every executor shares: keep each worker busy, collect outcomes, and
give a case whose worker died another worker (up to ``max_attempts`` tries).

An executor supplies a *backend* with four operations:

* ``start(index) -> worker``: a new worker (its set-up runs inside it);
* ``submit(worker, task)``: send one case;
* ``wait(timeout) -> list[Event]``: what happened since (results, failures, deaths);
* ``stop(worker)`` and ``close()``.

An :class:`Event` is ``(worker, task name, kind, value)`` with kind ``ok`` (value: the
result), ``failed`` (value: the reason; the case is bad, not the worker), ``died`` (value: why;
the worker is gone, every case it held is tried again elsewhere) or ``setup_error`` (the
stage cannot start at all: the run stops with that message).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from segforge.errors import InputError
from segforge.execution.tasks import CaseTask, TaskOutcome

__all__ = ["Event", "drive"]


@dataclass
class Event:
    worker: Any
    task: str | None
    kind: str
    value: Any = None


def drive(backend, tasks: list[CaseTask], workers: int, per_worker: int, max_attempts: int,
          on_outcome: Callable[[TaskOutcome], None]) -> None:
    """Run ``tasks`` on at most ``workers`` workers of ``backend``, ``per_worker`` cases each at a time."""
    by_name = {t.name: t for t in tasks}
    queue: deque[str] = deque(t.name for t in tasks)
    attempts = {t.name: 0 for t in tasks}
    load: dict[Any, set[str]] = {}  # live worker -> the cases it holds
    started = 0
    try:
        while queue or any(load.values()):
            # fill the free slots; start workers up to the limit (and to replace dead ones)
            while queue:
                free = [w for w, held in load.items() if len(held) < per_worker]
                worker = min(free, key=lambda w: len(load[w]), default=None)
                if (worker is None or load[worker]) and len(load) < workers:
                    worker = backend.start(started)  # spread cases over workers before doubling up
                    started += 1
                    load[worker] = set()
                if worker is None:
                    break
                name = queue.popleft()
                attempts[name] += 1
                load[worker].add(name)
                backend.submit(worker, by_name[name])
            for event in backend.wait(timeout=1.0):
                if event.kind == "setup_error":
                    raise InputError(f"a worker could not start: {event.value}")
                held = load.get(event.worker)
                if event.kind == "died":
                    if held is None:
                        continue
                    del load[event.worker]
                    backend.stop(event.worker)
                    for name in sorted(held):
                        if attempts[name] < max_attempts:
                            queue.appendleft(name)
                        else:
                            on_outcome(TaskOutcome(name, "failed", f"its worker died {attempts[name]} times "
                                                   f"(last: {event.value})", attempts=attempts[name]))
                    continue
                if held is None or event.task not in held:
                    continue  # a late answer from a worker already given up
                held.discard(event.task)
                if event.kind == "ok":
                    on_outcome(TaskOutcome(event.task, "done", result=event.value, attempts=attempts[event.task]))
                else:
                    on_outcome(TaskOutcome(event.task, "failed", str(event.value), attempts=attempts[event.task]))
    finally:
        for worker in list(load):
            backend.stop(worker)
        backend.close()
