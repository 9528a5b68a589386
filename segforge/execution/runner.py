"""``run_cases``: one per-case stage over many cases, on any executor, resumable and fault tolerant.

1. keep this run's shard (``--part I --num-parts N``) of the tasks;
2. skip the cases whose output is complete and valid (``is_done``, checked here);
3. claim the output folder (refuse a run that would collide, share it with other parts);
4. run the rest on the executor: a case that fails is reported and the others go on; a
   case whose worker died is tried again on a fresh worker;
5. one summary: done / skipped / failed, with the failed cases named.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import nullcontext
from typing import Callable

from segforge.errors import InputError
from segforge.execution.claims import FolderClaim
from segforge.execution.registry import create_executor
from segforge.execution.settings import ExecutionSettings, select_part
from segforge.execution.tasks import CaseStage, CaseTask, RunSummary, TaskOutcome

__all__ = ["run_cases", "new_run_id"]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def run_cases(
    stage: CaseStage,
    tasks: list[CaseTask],
    settings: ExecutionSettings | None = None,
    is_done: Callable[[CaseTask], bool] | None = None,
    output_folder: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    on_outcome: Callable[[TaskOutcome], None] | None = None,
) -> RunSummary:
    """Run ``stage`` over ``tasks``; returns the :class:`RunSummary` (outcomes in task order).

    ``is_done(task)``: the task's output is complete and valid (the case is skipped).
    ``output_folder``: the folder the tasks write into, claimed for the run
    (:class:`~segforge.execution.claims.FolderClaim`). ``log``: gets the executor line and the
    summary line (None: silent); ``on_outcome`` gets each case's outcome as it comes (skips first).
    """
    settings = settings or ExecutionSettings()
    start = time.perf_counter()
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{stage.name}: case names must be unique, repeated: {', '.join(duplicated[:5])}")
    mine = set(select_part(names, settings.part, settings.num_parts))
    tasks = [t for t in tasks if t.name in mine]
    summary = RunSummary(stage.name, part=settings.shard)
    outcomes: dict[str, TaskOutcome] = {}
    run_id = new_run_id()
    claim = FolderClaim(output_folder, run_id, settings.shard, stage.name) if output_folder else nullcontext()
    with claim:
        todo = []
        for task in tasks:
            if is_done is not None and is_done(task):
                outcomes[task.name] = TaskOutcome(task.name, "skipped", "complete output found")
                if on_outcome is not None:
                    on_outcome(outcomes[task.name])
            else:
                todo.append(task)
        if todo:
            executor = create_executor(settings)
            if log is not None:
                log(f"{stage.name}: {len(todo)} case(s) to do, {len(tasks) - len(todo)} already done; "
                    f"{executor.describe(stage)}")
            bar = _progress(len(todo), stage.name, progress)

            def record(outcome: TaskOutcome) -> None:
                outcomes[outcome.name] = outcome
                bar.update(1)
                if outcome.status == "failed" and log is not None:
                    log(f"{stage.name}: {outcome.name}: FAILED: {outcome.reason}")
                if on_outcome is not None:
                    on_outcome(outcome)

            try:
                executor.run(stage, todo, run_id, record)
            finally:
                bar.close()
    summary.outcomes = [outcomes[t.name] for t in tasks]
    summary.seconds = time.perf_counter() - start
    if log is not None:
        log(summary.line())
    return summary


def _progress(total: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="case", disable=not enabled)
