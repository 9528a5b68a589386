"""The options every per-case command shares: executor, Ray address, part of a SLURM array."""

from __future__ import annotations

import argparse

__all__ = ["add_execution_arguments", "execution_settings"]


def add_execution_arguments(parser: argparse.ArgumentParser, parts: bool = True, gpus: bool = False) -> None:
    group = parser.add_argument_group("execution (docs/scaling.md)")
    group.add_argument("--executor", default="local", metavar="NAME",
                       help="local (worker processes on this machine, the default) or ray (a Ray cluster; "
                       "pip install 'segforge[ray]')")
    group.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="with --executor ray: the cluster to join (auto, or HOST:PORT); default: the cluster "
                       "started on this machine with `ray start`, else a new local one")
    if parts:
        group.add_argument("--part", type=int, default=None, metavar="I",
                           help="do only part I (0..N-1) of the cases, e.g. $SLURM_ARRAY_TASK_ID")
        group.add_argument("--num-parts", type=int, default=None, metavar="N", help="the number of parts")
    if gpus:
        group.add_argument("--num-gpus", type=int, default=0, metavar="G",
                           help="model replicas on G GPUs (local: cuda:0..G-1 of this node; ray: one actor per GPU)")


def execution_settings(args: argparse.Namespace, workers: int | None):
    """The :class:`~segforge.execution.ExecutionSettings` the parsed options ask for."""
    from segforge.execution import ExecutionSettings

    return ExecutionSettings(
        executor=args.executor,
        workers=workers,
        ray_address=args.ray_address,
        part=getattr(args, "part", None),
        num_parts=getattr(args, "num_parts", None),
        num_gpus=getattr(args, "num_gpus", 0),
    )
