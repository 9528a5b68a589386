"""The ``local`` executor: worker processes on this machine (one worker: this process).

Each worker process runs the stage's set-up once, then takes cases one after another over
a pipe. The driver knows which cases each worker holds, so when a worker dies (SIGKILL,
out-of-memory killer, a crash in native code) exactly those cases are given to a fresh
worker, and the run neither hangs nor stops (``multiprocessing.Pool`` waits forever for a
task whose worker died).

Workers are forked from a fork server that imported the stage's module once (spawned where
there is no fork server), never from this process, whose threads do not survive a fork.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import wait as wait_ready

from segforge.execution.pool import Event, drive
from segforge.execution.settings import ExecutionSettings, default_local_workers
from segforge.execution.tasks import CaseStage, CaseTask
from segforge.execution.worker import RUN_ID_ENV, call_task, start_worker

__all__ = ["LocalExecutor"]


class LocalExecutor:
    name = "local"

    def __init__(self, settings: ExecutionSettings):
        self.settings = settings

    def describe(self, stage: CaseStage) -> str:
        workers, threads, _ = self._layout(stage)
        if workers == 1 and not (stage.uses_gpu and self.settings.num_gpus):
            return "local executor: this process"
        return f"local executor: {workers} processes x {threads} thread(s)"

    def _layout(self, stage: CaseStage) -> tuple[int, int, list[str | None]]:
        if stage.uses_gpu and self.settings.num_gpus:
            devices = [f"cuda:{i}" for i in range(self.settings.num_gpus)]
            return len(devices), self.settings.threads_per_worker or max(
                1, (os.cpu_count() or 1) // len(devices)), devices
        workers = self.settings.workers or default_local_workers()
        threads = self.settings.threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        return workers, threads, [None]

    def run(self, stage: CaseStage, tasks: list[CaseTask], run_id: str, on_outcome) -> None:
        workers, threads, devices = self._layout(stage)
        workers = min(workers, max(1, len(tasks)))
        if workers == 1 and not (stage.uses_gpu and self.settings.num_gpus):
            backend = _InProcess(stage, threads if self.settings.threads_per_worker else None, run_id)
        else:
            backend = _Processes(stage, threads, run_id, devices)
        drive(backend, tasks, workers, max(1, stage.cases_per_worker), self.settings.max_attempts, on_outcome)


class _InProcess:
    """One worker: this process, with ``cases_per_worker`` threads. Nothing to retry here."""

    def __init__(self, stage: CaseStage, threads: int | None, run_id: str):
        self.stage, self.threads, self.run_id = stage, threads, run_id
        self.pool = ThreadPoolExecutor(max(1, stage.cases_per_worker), thread_name_prefix="segforge-case")
        self.futures = {}
        self.context = None
        self.error = None
        self.previous_run_id = os.environ.get(RUN_ID_ENV)

    def start(self, index: int):
        self.context, error = start_worker(self.stage, self.threads, self.run_id, None)
        self.error = error
        return "this-process"

    def submit(self, worker, task: CaseTask) -> None:
        if self.error is not None:
            self.futures[self.pool.submit(lambda: ("setup_error", self.error))] = task.name
            return
        self.futures[self.pool.submit(call_task, self.stage, self.context, task.name, task.payload)] = task.name

    def wait(self, timeout: float) -> list[Event]:
        from concurrent.futures import FIRST_COMPLETED, wait

        finished, _ = wait(list(self.futures), timeout=timeout, return_when=FIRST_COMPLETED)
        events = []
        for future in finished:
            name = self.futures.pop(future)
            kind, value = future.result()
            events.append(Event("this-process", name, kind, value))
        return events

    def stop(self, worker) -> None:
        pass

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.context = None
        if self.previous_run_id is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = self.previous_run_id


class _Worker:
    def __init__(self, process, connection):
        self.process, self.connection = process, connection


class _Processes:
    def __init__(self, stage: CaseStage, threads: int, run_id: str, devices: list[str | None]):
        self.stage, self.threads, self.run_id, self.devices = stage, threads, run_id, devices
        self.context = _context(stage)
        self.workers: list[_Worker] = []

    def start(self, index: int) -> _Worker:
        parent, child = self.context.Pipe(duplex=True)
        device = self.devices[index % len(self.devices)]
        process = self.context.Process(target=_worker_main, args=(child, self.stage, self.threads, self.run_id, device),
                                       daemon=True, name=f"segforge-{self.stage.name}-{index}")
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self.workers.append(worker)
        return worker

    def submit(self, worker: _Worker, task: CaseTask) -> None:
        try:
            worker.connection.send((task.name, task.payload))
        except (BrokenPipeError, OSError):
            pass  # the worker is gone; wait() reports it as dead

    def wait(self, timeout: float) -> list[Event]:
        by_handle = {}
        for w in self.workers:
            by_handle[w.connection] = w
            by_handle[w.process.sentinel] = w
        ready = wait_ready(list(by_handle), timeout=timeout)
        events, dead = [], []
        for handle in ready:
            worker = by_handle[handle]
            if handle is worker.connection:
                events += self._receive(worker, dead)
            elif worker not in dead:
                dead.append(worker)
        for worker in dead:
            events += self._receive(worker, [])  # answers sent before it died still count
            events.append(Event(worker, None, "died", _death_reason(worker.process)))
            self.workers.remove(worker)
        return events

    def _receive(self, worker: _Worker, dead: list) -> list[Event]:
        events = []
        try:
            while worker.connection.poll():
                kind, name, value = worker.connection.recv()
                events.append(Event(worker, name, kind, value))
        except (EOFError, OSError):
            if worker not in dead:
                dead.append(worker)
        return events

    def stop(self, worker: _Worker) -> None:
        try:
            worker.connection.send(None)
        except (BrokenPipeError, OSError):
            pass
        worker.connection.close()
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        if worker in self.workers:
            self.workers.remove(worker)

    def close(self) -> None:
        for worker in list(self.workers):
            self.stop(worker)


def _death_reason(process) -> str:
    process.join(timeout=5)
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed; out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker process ended by {name}{hint}"
    return f"worker process exited with code {code}"


def _worker_main(connection, stage: CaseStage, threads: int, run_id: str, device: str | None) -> None:
    """A worker process: set up, then answer ``(name, payload)`` messages until ``None``."""
    from segforge.workers import die_with_parent

    die_with_parent()  # a kill -9 of the run leaves no worker behind (the fork server's children die with it)
    context, error = start_worker(stage, threads, run_id, device)
    lock = threading.Lock()

    def answer(name: str, kind: str, value) -> None:
        with lock:
            connection.send((kind, name, value))

    def one(name: str, payload) -> None:
        kind, value = ("setup_error", error) if error is not None else call_task(stage, context, name, payload)
        answer(name, kind, value)

    with ThreadPoolExecutor(max(1, stage.cases_per_worker), thread_name_prefix="segforge-case") as pool:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            pool.submit(one, *message)


def _context(stage: CaseStage):
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__, stage.run.__module__])
        return ctx
    return mp.get_context("spawn")
