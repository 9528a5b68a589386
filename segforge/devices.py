"""Which device a run uses, and which reduced precision that device computes natively.

The one place that turns ``--device`` into a :class:`torch.device` (training and prediction
alike) and picks the mixed-precision dtype:

* bfloat16 where the GPU has bf16 tensor cores, compute capability 8.0 and up (Ampere,
  Hopper, ...). ``torch.cuda.is_bf16_supported()`` is not asked: it also answers True where
  bf16 is only emulated, which is slower than float16;
* float16 (with a gradient scaler in training) on older GPUs;
* none on the CPU (float32).

A checkpoint records the dtype its network was trained with (``amp_dtype``: ``"bfloat16"``,
``"float16"`` or ``"float32"``); prediction runs in that dtype when the device computes it
natively, else in float32 (:func:`prediction_dtype`).
"""

from __future__ import annotations

import torch

from segforge.errors import InputError

__all__ = ["resolve_device", "autocast_dtype", "dtype_name", "dtype_from_name", "prediction_dtype",
           "free_device_memory", "BF16_MIN_CAPABILITY"]

BF16_MIN_CAPABILITY = (8, 0)
_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", None: "float32"}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> CUDA when available, else the CPU; ``cpu``, ``cuda`` or ``cuda:N`` as given.

    Asking for CUDA without a GPU, or for another kind of device, is an :class:`InputError`.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu, cuda or cuda:N, got {device}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was asked for but no CUDA device is available; use --device cpu")
    return device


def _native_bf16(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device) >= BF16_MIN_CAPABILITY


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Training's mixed-precision dtype on ``device``: bf16 (capability >= 8.0), fp16 (older GPUs), None (CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if _native_bf16(device) else torch.float16


def dtype_name(dtype: torch.dtype | None) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``, ``torch.float16`` -> ``"float16"``, None -> ``"float32"``."""
    return _NAMES[dtype]


def dtype_from_name(name: str) -> torch.dtype | None:
    for dtype, known in _NAMES.items():
        if known == name:
            return dtype
    raise InputError(f"unknown precision {name!r}; expected one of {', '.join(_NAMES.values())}")


def prediction_dtype(device: torch.device, trained_with: str | None) -> torch.dtype | None:
    """Autocast dtype for predicting on ``device`` with a network trained in ``trained_with``.

    The training dtype when the device computes it natively; float32 (None) otherwise and on
    the CPU. A checkpoint that does not say (written before it was recorded) was trained with
    float16 autocast on a GPU, which is what prediction used then.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    dtype = dtype_from_name(trained_with) if trained_with is not None else torch.float16
    if dtype is torch.bfloat16 and not _native_bf16(device):
        return None
    return dtype


def free_device_memory(device: torch.device) -> int:
    """Bytes a new tensor can take on the GPU ``device``: what the driver reports free plus the
    blocks PyTorch's caching allocator holds but no tensor uses (``reserved - allocated``), which
    the driver counts as taken although PyTorch hands them out again without asking it."""
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(cached, 0))
