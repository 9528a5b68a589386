"""Cropping to the non-zero region: the fingerprint measures it (so it lives here), preprocessing applies it.

A box is ``[[z0, z1], [y0, y1], [x0, x1]]`` in voxels, half-open (``z1`` excluded), so
``array[..., z0:z1, y0:y1, x0:x1]`` is the crop and ``z1 - z0`` its size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["nonzero_mask", "nonzero_bbox", "crop_to_box", "box_shape", "mask_bbox"]


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """``(C, Z, Y, X)`` (or ``(Z, Y, X)``) -> ``(Z, Y, X)`` bool: non-zero in any channel, holes filled.

    Holes (zero voxels enclosed by non-zero ones, such as exact zeros inside a body) are
    part of the mask; they do not change its bounding box.
    """
    image = np.asarray(image)
    mask = image != 0 if image.ndim == 3 else np.any(image != 0, axis=0)
    return ndimage.binary_fill_holes(mask)


def mask_bbox(mask: np.ndarray) -> list[list[int]] | None:
    """Tight half-open box around the true voxels of ``mask (Z, Y, X)``; None when there are none."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return None
        box.append([int(hit[0]), int(hit[-1]) + 1])
    return box


def nonzero_bbox(image: np.ndarray) -> list[list[int]]:
    """Box around the voxels that are non-zero in any channel of ``image (C, Z, Y, X)`` (or ``(Z, Y, X)``).

    An all-zero image gives the whole image (nothing to crop away).
    """
    image = np.asarray(image)
    mask = image != 0 if image.ndim == 3 else np.any(image != 0, axis=0)
    box = mask_bbox(mask)
    return box if box is not None else [[0, int(n)] for n in mask.shape]


def crop_to_box(array: np.ndarray, box) -> np.ndarray:
    """Crop the last three axes of ``array`` (``(..., Z, Y, X)``) to ``box``; a view, not a copy."""
    (z0, z1), (y0, y1), (x0, x1) = box
    return array[..., z0:z1, y0:y1, x0:x1]


def box_shape(box) -> list[int]:
    return [int(b) - int(a) for a, b in box]
