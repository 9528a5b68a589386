"""Device resolution and the precision a device computes natively (no GPU needed: capability is mocked)."""

import pytest
import torch

from segforge import devices
from segforge.devices import autocast_dtype, dtype_from_name, dtype_name, prediction_dtype, resolve_device
from segforge.errors import InputError


def test_devices_by_name_and_clear_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device 'gpu-please'"):
        resolve_device("gpu-please")
    with pytest.raises(InputError, match="must be cpu, cuda or cuda:N"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device is available; use --device cpu"):
            resolve_device("cuda")


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                                  ((9, 0), torch.bfloat16), ((6, 1), torch.float16)])
def test_bf16_only_from_compute_capability_8(monkeypatch, capability, expected):
    """A Turing card (7.5) emulates bf16 (``is_bf16_supported`` may say yes): fp16 there."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # must not be asked
    assert autocast_dtype(torch.device("cuda")) is expected
    assert autocast_dtype(torch.device("cpu")) is None


def test_prediction_uses_the_training_dtype_where_native(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert prediction_dtype(cuda, "bfloat16") is torch.bfloat16
    assert prediction_dtype(cuda, "float16") is torch.float16
    assert prediction_dtype(cuda, "float32") is None
    assert prediction_dtype(cuda, None) is torch.float16  # written before the dtype was recorded
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert prediction_dtype(cuda, "bfloat16") is None  # no native bf16: float32, not an untrained fp16
    assert prediction_dtype(torch.device("cpu"), "bfloat16") is None
    for dtype in (torch.bfloat16, torch.float16, None):
        assert dtype_from_name(dtype_name(dtype)) is dtype
    with pytest.raises(InputError, match="unknown precision 'half'"):
        dtype_from_name("half")


def test_free_device_memory_counts_cached_blocks(monkeypatch):
    """The driver counts PyTorch's cached-but-unused blocks as taken; they are free to PyTorch."""
    from segforge.devices import free_device_memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 8000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1200)
    assert free_device_memory(torch.device("cuda")) == 1000 + 1800


def test_the_predictor_records_each_networks_precision(model_folder):
    from segforge.inference.predictor import Predictor

    path = model_folder / "fold_0" / "checkpoint_final.pt"
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, "amp_dtype": "bfloat16"}, path)
    assert Predictor(model_folder, device="cpu").network_dtypes == [torch.float32]  # the CPU predicts in float32
    assert devices.BF16_MIN_CAPABILITY == (8, 0)
