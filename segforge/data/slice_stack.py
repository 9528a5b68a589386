"""2.5D input: each slice together with its neighbours, stacked as channels.

A ``2.5d`` configuration (``Configuration.input_slices = k``, odd) predicts slice ``z`` from the
slices ``z - k//2 .. z + k//2``. Beyond the volume's first and last slice the edge slice is
repeated (the neighbour of slice 0 "below" it is slice 0 itself), so every slice has a full
stack and the network never sees an invented blank slice. Channel ``c * k + j`` of the stack
at slice ``z`` is channel ``c`` of slice ``clamp(z + j - k//2)``: channel-major, the same order
in training (:class:`~segforge.data.patch_sampler.PatchSampler`) and prediction
(:func:`stack_adjacent_slices`, before the 2D sliding window).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["adjacent_slice_indices", "stack_adjacent_slices"]


def adjacent_slice_indices(z, n_slices: int, k: int) -> np.ndarray:
    """The ``k`` slice indices feeding slice ``z`` (an int, or an array of them: result ``(..., k)``),
    the edge slice repeated beyond the volume."""
    if k < 1 or k % 2 == 0:
        raise ValueError(f"the number of stacked slices must be odd and >= 1, got {k}")
    offsets = np.arange(k) - k // 2
    return np.clip(np.asarray(z)[..., None] + offsets, 0, n_slices - 1)


def stack_adjacent_slices(volume, k: int):
    """``(C, Z, Y, X)`` -> ``(C * k, Z, Y, X)`` (numpy array or torch tensor alike): every slice with its
    ``k - 1`` neighbours as channels (module docstring for the order and the borders)."""
    if k == 1:
        return volume
    c, z = volume.shape[:2]
    index = adjacent_slice_indices(np.arange(z), z, k)  # (Z, k)
    if isinstance(volume, torch.Tensor):
        stacked = volume[:, torch.as_tensor(index, device=volume.device)]  # (C, Z, k, Y, X)
        return stacked.permute(0, 2, 1, 3, 4).reshape(c * k, *volume.shape[1:])
    stacked = np.asarray(volume)[:, index]
    return stacked.transpose(0, 2, 1, 3, 4).reshape(c * k, *volume.shape[1:])
