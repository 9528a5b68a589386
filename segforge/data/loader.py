"""Batch streams for training and validation, optionally in background worker processes.

``make_loader`` wraps a batch source in batchgenerators' ``MultiThreadedAugmenter`` (it
starts worker *processes*; batches come back in a fixed round-robin order, so a seeded
stream is reproducible) or, with ``num_workers=0``, runs everything in this process.
Every item is ``{"data": (B, C, *patch) float32 tensor, "target": (B, 1, *patch) int16
tensor, "keys": [case, ...]}`` (and ``"soft": (B, K, *patch)`` float16 class probabilities when the
sampler adds them: pseudo-labelled cases with saved probabilities).

Training batches draw from the process-global ``np.random`` (seeded per worker); validation
batch ``i`` is a pure function of ``(seed, i mod num_batches)``, so every epoch validates
on the same patches however many workers there are.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

from segforge.data.patch_sampler import PatchSampler
from segforge.workers import die_with_parent

__all__ = [
    "RandomBatches",
    "TrainingBatches",
    "ValidationBatches",
    "default_num_workers",
    "worker_seeds",
    "BatchLoader",
    "make_loader",
    "close_loader",
]


class RandomBatches:
    """Endless batches drawn from the process-global ``np.random`` (seeded per worker; with no workers its
    state is in the checkpoint's random states): batchgenerators' data-loader protocol around ``sample_batch``."""

    thread_id = 0

    def set_thread_id(self, thread_id: int) -> None:
        self.thread_id = thread_id

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return self.sample_batch(np.random)

    def sample_batch(self, rng) -> dict:
        raise NotImplementedError


class TrainingBatches(RandomBatches):
    """Endless random batches from a :class:`PatchSampler`."""

    def __init__(self, sampler: PatchSampler):
        self.sampler = sampler

    def sample_batch(self, rng) -> dict:
        return self.sampler.sample_batch(rng)


class ValidationBatches:
    """The same ``num_batches`` batches over and over; batch ``i`` drawn with ``RandomState(seed + i)``.

    In worker ``k`` of ``num_workers`` it yields batches ``k, k + num_workers, ...`` (mod
    ``num_batches``), which the round-robin collection puts back in order ``0, 1, 2, ...``.
    Process ``rank`` of ``world_size`` (a distributed run) takes batches ``rank, rank + world_size,
    ...`` of the same list the same way, so together the processes validate every batch once.
    """

    def __init__(self, sampler: PatchSampler, num_batches: int, seed: int, num_workers: int = 1, rank: int = 0,
                 world_size: int = 1):
        self.sampler = sampler
        self.num_batches = max(1, int(num_batches))
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), max(1, int(world_size))
        self.workers = max(1, int(num_workers))
        self.step = self.workers * self.world_size
        self.next_index = self.rank

    def set_thread_id(self, thread_id: int) -> None:
        self.next_index = self.rank + thread_id * self.world_size

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        i = self.next_index % self.num_batches
        self.next_index += self.step
        return self.sampler.sample_batch(np.random.RandomState((self.seed + i) % 2**32))


def default_num_workers(processes: int = 1) -> int:
    """One fewer than the CPU count (the main process feeds the network), between 1 and 12; with
    ``processes`` training processes on the machine, each gets its share."""
    processes = max(1, int(processes))
    return int(min(12, max(1, ((os.cpu_count() or 2) - processes) // processes)))


def worker_seeds(seed: int, start_epoch: int, num_workers: int, stream: int = 0, rank: int = 0) -> list[int]:
    """Distinct worker seeds for a run starting at ``start_epoch`` (a resumed run gets fresh streams);
    process ``rank`` of a distributed run gets its own (rank 0's are a single process's)."""
    ss = np.random.SeedSequence([int(seed), int(start_epoch), int(stream)] + ([int(rank)] if rank else []))
    return [int(s) for s in ss.generate_state(max(1, num_workers))]


class BatchLoader:
    """Iterates transformed batches as tensors; ``close()`` stops the worker processes.

    Workers send numpy arrays (plain bytes through the queue); the tensors are made here,
    in page-locked memory when ``pin_memory`` (for ``non_blocking`` copies to the GPU).
    """

    def __init__(self, augmenter, pin_memory: bool = False):
        self.augmenter = augmenter
        self.pin_memory = pin_memory

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = next(self.augmenter)
        for key in ("data", "target", "soft"):
            if key not in batch:
                continue
            t = torch.from_numpy(batch[key])
            batch[key] = t.pin_memory() if self.pin_memory else t
        return batch

    def start(self) -> None:
        """Start the worker processes now, in the calling thread (else the first ``next`` starts them, in
        whichever thread asks: forking from a background thread while the main one runs can leave a child
        holding a lock no thread will release)."""
        if isinstance(self.augmenter, MultiThreadedAugmenter) and not self.augmenter.was_initialized:
            self.augmenter._start()

    def close(self) -> None:
        augmenter = self.augmenter
        if isinstance(augmenter, MultiThreadedAugmenter):
            # a start that failed part-way (a fork refused) leaves processes that never ran: batchgenerators
            # would fail joining them, hiding the error that stopped the start
            augmenter._processes = [p for p in augmenter._processes if p.pid is not None]
            augmenter._finish()


class _WorkerBatches:
    """A batch source as seen inside a worker process: the worker first ties its life to this
    process (a ``kill -9`` of training must not leave workers behind), then draws batches."""

    def __init__(self, batches):
        self.batches = batches
        self.parent_pid = os.getpid()

    def set_thread_id(self, thread_id: int) -> None:  # batchgenerators calls this first thing in a worker
        die_with_parent(self.parent_pid)
        # batchgenerators seeded np.random with this worker's seed; some of its transforms draw from Python's
        # random (the noise's std), which a forked worker would otherwise share with every other worker
        random.seed(int(np.random.randint(0, 2**31 - 1)))
        if hasattr(self.batches, "set_thread_id"):
            self.batches.set_thread_id(thread_id)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.batches)


def make_loader(batches, transform, num_workers: int, seeds: list[int] | None = None,
                pin_memory: bool = False) -> BatchLoader:
    """Transformed batches as tensors; made in worker processes when ``num_workers > 0`` (they die with this one)."""
    if num_workers <= 0:
        return BatchLoader(SingleThreadedAugmenter(batches, transform), pin_memory)
    augmenter = MultiThreadedAugmenter(_WorkerBatches(batches), transform, num_processes=num_workers,
                                       num_cached_per_queue=3,
                                       seeds=seeds, pin_memory=False, wait_time=0.002)
    return BatchLoader(augmenter, pin_memory)


def close_loader(loader: BatchLoader) -> None:
    """Stop a loader's worker processes (nothing to do for the in-process one)."""
    loader.close()
