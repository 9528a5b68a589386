"""Intensity normalisation of one image, channel by channel, as the plans say.

Schemes (``ChannelNormalization.scheme``), registered by name:

* ``"ct"``: clip to ``[lower, upper]`` (dataset foreground percentiles), then
  ``(x - mean) / std`` with the dataset foreground statistics;
* ``"zscore"``: ``(x - mean) / std`` of this image;
* ``"zscore_nonzero"``: statistics inside the non-zero mask only, 0 outside it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from segforge.planning.plans import ChannelNormalization

__all__ = ["NORMALIZATION_SCHEMES", "normalize_channel", "normalize_image"]

_EPS = 1e-8


def _ct(x: np.ndarray, settings: ChannelNormalization, mask: np.ndarray | None) -> np.ndarray:
    missing = [k for k in ("mean", "std", "lower", "upper") if getattr(settings, k) is None]
    if missing:
        raise ValueError(f"'ct' normalisation needs dataset statistics; missing: {', '.join(missing)}")
    np.clip(x, settings.lower, settings.upper, out=x)
    x -= np.float32(settings.mean)
    x /= np.float32(max(float(settings.std), _EPS))
    return x


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    std, mean = torch.std_mean(torch.from_numpy(np.ascontiguousarray(values)).double(), correction=0)
    return float(mean), float(std)


def _zscore(x: np.ndarray, settings: ChannelNormalization, mask: np.ndarray | None) -> np.ndarray:
    mean, std = _mean_std(x)
    x -= np.float32(mean)
    x /= np.float32(max(std, _EPS))
    return x


def _zscore_nonzero(x: np.ndarray, settings: ChannelNormalization, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        mask = x != 0
    values = x[mask]
    if values.size == 0:
        x[...] = 0
        return x
    mean, std = _mean_std(values)
    x -= np.float32(mean)
    x /= np.float32(max(std, _EPS))
    x[~mask] = 0
    return x


NORMALIZATION_SCHEMES: dict[str, Callable] = {
    "ct": _ct,
    "zscore": _zscore,
    "zscore_nonzero": _zscore_nonzero,
}


def normalize_channel(x: np.ndarray, settings: ChannelNormalization, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalise one channel ``x (z, y, x)`` float32 **in place** and return it.

    ``mask (z, y, x)`` bool is the non-zero region for ``"zscore_nonzero"`` (default:
    ``x != 0``; preprocessing passes the hole-filled mask of all channels, see
    :func:`segforge.fingerprint.cropping.nonzero_mask`); the other schemes ignore it.
    """
    scheme = NORMALIZATION_SCHEMES.get(settings.scheme)
    if scheme is None:
        raise ValueError(
            f"unknown normalisation scheme {settings.scheme!r}; known: {', '.join(NORMALIZATION_SCHEMES)}"
        )
    if x.dtype != np.float32:
        raise ValueError(f"normalize_channel works in place on float32, got {x.dtype}")
    return scheme(x, settings, mask)


def normalize_image(
    data: np.ndarray, settings: list[ChannelNormalization], mask: np.ndarray | None = None
) -> np.ndarray:
    """Normalise ``data (C, z, y, x)`` float32 in place, channel ``c`` with ``settings[c]``."""
    if data.ndim != 4:
        raise ValueError(f"expected (C, z, y, x), got shape {data.shape}")
    if len(settings) != data.shape[0]:
        raise ValueError(f"the plans normalise {len(settings)} channel(s) but the image has {data.shape[0]}")
    for c, s in enumerate(settings):
        normalize_channel(data[c], s, mask)
    return data
