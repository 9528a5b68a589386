"""What the runner runs: a per-case stage, its tasks, and what became of each task.

A :class:`CaseStage` names module-level functions (they travel to worker processes and Ray
workers by name, never as code): ``run(context, payload) -> result`` does one case, and the
optional ``setup(setup_arg, device) -> context`` runs once per worker (a predictor loads its
model there). A :class:`CaseTask` is one case: a unique name and the plain data ``run`` needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["CaseStage", "CaseTask", "TaskOutcome", "RunSummary", "STATUSES"]

STATUSES = ("done", "skipped", "failed")


@dataclass(frozen=True)
class CaseStage:
    """A per-case stage. ``cases_per_worker``: cases in flight in one worker (threads), so a
    worker can read case ``i + 1`` while its network works on case ``i``."""

    name: str
    run: Callable[[Any, Any], Any]
    setup: Callable[[Any, str | None], Any] | None = None
    setup_arg: Any = None
    cases_per_worker: int = 1
    uses_gpu: bool = False


@dataclass(frozen=True)
class CaseTask:
    name: str
    payload: Any = None


@dataclass
class TaskOutcome:
    """``status``: ``done``, ``skipped`` (complete and valid output found) or ``failed`` (``reason``)."""

    name: str
    status: str
    reason: str = ""
    result: Any = None
    attempts: int = 0


@dataclass
class RunSummary:
    """Every task's outcome, in task order, and the run's one-line summary."""

    stage: str
    outcomes: list[TaskOutcome] = field(default_factory=list)
    part: tuple[int, int] | None = None
    seconds: float = 0.0

    def names(self, status: str) -> list[str]:
        return [o.name for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[str]:
        return self.names("done")

    @property
    def skipped(self) -> list[str]:
        return self.names("skipped")

    @property
    def failed(self) -> list[TaskOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def results(self) -> dict[str, Any]:
        """``{case: result}`` of the tasks done in this run."""
        return {o.name: o.result for o in self.outcomes if o.status == "done"}

    def line(self) -> str:
        """``preprocessing 3d_fullres (part 2/8): 10 done, 3 skipped, 1 failed (case_007) in 12.3 s``."""
        where = f" (part {self.part[0]}/{self.part[1]})" if self.part else ""
        failed = self.failed
        names = ""
        if failed:
            shown = ", ".join(o.name for o in failed[:10])
            names = f" ({shown}{', ...' if len(failed) > 10 else ''})"
        return (f"{self.stage}{where}: {len(self.done)} done, {len(self.skipped)} skipped, "
                f"{len(failed)} failed{names} in {self.seconds:.1f} s")

    def failure_lines(self) -> list[str]:
        """One line per failed case: ``case_007: <reason>``."""
        return [f"{o.name}: {o.reason}" for o in self.failed]
