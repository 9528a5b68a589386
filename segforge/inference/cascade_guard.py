"""The cascade's crop, segmented so that it never silently misses (docs/cascade.md, "Never a silent miss").

:func:`guarded_crop_segmentation` takes the locator's heatmap and a ``segment(crop)``
function (the segmenter's sliding window over a crop of any size at least the patch) and:

1. measures the heatmap (:func:`~segforge.cascade.safeguard.heatmap_statistics`) and judges
   it against the locator's validation reference
   (:func:`~segforge.cascade.safeguard.assess_confidence`): a confident heatmap gives the
   planned ``crop_size`` box around the peak; two strong peaks give the box covering a crop
   around each; a weak, flat or spread heatmap gives the whole volume;
2. segments the box; while the foreground touches a face of the box that is not the image
   border, the box grows by half a crop on those faces and is segmented again (at most
   ``max_growth`` times, then the whole volume);
3. returns the probabilities on the whole preprocessed grid (background outside the box)
   and a record of every step: the statistics, the verdict and its reasons, each box, the
   final decision — the predictor writes it to ``CASE_cascade.json``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from segforge.cascade.crop import crop_box_around, crop_with_padding, paste_crop
from segforge.cascade.grids import preprocessed_to_world, world_to_preprocessed
from segforge.cascade.safeguard import (
    assess_confidence,
    box_around_points,
    grow_box,
    heatmap_peak_value,
    heatmap_statistics,
    strong_peaks,
    touched_faces,
)

__all__ = ["guarded_crop_segmentation", "MAX_GROWTH"]

MAX_GROWTH = 3  # border-driven growths of the crop before the whole volume is segmented


def guarded_crop_segmentation(
    segment: Callable[[np.ndarray], np.ndarray],
    data: np.ndarray,
    properties: dict,
    heatmap: np.ndarray,
    locator_properties: dict,
    crop_size,
    num_classes: int,
    reference: dict | None,
    radius: float,
    loss: str = "kl",
    max_growth: int = MAX_GROWTH,
    centre=None,
) -> tuple[np.ndarray, dict]:
    """``(probabilities (K, z, y, x) float32 on data's grid, record)``; see the module docstring.

    ``heatmap (C, z', y', x')`` lies on the locator grid of ``locator_properties`` (channels
    are averaged for the judgement); ``radius`` is "near the peak" in locator voxels;
    ``centre`` the located (sub-voxel) centroid on the locator grid for the plain crop
    (default: the heatmap's peak voxel).
    """
    shape = tuple(int(n) for n in data.shape[1:])
    crop_size = [int(c) for c in crop_size]
    mean_heat = np.asarray(heatmap, dtype=np.float64).mean(axis=0)
    stats = heatmap_statistics(mean_heat, radius, raw_peak=heatmap_peak_value(mean_heat, loss))
    verdict = assess_confidence(stats, reference)
    record = {"heatmap": stats, "reference": reference, "confident": verdict["confident"],
              "reasons": list(verdict["reasons"]), "boxes": []}

    def to_segmenter(voxel):
        return world_to_preprocessed(preprocessed_to_world(np.asarray(voxel, dtype=np.float64), locator_properties),
                                     properties)

    whole = [[0, n] for n in shape]
    if verdict["action"] == "whole_volume":
        box = whole
    elif verdict["action"] == "cover_peaks":
        peaks = [to_segmenter(p) for p in strong_peaks(mean_heat, radius)]
        record["peaks_segmenter_grid"] = [[float(v) for v in p] for p in peaks]
        box = box_around_points(peaks, crop_size, shape)
    else:
        box = crop_box_around(to_segmenter(stats["peak_voxel"] if centre is None else centre), crop_size, shape)
    growths = 0
    while True:
        crop = crop_with_padding(data, box, pad_value=0.0)
        probabilities = np.asarray(segment(crop), dtype=np.float32)
        record["boxes"].append(box)
        if box == whole:
            break
        faces = touched_faces(probabilities.argmax(0), box, shape)
        if not faces:
            break
        sides = ", ".join(f"{'low' if side == 0 else 'high'} {'zyx'[axis]}" for axis, side in faces)
        if growths == max_growth:
            record["reasons"].append(f"the segmentation still touches the crop ({sides}) after {growths} growths: "
                                     "the whole volume was segmented")
            box = whole
        else:
            record["reasons"].append(f"the segmentation touched the crop's {sides} face(s): the crop grew")
            box = grow_box(box, faces, shape, [max(1, c // 2) for c in crop_size])
            growths += 1
    full = np.zeros((num_classes, *shape), dtype=np.float32)
    full[0] = 1.0
    paste_crop(probabilities, box, full)
    record.update(
        final_box=box, growths=growths,
        decision="whole volume" if box == whole else ("crop" if len(record["boxes"]) == 1
                                                        and verdict["action"] == "crop" else "grown crop"),
        why="crop: the planned box around a confident peak; grown crop: the box was widened (two peaks, or the "
            "segmentation reached its edge); whole volume: the locator was not confident, or growing did not "
            "free the segmentation from the crop's edge",
    )
    return full, record
