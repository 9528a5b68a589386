"""Hand-built fingerprint dicts (docs/architecture.md "Fingerprint") for the planner and workflow tests."""

from __future__ import annotations

import numpy as np


def make_fingerprint(
    spacings,
    shapes,
    modality: str = "MR",
    labels: dict | None = None,
    crop_scale: float = 1.0,
    nonzero_removed: float = 0.05,
    bbox_fraction: float = 0.3,
    extent_mm=None,
    channels: int = 1,
) -> dict:
    """A fingerprint with one case per (spacing, shape); intensities of a CT-like channel.

    ``extent_mm``: the union foreground extent (z, y, x) mm of every case (default: half
    the image).
    """
    labels = labels or {"background": 0, "organ": 1}
    spacings = np.asarray(spacings, dtype=float)
    shapes = np.asarray(shapes, dtype=int)
    if spacings.ndim == 1:
        spacings = np.tile(spacings, (len(shapes), 1))
    cropped = np.maximum(np.round(shapes * crop_scale), 1).astype(int)
    stats = {"mean": 40.0, "std": 120.0, "min": -1000.0, "max": 1500.0, "p00_5": -900.0, "p50": 35.0, "p99_5": 1200.0}
    cases = []
    extents = []
    for i, (sp, sh, cr) in enumerate(zip(spacings, shapes, cropped)):
        ext = np.asarray(extent_mm, dtype=float) if extent_mm is not None else sh * sp / 2
        extents.append(ext)
        union = {
            "voxels": int(np.prod(ext / sp)),
            "extent_mm": ext.tolist(),
            "bbox_voxels": [[0, int(e)] for e in ext / sp],
            "centroid_world": [0.0, 0.0, 0.0],
            "centroid_voxel": (sh / 2).tolist(),
            "components": 1,
        }
        cases.append(
            {
                "name": f"case_{i:03d}",
                "spacing": sp.tolist(),
                "shape": sh.tolist(),
                "shape_after_crop": cr.tolist(),
                "nonzero_fraction_removed": nonzero_removed,
                "crop_box": [[0, int(c)] for c in cr],
                "intensity": [dict(stats) for _ in range(channels)],
                "objects": {"1": dict(union), "union": union},
            }
        )
    extents = np.asarray(extents)
    names = modality if isinstance(modality, (list, tuple)) else [modality] * channels
    return {
        "dataset_name": "Dataset999_Test",
        "channel_names": {str(c): names[c] for c in range(channels)},
        "labels": labels,
        "cases": cases,
        "intensity": [dict(stats) for _ in range(channels)],
        "summary": {
            "median_spacing": np.median(spacings, axis=0).tolist(),
            "median_shape": np.median(shapes, axis=0).tolist(),
            "median_shape_after_crop": np.median(cropped, axis=0).tolist(),
            "spacing_p10": np.percentile(spacings, 10, axis=0).tolist(),
            "anisotropy": float(np.median(spacings, axis=0).max() / np.median(spacings, axis=0).min()),
            "median_nonzero_fraction_removed": nonzero_removed,
            "median_union_extent_mm": np.median(extents, axis=0).tolist(),
            "p95_union_extent_mm": np.percentile(extents, 95, axis=0).tolist(),
            "median_union_bbox_fraction": bbox_fraction,
            "centroid_spread_mm": [5.0, 5.0, 5.0],
        },
    }
