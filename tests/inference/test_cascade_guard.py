"""Planted misses: the guarded crop segmentation finds targets the plain crop would cut or miss.

The locator's heatmap is planted by hand and the "segmenter" is a threshold (foreground where
the image is bright), so the right answer is known: every bright voxel, wherever it is.
"""

import numpy as np
import pytest

from segforge.cascade.heatmaps import gaussian_heatmap
from segforge.cascade.safeguard import heatmap_peak_value, heatmap_statistics, reference_statistics
from segforge.inference.cascade_guard import guarded_crop_segmentation
from segforge.io.geometry import Geometry

FULL = (48, 64, 64)        # segmenter grid, 1 mm
LOCATOR = (24, 32, 32)     # locator grid, 2 mm: locator voxel i = full voxel 2 i + 0.5
CROP = (16, 16, 16)
RADIUS = 4.5


def props(shape):
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), FULL)
    return {"original_geometry": geometry.to_dict(), "crop_box": [[0, n] for n in FULL],
            "shape_after_crop": list(FULL), "preprocessed_shape": list(shape)}


def threshold(crop):
    fg = (crop[0] > 0.5).astype(np.float32)
    return np.stack([1 - fg, fg])


def image_with(*boxes):
    image = np.zeros((1, *FULL), np.float32)
    for box in boxes:
        image[(0, *[slice(a, b) for a, b in box])] = 1.0
    return image


def kl_display(*blobs):
    """A KL locator's heatmap as predict_heatmap returns it: a softmax distribution scaled to peak 1."""
    h = sum(w * gaussian_heatmap(LOCATOR, c, 1.5) for c, w in blobs) + 1e-6
    p = h / h.sum()
    return (p / p.max())[None]


@pytest.fixture
def reference():
    cases = [kl_display(((c, 10, 12), 1.0))[0] for c in (8, 12, 14)]
    return reference_statistics([heatmap_statistics(h, RADIUS, heatmap_peak_value(h, "kl")) for h in cases])


def run(image, heatmap, reference):
    return guarded_crop_segmentation(threshold, image, props(FULL), heatmap, props(LOCATOR), CROP, 2, reference,
                                     RADIUS, loss="kl")


def test_a_confident_peak_on_a_target_that_fits_keeps_the_plain_crop(reference):
    target = [[18, 24], [20, 26], [22, 28]]  # centre 21, 23, 25 -> locator (10.25, 11.25, 12.25)
    probs, record = run(image_with(target), kl_display(((10.25, 11.25, 12.25), 1.0)), reference)
    assert record["confident"] and record["decision"] == "crop" and record["growths"] == 0
    assert record["boxes"] == [[[13, 29], [15, 31], [17, 33]]]
    np.testing.assert_array_equal(probs.argmax(0), image_with(target)[0])


def test_a_target_in_the_corner_larger_than_the_crop_grows_the_crop_until_it_is_whole(reference):
    target = [[30, 48], [0, 22], [40, 64]]  # against three image faces, 18 x 22 x 24 voxels
    probs, record = run(image_with(target), kl_display(((19.25, 5.25, 25.75), 1.0)), reference)
    assert record["confident"] and record["decision"] == "grown crop" and record["growths"] >= 1
    assert any("touched the crop" in r for r in record["reasons"])
    np.testing.assert_array_equal(probs.argmax(0), image_with(target)[0])  # nothing cut away


def test_two_targets_give_a_box_covering_both(reference):
    a, b = [[6, 12], [6, 12], [6, 12]], [[36, 42], [50, 56], [50, 56]]
    heat = kl_display(((4.25, 4.25, 4.25), 1.0), ((19.25, 26.25, 26.25), 0.9))
    probs, record = run(image_with(a, b), heat, reference)
    assert not record["confident"] and "second peak" in record["reasons"][0]
    assert record["decision"] == "grown crop" and len(record["peaks_segmenter_grid"]) == 2
    np.testing.assert_array_equal(probs.argmax(0), image_with(a, b)[0])


def test_no_clear_target_segments_the_whole_volume_and_says_why(reference):
    flat = np.full((1, *LOCATOR), 1.0, np.float32)
    flat[0, 3, 3, 3] = 1.0
    target = [[40, 46], [2, 8], [56, 62]]  # somewhere the locator does not point at
    probs, record = run(image_with(target), flat, reference)
    assert record["decision"] == "whole volume" and record["boxes"] == [[[0, 48], [0, 64], [0, 64]]]
    assert any("near its peak" in r for r in record["reasons"])
    np.testing.assert_array_equal(probs.argmax(0), image_with(target)[0])
    empty, record = run(image_with(), flat, reference)  # no target at all: nothing is painted
    assert record["decision"] == "whole volume" and not empty.argmax(0).any()


def test_a_weak_peak_at_a_look_alike_falls_back_to_the_whole_volume(reference):
    target = [[4, 10], [50, 56], [4, 10]]
    heat = kl_display(((15.0, 8.0, 20.0), 1.0)) * 1.0
    weak = heat + 0.2  # the same blob over a raised floor: the softmax peak is far lower than in validation
    probs, record = run(image_with(target), weak / weak.max(), reference)
    assert record["decision"] == "whole volume" and not record["confident"]
    np.testing.assert_array_equal(probs.argmax(0), image_with(target)[0])
