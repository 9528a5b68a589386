"""Several processes training one model: torchrun, SLURM and DistributedDataParallel.

A distributed run is ``N`` processes (ranks), one per GPU (or, with ``--device cpu``, one per
group of CPU cores, talking through gloo), each training on its share of every global batch:

* ``segforge_train ID FOLD --num-gpus N`` starts itself again under ``torchrun`` on this
  machine (:func:`torchrun_command`); started by ``torchrun`` (any number of nodes) or by
  ``srun`` with ``MASTER_ADDR``/``MASTER_PORT`` set, it joins the run the environment
  describes (:meth:`ProcessGroup.from_environment`);
* rank ``r`` takes :func:`batch_share` of the planned batch, so the global batch — and with it
  the optimisation — is the single-process one; gradients are averaged by DDP, the batch
  Dice's sums are added across ranks (:func:`sum_across_ranks`, which keeps the gradient);
* validation batch ``i`` is validated by rank ``i mod N`` and the confusion counts are added,
  so every rank computes the single-process pseudo-Dice;
* only rank 0 writes (checkpoints, ``log.csv``, pictures, the model folder's files) and decides
  when to stop; its decision is broadcast (:meth:`ProcessGroup.broadcast_object`), so no rank
  waits for a collective another has left.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from segforge.errors import InputError

__all__ = ["ProcessGroup", "batch_share", "sum_across_ranks", "torchrun_command", "under_launcher"]


def under_launcher() -> bool:
    """This process was started by torchrun (or another launcher that sets ``WORLD_SIZE``), or by SLURM
    with the rendezvous given (``MASTER_ADDR``), as one of several."""
    if "WORLD_SIZE" in os.environ:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "MASTER_ADDR" in os.environ


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def current(cls) -> "ProcessGroup":
        """The initialised process group (a single process when there is none)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("SLURM_NTASKS_PER_NODE", "1")))
        return cls(dist.get_rank(), dist.get_world_size(), local, local_world)

    @classmethod
    def from_environment(cls, device_type: str) -> "ProcessGroup":
        """Join the run the environment describes (torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, or
        SLURM's ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID`` with ``MASTER_ADDR``/``MASTER_PORT``):
        nccl between GPUs, gloo between CPU processes. A single process when the environment names none."""
        if not under_launcher():
            return cls()
        if "WORLD_SIZE" not in os.environ:  # srun without torchrun: translate SLURM's names
            os.environ.update(RANK=os.environ["SLURM_PROCID"], WORLD_SIZE=os.environ["SLURM_NTASKS"],
                              LOCAL_RANK=os.environ.get("SLURM_LOCALID", "0"))
            os.environ.setdefault("MASTER_PORT", "29500")
        if int(os.environ["WORLD_SIZE"]) <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            if device_type == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend=backend)
        return cls.current()

    def device(self, device: torch.device) -> torch.device:
        """A rank's GPU: ``cuda:LOCAL_RANK`` (one process per GPU); the CPU stays the CPU."""
        device = torch.device(device)
        if not self.enabled or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise InputError(f"process {self.rank} has local rank {self.local_rank} but this node has "
                             f"{torch.cuda.device_count()} GPU(s); start one process per GPU")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place (nothing to do in a single process)."""
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor

    def broadcast_object(self, value):
        """Rank 0's ``value`` on every rank (a small picklable object: a stop reason, a flag)."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def batch_share(batch_size: int, rank: int, world_size: int) -> int:
    """Rank ``rank``'s part of a global batch of ``batch_size`` (the first ranks take one more when it
    does not divide); every rank needs at least one sample."""
    if batch_size < world_size:
        raise InputError(f"the planned batch of {batch_size} cannot be shared by {world_size} processes "
                         f"(each needs at least one sample); use at most {batch_size} GPUs or plan a larger batch")
    return batch_size // world_size + (1 if rank < batch_size % world_size else 0)


class _SumAcrossRanks(torch.autograd.Function):
    """``y = sum_r x_r`` on every rank; the gradient of ``x`` is the sum of every rank's gradient of ``y``
    (each rank's loss uses the same ``y``), so after DDP divides by the number of ranks the
    gradient is that of one process holding the whole batch."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def sum_across_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the ranks of the initialised process group, differentiably (``x`` itself alone)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _SumAcrossRanks.apply(x)


def torchrun_command(module: str, argv: list[str], nprocs: int) -> list[str]:
    """The command that runs ``python -m module argv`` as ``nprocs`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nprocs)}",
            "-m", module, *argv]
