"""DevicePrefetcher (CUDA only): the loader's batches arrive on the GPU, whole and in order."""

import pytest
import torch

from segforge.data.device_prefetch import DevicePrefetcher


class Batches:
    """A loader of numbered pinned batches that records being closed."""

    def __init__(self):
        self.i, self.closed = 0, False

    def __next__(self):
        self.i += 1
        data = torch.full((2, 1, 8, 8, 8), float(self.i)).pin_memory()
        return {"data": data, "target": torch.full((2, 1, 8, 8, 8), self.i % 7, dtype=torch.uint8), "keys": [self.i]}

    def close(self):
        self.closed = True


def test_refuses_a_cpu_device():
    with pytest.raises(ValueError, match="CUDA"):
        DevicePrefetcher(Batches(), torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_arrive_on_the_gpu_in_order():
    loader = Batches()
    prefetcher = DevicePrefetcher(loader, torch.device("cuda"), depth=3)
    try:
        for i in range(1, 9):
            batch = next(prefetcher)
            assert batch["data"].is_cuda and batch["target"].dtype == torch.uint8 and batch["keys"] == [i]
            assert torch.equal(batch["data"], torch.full_like(batch["data"], float(i)))  # the copy is complete
            assert int(batch["target"].max()) == i % 7
    finally:
        prefetcher.close()
    assert loader.closed


class Stuck(Batches):
    """A loader whose workers stopped answering after ``good`` batches."""

    def __init__(self, good: int):
        super().__init__()
        self.good, self.release = good, __import__("threading").Event()

    def __next__(self):
        if self.i >= self.good:
            self.release.wait(120)
        return super().__next__()

    def close(self):
        self.release.set()  # what closing a batchgenerators loader does to a blocked next(): it ends
        super().close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_close_does_not_wait_for_a_loader_that_stopped_answering():
    import time

    loader = Stuck(good=1)
    prefetcher = DevicePrefetcher(loader, torch.device("cuda"), depth=2, close_timeout=1.0)
    assert next(prefetcher)["keys"] == [1]
    start = time.monotonic()
    prefetcher.close()
    assert time.monotonic() - start < 10 and loader.closed


class Starting(Batches):
    def __init__(self):
        super().__init__()
        self.started_in = None

    def start(self):
        self.started_in = __import__("threading").current_thread().name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_loader_is_started_in_the_constructing_thread():
    import threading

    loader = Starting()
    prefetcher = DevicePrefetcher(loader, torch.device("cuda"))
    try:
        assert loader.started_in == threading.current_thread().name
    finally:
        prefetcher.close()
