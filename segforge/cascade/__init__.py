"""The two-stage cascade: a low-resolution heatmap locator finds the target's centroid,
a crop around it is segmented at full resolution and pasted back.

Pure pieces (no torch): :mod:`heatmaps` (Gaussian targets, sub-voxel readout),
:mod:`curriculum` (sigma schedule), :mod:`crop` (crop/paste with padding).
"""

from segforge.cascade.crop import crop_box_around, crop_with_padding, paste_crop
from segforge.cascade.curriculum import SigmaCurriculum
from segforge.cascade.heatmaps import (
    axis_sigmas,
    centroid_error_mm,
    gaussian_heatmap,
    heatmap_targets,
    label_centroids,
    soft_argmax,
)

__all__ = [
    "crop_box_around",
    "crop_with_padding",
    "paste_crop",
    "SigmaCurriculum",
    "axis_sigmas",
    "centroid_error_mm",
    "gaussian_heatmap",
    "heatmap_targets",
    "label_centroids",
    "soft_argmax",
]
