"""The preprocessed grid and the original grid: mapping points and arrays both ways.

Preprocessing crops the original image to ``crop_box`` (``[[z0, z1], ...]``, ends
exclusive) and resamples the crop of ``shape_after_crop`` voxels to ``preprocessed_shape``
keeping the field of view (voxel-centre convention of
:mod:`segforge.preprocessing.resampling`). With ``s = shape_after_crop / preprocessed_shape``
per axis, preprocessed index ``i`` lies at original index ``(i + 0.5) * s - 0.5 + crop_start``.
"""

from __future__ import annotations

import numpy as np
import torch

from segforge.io.geometry import Geometry
from segforge.preprocessing.resampling import resample_label, resample_probabilities

__all__ = [
    "grid_scale",
    "preprocessed_to_original_index",
    "original_to_preprocessed_index",
    "preprocessed_geometry",
    "restore_to_original",
    "probabilities_to_labels",
]


def grid_scale(properties: dict) -> np.ndarray:
    """``(3,)`` original voxels per preprocessed voxel along ``(z, y, x)``."""
    return np.asarray(properties["shape_after_crop"], dtype=np.float64) / np.asarray(
        properties["preprocessed_shape"], dtype=np.float64
    )


def _crop_start(properties: dict) -> np.ndarray:
    return np.asarray([b[0] for b in properties["crop_box"]], dtype=np.float64)


def preprocessed_to_original_index(points_zyx, properties: dict) -> np.ndarray:
    """``(..., 3)`` continuous preprocessed indices -> continuous original indices ``(z, y, x)``."""
    p = np.asarray(points_zyx, dtype=np.float64)
    return (p + 0.5) * grid_scale(properties) - 0.5 + _crop_start(properties)


def original_to_preprocessed_index(points_zyx, properties: dict) -> np.ndarray:
    """``(..., 3)`` continuous original indices -> continuous preprocessed indices ``(z, y, x)``."""
    p = np.asarray(points_zyx, dtype=np.float64)
    return (p - _crop_start(properties) + 0.5) / grid_scale(properties) - 0.5


def preprocessed_geometry(properties: dict) -> Geometry:
    """The preprocessed grid in world space (same direction as the original, exact spacing)."""
    original = Geometry.from_dict(properties["original_geometry"])
    origin = original.index_to_world(preprocessed_to_original_index(np.zeros(3), properties))
    spacing = np.asarray(original.spacing) * grid_scale(properties)
    return Geometry(tuple(spacing), tuple(origin), original.direction, tuple(properties["preprocessed_shape"]))


def restore_to_original(
    array: np.ndarray, properties: dict, is_label: bool, label_mode: str = "linear_onehot",
    background_channel: bool = True,
) -> np.ndarray:
    """Undo resampling and cropping: put ``array`` on the original image grid.

    * ``is_label=False``: ``array (K, z, y, x)`` class probabilities, resampled linearly to
      the crop and pasted into ``(K, Z, Y, X)`` float32 that is background (class 0 = 1,
      others 0) outside the crop. Probabilities keep summing to 1. A torch tensor is
      restored on its own device and returned as a tensor. ``background_channel=False``
      (region-based sigmoid outputs, no background channel): every channel is 0 outside the crop.
    * ``is_label=True``: ``array (z, y, x)`` labels, resampled with ``label_mode``
      (``"linear_onehot"``: smoother boundaries; or ``"nearest"``) and pasted into
      ``(Z, Y, X)`` of the same dtype, 0 outside the crop.
    """
    if not isinstance(array, torch.Tensor):
        array = np.asarray(array)
    target = tuple(int(s) for s in properties["original_geometry"]["shape"])
    crop_shape = tuple(int(s) for s in properties["shape_after_crop"])
    grid_shape = tuple(int(s) for s in properties["preprocessed_shape"])
    crop = tuple(slice(int(a), int(b)) for a, b in properties["crop_box"])
    spatial = array.shape if is_label else array.shape[1:]
    if array.ndim != (3 if is_label else 4) or tuple(spatial) != grid_shape:
        expected = "(z, y, x)" if is_label else "(K, z, y, x)"
        raise ValueError(f"expected {expected} on the preprocessed grid {grid_shape}, got shape {tuple(array.shape)}")
    if isinstance(array, torch.Tensor):
        if is_label:
            array = array.cpu().numpy()
        else:
            restored = resample_probabilities(array.float(), crop_shape)
            out = torch.zeros((array.shape[0],) + target, dtype=torch.float32, device=array.device)
            out[0] = 1.0 if background_channel else 0.0
            out[(slice(None),) + crop] = restored
            return out
    if is_label:
        restored = resample_label(array, crop_shape, mode=label_mode)
        out = np.zeros(target, dtype=array.dtype)
        out[crop] = restored
        return out
    restored = resample_probabilities(array.astype(np.float32, copy=False), crop_shape)
    out = np.zeros((array.shape[0],) + target, dtype=np.float32)
    out[0] = 1.0 if background_channel else 0.0
    out[(slice(None),) + crop] = restored
    return out


def probabilities_to_labels(probabilities: np.ndarray, dtype=np.uint8) -> np.ndarray:
    """``(K, z, y, x)`` probabilities (or logits) -> ``(z, y, x)`` arg-max labels of ``dtype``."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 4:
        raise ValueError(f"expected (K, z, y, x), got shape {probabilities.shape}")
    if probabilities.shape[0] > np.iinfo(dtype).max + 1:
        dtype = np.int16
    return np.argmax(probabilities, axis=0).astype(dtype)
