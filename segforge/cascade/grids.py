"""Positions between a preprocessed grid and the world, for centroids.

Thin wrappers of :mod:`segforge.preprocessing.inverse` (which owns the grid convention:
voxel centres, ``old = (new + 0.5) * n_old / n_new - 0.5`` plus the crop start).
Positions are continuous voxel indices ``(..., 3)`` ``(z, y, x)``; world points
``(..., 3)`` ``(x, y, z)`` mm.
"""

from __future__ import annotations

import numpy as np

from segforge.io.geometry import Geometry
from segforge.preprocessing.inverse import (
    original_to_preprocessed_index,
    preprocessed_geometry,
    preprocessed_to_original_index,
)

__all__ = ["preprocessed_to_world", "world_to_preprocessed", "effective_spacing", "case_centroid_voxel"]


def preprocessed_to_world(index_zyx, properties: dict) -> np.ndarray:
    geometry = Geometry.from_dict(properties["original_geometry"])
    return geometry.index_to_world(preprocessed_to_original_index(index_zyx, properties))


def world_to_preprocessed(world_xyz, properties: dict) -> np.ndarray:
    geometry = Geometry.from_dict(properties["original_geometry"])
    return original_to_preprocessed_index(geometry.world_to_index(world_xyz), properties)


def effective_spacing(properties: dict) -> np.ndarray:
    """The preprocessed grid's exact voxel size ``(3,)`` mm."""
    return np.asarray(preprocessed_geometry(properties).spacing, dtype=np.float64)


def case_centroid_voxel(properties: dict) -> np.ndarray | None:
    """The union foreground centroid ``(3,)`` on the case's preprocessed grid, or None.

    From the exact ``centroid_world`` when present, else ``centroid_voxel``.
    """
    if properties.get("centroid_world") is not None:
        return world_to_preprocessed(properties["centroid_world"], properties)
    if properties.get("centroid_voxel") is not None:
        return np.asarray(properties["centroid_voxel"], dtype=np.float64)
    return None
