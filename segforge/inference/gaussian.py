"""The importance map that weights each sliding-window prediction.

Windows overlap by half a patch; their centre is more reliable than their border (the
network sees less context there), so each window's logits are multiplied by a Gaussian
centred in the patch before they are summed, and the sum is divided by the summed weights.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = ["GAUSSIAN_SIGMA_SCALE", "gaussian_importance_map"]

GAUSSIAN_SIGMA_SCALE = 1.0 / 8  # sigma per axis as a fraction of the window


def gaussian_importance_map(patch_size, sigma_scale: float = GAUSSIAN_SIGMA_SCALE, device=None, dtype=torch.float32) -> torch.Tensor:
    """``patch_size``-shaped weights (any number of axes): ``exp(-d^2 / 2 sigma^2)``.

    ``sigma = sigma_scale * patch_size`` per axis, centre at ``(patch_size - 1) / 2`` (so the
    map is symmetric under flips), maximum 1, and no zero anywhere: values that underflow are
    raised to the smallest positive value, so every voxel a window covers gets some weight.
    """
    array = _gaussian_numpy(tuple(int(p) for p in patch_size), float(sigma_scale))
    return torch.tensor(array, dtype=dtype, device=device)


@lru_cache(maxsize=8)
def _gaussian_numpy(patch_size: tuple[int, ...], sigma_scale: float) -> np.ndarray:
    weights = np.ones((), dtype=np.float64)
    for size in patch_size:
        centre = (size - 1) / 2.0
        sigma = max(sigma_scale * size, 1e-6)
        axis = np.exp(-((np.arange(size) - centre) ** 2) / (2.0 * sigma**2))
        weights = np.multiply.outer(weights, axis)
    weights = (weights / weights.max()).astype(np.float32)
    positive = weights[weights > 0]
    weights = np.maximum(weights, positive.min())
    weights.setflags(write=False)
    return weights
