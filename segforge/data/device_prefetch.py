"""Batches on their way to the GPU while the previous one trains.

:class:`DevicePrefetcher` takes the next batches from a loader in a background thread (the
loader pins them there), issues their copies to the GPU on a side CUDA stream, and hands a
batch to the training loop only after its copy, making the loop's stream wait for it on the
device, not on the host. So reading from the workers' queues, pinning and the transfer all
overlap the training step.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait

import torch

__all__ = ["DevicePrefetcher"]


class DevicePrefetcher:
    """Iterates ``loader``'s batches with their tensors already on ``device`` (CUDA), ``depth`` ahead."""

    def __init__(self, loader, device: torch.device, depth: int = 2, close_timeout: float = 60.0):
        self.loader = loader
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError("DevicePrefetcher copies to a CUDA device; iterate the loader itself elsewhere")
        self.close_timeout = close_timeout
        start = getattr(loader, "start", None)
        if start is not None:
            start()  # the workers fork from this thread, not from the fetching one
        self.stream = torch.cuda.Stream(self.device)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="segforge-prefetch")
        self.pending = deque(self.pool.submit(self._fetch) for _ in range(max(1, depth)))

    def _fetch(self):
        batch = next(self.loader)
        with torch.cuda.stream(self.stream):
            moved = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
            done = torch.cuda.Event()
            done.record(self.stream)
        return moved, done

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch, done = self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._fetch))
        current = torch.cuda.current_stream(self.device)
        current.wait_event(done)
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                value.record_stream(current)  # the allocator must not reuse it while the loop's stream reads it
        return batch

    def close(self) -> None:
        # the fetch under way ends first: a batchgenerators loader asked for a batch after its close
        # would start its workers again. A fetch that never ends (a worker hung or died) is not waited
        # for past close_timeout: closing the loader then ends it with an error nobody reads.
        for future in self.pending:
            future.cancel()
        wait([f for f in self.pending if not f.cancelled()], timeout=self.close_timeout)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.loader.close()
