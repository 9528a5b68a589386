"""Per-case task runner: one stage function over many cases, on this machine or a Ray cluster.

Fingerprint, preprocessing, prediction and evaluation each describe their per-case work as
a :class:`CaseStage` and call :func:`run_cases`; the executor (``local`` process pool, or
``ray``) and the shard (``--part I --num-parts N``) come from :class:`ExecutionSettings`.
This package sits beside ``segforge.io`` at the bottom of the import order: it knows
nothing of the stages that use it. Guide: docs/scaling.md.
"""

from segforge.execution.claims import FolderClaim, remove_temporaries
from segforge.execution.registry import EXECUTORS, create_executor
from segforge.execution.runner import new_run_id, run_cases
from segforge.execution.settings import ExecutionSettings, default_local_workers, select_part
from segforge.execution.tasks import CaseStage, CaseTask, RunSummary, TaskOutcome

__all__ = [
    "EXECUTORS",
    "CaseStage",
    "CaseTask",
    "ExecutionSettings",
    "FolderClaim",
    "RunSummary",
    "TaskOutcome",
    "create_executor",
    "default_local_workers",
    "new_run_id",
    "remove_temporaries",
    "run_cases",
    "select_part",
]
