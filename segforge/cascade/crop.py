"""Cutting a fixed-size box around a centre out of a volume, and pasting it back.

Boxes are ``[[z0, z1], [y0, y1], [x0, x1]]`` (half-open, voxel indices of the volume) and
may reach outside the volume: cropping pads there, pasting drops that part.
"""

from __future__ import annotations

import numpy as np

__all__ = ["crop_box_around", "crop_with_padding", "paste_crop"]


def crop_box_around(center_voxel, crop_size, image_shape, clamp: bool = True) -> list[list[int]]:
    """A box of ``crop_size`` (z, y, x) centred on ``center_voxel`` (continuous, z, y, x).

    With ``clamp`` the box is shifted to lie inside the image wherever the image is at
    least as large as the crop on that axis (a shifted crop still holds the target, and
    holds more real image than a padded one); where the image is smaller, the box is
    centred on the image and the crop is padded on both sides.
    """
    center = np.asarray(center_voxel, dtype=np.float64)
    size = np.asarray(crop_size, dtype=np.int64)
    shape = np.asarray(image_shape, dtype=np.int64)
    if center.shape != (3,) or size.shape != (3,) or shape.shape != (3,):
        raise ValueError("crop_box_around needs a 3D centre, crop size and image shape")
    # voxel i covers [i - 0.5, i + 0.5]: the box [c - size/2, c + size/2] rounded to voxels
    start = np.floor(center + 0.5 - size / 2.0).astype(np.int64)
    if clamp:
        fits = shape >= size
        start = np.where(fits, np.clip(start, 0, shape - size), (shape - size) // 2)
    return [[int(s), int(s + n)] for s, n in zip(start, size)]


def crop_with_padding(array: np.ndarray, box, pad_value: float = 0) -> np.ndarray:
    """Cut ``box`` from the last three axes of ``array`` (``(z, y, x)`` or ``(C, z, y, x)``).

    Parts of the box outside the array are filled with ``pad_value``. Returns a new array
    of shape ``(..., *box sizes)`` with the dtype of ``array``.
    """
    spatial = array.shape[-3:]
    size = [b1 - b0 for b0, b1 in box]
    out = np.full(array.shape[:-3] + tuple(size), pad_value, dtype=array.dtype)
    src, dst = _overlap(box, spatial)
    if src is not None:
        out[(Ellipsis, *dst)] = array[(Ellipsis, *src)]
    return out


def paste_crop(crop: np.ndarray, box, target: np.ndarray) -> np.ndarray:
    """Write ``crop`` (``(..., *box sizes)``) into ``target`` at ``box``, in place.

    The part of the crop that lies outside ``target`` is dropped. Returns ``target``.
    """
    size = [b1 - b0 for b0, b1 in box]
    if list(crop.shape[-3:]) != size:
        raise ValueError(f"crop shape {crop.shape[-3:]} does not match the box size {size}")
    src, dst = _overlap(box, target.shape[-3:])
    if src is not None:
        target[(Ellipsis, *src)] = crop[(Ellipsis, *dst)]
    return target


def _overlap(box, shape):
    """Slices (in the volume, in the crop) of the part of ``box`` inside ``shape``."""
    vol, crop = [], []
    for (b0, b1), n in zip(box, shape):
        lo, hi = max(b0, 0), min(b1, n)
        if hi <= lo:
            return None, None
        vol.append(slice(lo, hi))
        crop.append(slice(lo - b0, hi - b0))
    return tuple(vol), tuple(crop)
