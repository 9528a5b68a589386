"""The two-stage cascade: a low-resolution heatmap locator finds the target's centroid,
a crop around it is segmented at full resolution and pasted back (docs/cascade.md).

* pure pieces (no torch): :mod:`~segforge.cascade.heatmaps` (Gaussian targets, sub-voxel
  readout), :mod:`~segforge.cascade.curriculum` (sigma schedule),
  :mod:`~segforge.cascade.crop` (crop/paste with padding), :mod:`~segforge.cascade.grids`;
* the locator: :mod:`~segforge.cascade.locator_data`, :mod:`~segforge.cascade.locate`,
  :mod:`~segforge.cascade.locator_trainer`, :mod:`~segforge.cascade.locator_plots`;
* the segmenter and prediction: :mod:`~segforge.cascade.cascade_segmenter`,
  :mod:`~segforge.cascade.predictor` (imported on demand: they need the training and
  inference packages).
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
