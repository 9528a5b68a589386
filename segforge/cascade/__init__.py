"""The two-stage cascade's pure pieces: a low-resolution heatmap locator finds the target's
centroid, a crop around it is segmented at full resolution and pasted back (docs/cascade.md).

* :mod:`~segforge.cascade.heatmaps` (Gaussian targets, sub-voxel readout),
  :mod:`~segforge.cascade.curriculum` (sigma schedule), :mod:`~segforge.cascade.crop`
  (crop/paste with padding), :mod:`~segforge.cascade.grids` (positions between grids);
* for the locator: :mod:`~segforge.cascade.locator_data` (whole-image batches),
  :mod:`~segforge.cascade.locate` (network -> heatmap -> centroid),
  :mod:`~segforge.cascade.locator_plots`, :mod:`~segforge.cascade.validation_views`.

The trainers that use them live in :mod:`segforge.training` (``locator_trainer``,
``cascade_segmenter``) and the predictor in :mod:`segforge.inference.cascade_predictor`:
this package sits below both and imports neither.
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
