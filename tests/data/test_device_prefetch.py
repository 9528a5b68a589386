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
