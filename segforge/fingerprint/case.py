"""What the fingerprint measures on one case (keys: docs/architecture.md "Fingerprint").

Everything here works on arrays already in memory: ``image (C, Z, Y, X)``, ``label (Z, Y, X)``
integers and their :class:`~segforge.io.Geometry`. Boxes are half-open
``[[z0, z1], [y0, y1], [x0, x1]]`` voxels; extents ``(z, y, x)`` mm; centroids
``(z, y, x)`` voxels and ``(x, y, z)`` world mm.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy import ndimage

from segforge.io import Geometry
from segforge.fingerprint.cropping import box_shape, mask_bbox, nonzero_bbox

__all__ = [
    "INTENSITY_KEYS",
    "OBJECT_KEYS",
    "MAX_SAMPLES_PER_CASE",
    "intensity_stats",
    "object_stats",
    "sample_foreground",
    "case_seed",
    "fingerprint_case",
]

INTENSITY_KEYS = ("mean", "std", "min", "max", "p00_5", "p50", "p99_5")
OBJECT_KEYS = ("voxels", "extent_mm", "bbox_voxels", "centroid_world", "centroid_voxel", "components")
MAX_SAMPLES_PER_CASE = 10_000
# objects touching at an edge or a corner count as one connected component
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def intensity_stats(values: np.ndarray) -> dict:
    """Mean, std, min, max and the 0.5/50/99.5 percentiles of a 1D array; all None when empty."""
    values = np.asarray(values).ravel()
    if values.size == 0:
        return {k: None for k in INTENSITY_KEYS}
    p00_5, p50, p99_5 = np.percentile(values, [0.5, 50.0, 99.5])
    return {
        "mean": float(np.mean(values, dtype=np.float64)),
        "std": float(np.std(values, dtype=np.float64)),
        "min": float(values.min()),
        "max": float(values.max()),
        "p00_5": float(p00_5),
        "p50": float(p50),
        "p99_5": float(p99_5),
    }


def object_stats(mask: np.ndarray, geometry: Geometry, offset=(0, 0, 0)) -> dict:
    """Size and place of the true voxels of ``mask`` (a crop of the case starting at voxel ``offset``).

    Returns the :data:`OBJECT_KEYS`; an empty mask gives 0 voxels, 0 components and None elsewhere.
    """
    box = mask_bbox(mask)
    if box is None:
        return {"voxels": 0, "extent_mm": None, "bbox_voxels": None, "centroid_world": None,
                "centroid_voxel": None, "components": 0}
    inner = mask[tuple(slice(a, b) for a, b in box)]
    count = int(np.count_nonzero(inner))
    centroid = []
    for axis in range(3):  # mean index along each axis from the mask's projection: no index arrays
        other = tuple(a for a in range(3) if a != axis)
        per_slice = np.count_nonzero(inner, axis=other)
        centroid.append(float(np.dot(per_slice, np.arange(per_slice.size)) / count) + box[axis][0] + offset[axis])
    bbox = [[a + o, b + o] for (a, b), o in zip(box, offset)]
    _, components = ndimage.label(inner, structure=_CONNECTIVITY)
    return {
        "voxels": count,
        "extent_mm": [float(n * s) for n, s in zip(box_shape(box), geometry.spacing)],
        "bbox_voxels": bbox,
        "centroid_world": [float(v) for v in geometry.index_to_world(centroid)],
        "centroid_voxel": centroid,
        "components": int(components),
    }


def case_seed(name: str) -> int:
    """A seed from the case name, so a case gets the same samples in any process and order."""
    return zlib.crc32(name.encode("utf-8"))


def sample_foreground(values: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    """At most ``max_samples`` columns of ``values (C, N)`` drawn without replacement, in their order."""
    n = values.shape[1]
    if n <= max_samples:
        return values.copy()
    keep = np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))
    return values[:, keep]


def fingerprint_case(
    name: str,
    image: np.ndarray,
    label: np.ndarray,
    geometry: Geometry,
    label_values: list[int],
    max_samples: int = MAX_SAMPLES_PER_CASE,
) -> tuple[dict, np.ndarray]:
    """Measure one case.

    ``image (C, Z, Y, X)``, ``label (Z, Y, X)`` integers. Returns the case's fingerprint entry
    and ``(C, n <= max_samples)`` float32 foreground intensities for the dataset's pooled
    statistics. Per-case intensity statistics use every foreground voxel.
    """
    box = nonzero_bbox(image)
    crop_shape = box_shape(box)
    foreground = label > 0
    values = image[:, foreground]  # (C, N)
    boxes = _label_boxes(label)
    objects = {}
    for value in sorted(v for v in label_values if v > 0):
        objects[str(value)] = _label_stats(label, boxes, value, geometry)
    objects["union"] = object_stats(foreground, geometry)
    entry = {
        "name": name,
        "spacing": [float(s) for s in geometry.spacing],
        "shape": [int(n) for n in label.shape],
        "shape_after_crop": crop_shape,
        "nonzero_fraction_removed": float(1.0 - np.prod(crop_shape, dtype=np.float64) / label.size),
        "crop_box": box,
        "intensity": [intensity_stats(values[c]) for c in range(values.shape[0])],
        "objects": objects,
    }
    samples = sample_foreground(values, max_samples, case_seed(name)).astype(np.float32, copy=False)
    return entry, samples


def _label_boxes(label: np.ndarray) -> list:
    """``find_objects`` of the label map: entry ``v - 1`` holds value ``v``'s bounding slices (or None)."""
    if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f"label map must hold integers, got {label.dtype}")
    return ndimage.find_objects(label) if label.size and label.max() > 0 else []


def _label_stats(label: np.ndarray, boxes: list, value: int, geometry: Geometry) -> dict:
    """object_stats of one label value, looking only inside the value's bounding box."""
    region = boxes[value - 1] if value - 1 < len(boxes) else None
    if region is None:
        return object_stats(np.zeros((1, 1, 1), dtype=bool), geometry)
    return object_stats(label[region] == value, geometry, offset=tuple(s.start for s in region))
