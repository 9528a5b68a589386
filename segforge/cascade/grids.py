"""Positions between a preprocessed grid, the original image grid and the world.

A preprocessed case is the original image cropped to ``crop_box`` and resampled from
``shape_after_crop`` to ``preprocessed_shape`` with the voxel-centre convention of
:mod:`segforge.preprocessing.resampling`: ``old = (new + 0.5) * n_old / n_new - 0.5``.
Positions are continuous voxel indices ``(..., 3)`` ``(z, y, x)``; world points
``(..., 3)`` ``(x, y, z)`` mm.
"""

from __future__ import annotations

import numpy as np

from segforge.io.geometry import Geometry

__all__ = [
    "preprocessed_to_original",
    "original_to_preprocessed",
    "preprocessed_to_world",
    "world_to_preprocessed",
    "effective_spacing",
]


def _scale_offset(properties: dict) -> tuple[np.ndarray, np.ndarray]:
    old = np.asarray(properties["shape_after_crop"], dtype=np.float64)
    new = np.asarray(properties["preprocessed_shape"], dtype=np.float64)
    start = np.asarray([b[0] for b in properties["crop_box"]], dtype=np.float64)
    return old / new, start


def preprocessed_to_original(index_zyx, properties: dict) -> np.ndarray:
    scale, start = _scale_offset(properties)
    return (np.asarray(index_zyx, dtype=np.float64) + 0.5) * scale - 0.5 + start


def original_to_preprocessed(index_zyx, properties: dict) -> np.ndarray:
    scale, start = _scale_offset(properties)
    return (np.asarray(index_zyx, dtype=np.float64) - start + 0.5) / scale - 0.5


def preprocessed_to_world(index_zyx, properties: dict) -> np.ndarray:
    geometry = Geometry.from_dict(properties["original_geometry"])
    return geometry.index_to_world(preprocessed_to_original(index_zyx, properties))


def world_to_preprocessed(world_xyz, properties: dict) -> np.ndarray:
    geometry = Geometry.from_dict(properties["original_geometry"])
    return original_to_preprocessed(geometry.world_to_index(world_xyz), properties)


def effective_spacing(properties: dict) -> np.ndarray:
    """The preprocessed grid's true voxel size ``(3,)`` mm (the target spacing up to rounding)."""
    scale, _ = _scale_offset(properties)
    return np.asarray(properties["original_geometry"]["spacing"], dtype=np.float64) * scale
