"""How a run is executed: which executor, how many workers, which shard of the cases."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from segforge.errors import InputError

__all__ = ["ExecutionSettings", "select_part", "default_local_workers"]


def default_local_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class ExecutionSettings:
    """``executor``: a name from :data:`segforge.execution.EXECUTORS` (``local``, ``ray``).

    ``workers``: parallel workers (local: processes, 1 runs in this process; ray: actors;
    None: local -> CPU cores up to 8, ray -> the cluster's CPUs, or its GPUs for a GPU stage).
    ``threads_per_worker``: None -> local: cores / workers, ray: 1 (the CPUs each actor asks for).
    ``part``/``num_parts``: do only the cases ``sorted(names)[part::num_parts]`` (SLURM arrays).
    ``num_gpus``: GPUs for a GPU stage (local: one worker per GPU on this node; ray: one actor per GPU).
    ``max_attempts``: tries of a case whose worker died (killed, out of memory) before it is failed.
    """

    executor: str = "local"
    workers: int | None = None
    threads_per_worker: int | None = None
    ray_address: str | None = None
    part: int | None = None
    num_parts: int | None = None
    num_gpus: int = 0
    max_attempts: int = 3

    def __post_init__(self):
        if (self.part is None) != (self.num_parts is None):
            raise InputError("--part and --num-parts go together (e.g. --part 0 --num-parts 4)")
        if self.num_parts is not None:
            if self.num_parts < 1:
                raise InputError(f"--num-parts must be at least 1, got {self.num_parts}")
            if not 0 <= self.part < self.num_parts:
                raise InputError(f"--part must be in 0..{self.num_parts - 1} (parts count from 0), got {self.part}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"the number of workers (-np) must be at least 1, got {self.workers}")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise InputError(f"threads per worker must be at least 1, got {self.threads_per_worker}")
        if self.num_gpus < 0:
            raise InputError(f"--num-gpus must be >= 0, got {self.num_gpus}")
        if self.max_attempts < 1:
            raise InputError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.ray_address is not None and self.executor != "ray":
            raise InputError("--ray-address needs --executor ray")

    @property
    def shard(self) -> tuple[int, int] | None:
        return None if self.part is None else (self.part, self.num_parts)

    def with_workers(self, workers: int | None) -> "ExecutionSettings":
        return replace(self, workers=workers)


def select_part(names: list[str], part: int | None, num_parts: int | None) -> list[str]:
    """The names of shard ``part`` of ``num_parts``: every ``num_parts``-th of the sorted names.

    The shards of ``0 .. num_parts - 1`` cover every name exactly once, and each shard is
    the same in every process that sees the same names (as nnU-Net's ``-part_id``).
    """
    if part is None:
        return list(names)
    return sorted(names)[part::num_parts]
