"""The ``ray`` executor: one Ray actor per worker, on a running cluster or a local one.

Each actor runs the stage's set-up once (a predictor loads its model once per actor) and
then takes cases; an actor asks Ray for ``threads`` CPUs (and one GPU for a GPU stage), so
Ray places actors across the cluster's nodes. When an actor dies (its process killed, its
node lost) the cases it held go to a fresh actor, up to ``max_attempts`` tries each.

Workers read and write the same paths as this process: on a cluster, the data must sit on
a file system every node mounts at the same path, and segforge must be installed on every
node (docs/scaling.md).
"""

from __future__ import annotations

import os

from segforge.errors import InputError
from segforge.execution.pool import Event, drive
from segforge.execution.settings import ExecutionSettings
from segforge.execution.tasks import CaseStage, CaseTask
from segforge.execution.worker import call_task, start_worker

__all__ = ["RayExecutor", "connect_ray"]

INSTALL_HINT = "the ray executor needs Ray: pip install 'segforge[ray]'"


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray


def connect_ray(address: str | None = None):
    """Join the cluster at ``address`` (``auto``: the one started with ``ray start`` here), or,
    without an address, a cluster already running on this machine or else a new local one.
    Reuses the connection when this process already has one."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    kwargs = {"address": address, "logging_level": "WARNING", "configure_logging": True}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        kwargs["include_dashboard"] = False
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, settings: ExecutionSettings):
        self.settings = settings

    def _layout(self, stage: CaseStage, ray) -> tuple[int, int, float]:
        resources = ray.cluster_resources()
        threads = self.settings.threads_per_worker or 1
        if stage.uses_gpu and (self.settings.num_gpus or (resources.get("GPU", 0) and not self.settings.workers)):
            gpus = self.settings.num_gpus or int(resources.get("GPU", 0))
            # each GPU actor reads and exports in its own threads: it takes its share of the CPUs
            share = int(resources.get("CPU", 2) // max(1, resources.get("GPU", 1)))
            return gpus, self.settings.threads_per_worker or max(1, share), 1.0
        workers = self.settings.workers or max(1, int(resources.get("CPU", 1) // threads))
        return workers, threads, 0.0

    def describe(self, stage: CaseStage) -> str:
        ray = connect_ray(self.settings.ray_address)
        workers, threads, gpus = self._layout(stage, ray)
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        per = f"{threads} CPU" + (" + 1 GPU" if gpus else "")
        return f"ray executor: {workers} actor(s) x {per} on {nodes} node(s)"

    def run(self, stage: CaseStage, tasks: list[CaseTask], run_id: str, on_outcome) -> None:
        ray = connect_ray(self.settings.ray_address)
        workers, threads, gpus = self._layout(stage, ray)
        backend = _RayActors(ray, stage, threads, gpus, run_id)
        drive(backend, tasks, min(workers, max(1, len(tasks))), max(1, stage.cases_per_worker),
              self.settings.max_attempts, on_outcome)


class _CaseWorker:
    """The actor (wrapped with ``ray.remote`` on first use)."""

    def __init__(self, stage: CaseStage, threads: int, run_id: str, device: str | None):
        self.stage = stage
        self.context, self.error = start_worker(stage, threads, run_id, device)

    def pid(self) -> int:
        return os.getpid()

    def run(self, name: str, payload):
        if self.error is not None:
            return "setup_error", self.error
        return call_task(self.stage, self.context, name, payload)


_ACTOR = None


def _actor_class(ray):
    global _ACTOR
    if _ACTOR is None:
        _ACTOR = ray.remote(_CaseWorker)
    return _ACTOR


class _RayActors:
    def __init__(self, ray, stage: CaseStage, threads: int, gpus: float, run_id: str):
        self.ray, self.stage, self.threads, self.gpus, self.run_id = ray, stage, threads, gpus, run_id
        self.pending = {}  # ObjectRef -> (actor, case name)
        self.dead = set()

    def start(self, index: int):
        options = {"num_cpus": self.threads, "max_restarts": 0, "max_concurrency": max(1, self.stage.cases_per_worker)}
        if self.gpus:
            options["num_gpus"] = self.gpus
        device = "cuda" if self.gpus else None  # Ray shows each actor only its own GPU
        return _actor_class(self.ray).options(**options).remote(self.stage, self.threads, self.run_id, device)

    def submit(self, actor, task: CaseTask) -> None:
        self.pending[actor.run.remote(task.name, task.payload)] = (actor, task.name)

    def wait(self, timeout: float) -> list[Event]:
        if not self.pending:
            return []
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        if ready:  # take everything that is ready by now
            ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        events = []
        for ref in ready:
            actor, name = self.pending.pop(ref)
            try:
                kind, value = self.ray.get(ref)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                    self.ray.exceptions.ObjectLostError) as exc:
                events.append(Event(actor, name, "died", _first_line(exc)))
                continue
            except self.ray.exceptions.RayError as exc:
                kind, value = "failed", _first_line(exc)
            events.append(Event(actor, name, kind, value))
        return events

    def stop(self, actor) -> None:
        for ref, (held_by, _) in list(self.pending.items()):
            if held_by is actor:
                del self.pending[ref]
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def close(self) -> None:
        self.pending.clear()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
