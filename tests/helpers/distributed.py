"""Run a function in several gloo processes on the CPU, as torchrun would, and collect what they return."""

from __future__ import annotations

import datetime
import multiprocessing
import os
import socket
import traceback

__all__ = ["run_ranks"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank, world_size, port, env, fn, args, results):
    os.environ.update(env)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size), OMP_NUM_THREADS="1")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=90))
        results.put((rank, "ok", fn(rank, *args)))
    except BaseException:  # noqa: BLE001 - reported to the test
        results.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(fn, world_size: int, *args, timeout: float = 300) -> list:
    """``[fn(0, *args), fn(1, *args), ...]``, each in its own spawned process of a gloo process group.

    ``fn`` must be importable (a module-level function); the SEGFORGE_* folders of the test go along."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    env = {k: v for k, v in os.environ.items() if k.startswith("SEGFORGE_")}
    port = _free_port()
    procs = [ctx.Process(target=_child, args=(r, world_size, port, env, fn, args, results)) for r in range(world_size)]
    for p in procs:
        p.start()
    out = {}
    try:
        for _ in procs:
            rank, status, value = results.get(timeout=timeout)
            if status == "error":
                raise AssertionError(f"rank {rank} failed:\n{value}")
            out[rank] = value
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return [out[r] for r in range(world_size)]
