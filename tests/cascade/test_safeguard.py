"""The cascade's safeguards from numbers worked out by hand: heatmap statistics, confidence, crop growth."""

import numpy as np
import pytest

from segforge.cascade.heatmaps import gaussian_heatmap
from segforge.cascade.safeguard import (
    assess_confidence,
    box_around_points,
    grow_box,
    heatmap_statistics,
    reference_statistics,
    strong_peaks,
    touched_faces,
)

SHAPE = (24, 32, 32)


def blob(centre, sigma=1.5, shape=SHAPE):
    return gaussian_heatmap(shape, centre, sigma)


def test_one_clear_blob():
    s = heatmap_statistics(blob((10, 12, 20)), radius=4.5)
    assert s["peak_voxel"] == [10, 12, 20] and s["peak"] == pytest.approx(1.0)
    # within 3 sigmas of a 3D Gaussian: erf(3/sqrt2) - sqrt(2/pi) * 3 * exp(-4.5) = 0.9707 of the mass
    assert s["mass_near_peak"] == pytest.approx(0.9707, abs=0.003)
    assert s["spread_voxels"] == pytest.approx(np.sqrt(3) * 1.5, rel=0.02)  # E|d|^2 = 3 sigma^2
    assert s["second_peak"] < 1e-6


def test_two_blobs_and_a_flat_map():
    two = np.maximum(blob((6, 8, 8)), 0.8 * blob((18, 24, 24)))
    s = heatmap_statistics(two, radius=4.5)
    assert s["second_peak"] == pytest.approx(0.8, abs=1e-6) and 0.5 < s["mass_near_peak"] < 0.6
    flat = heatmap_statistics(np.full(SHAPE, 0.1), radius=4.5, raw_peak=1e-4)
    assert flat["peak"] == 1e-4 and flat["mass_near_peak"] < 0.02 and flat["second_peak"] == pytest.approx(1.0)
    empty = heatmap_statistics(np.zeros(SHAPE), radius=4.5)
    assert empty["mass_near_peak"] == 0.0 and empty["second_peak"] == 1.0


def test_confidence_against_the_validation_reference():
    cases = [heatmap_statistics(blob(c, sigma), 4.5, raw_peak=p)
             for c, sigma, p in (((8, 8, 8), 1.5, 0.02), ((12, 20, 16), 2.0, 0.015))]
    ref = reference_statistics(cases)
    assert ref["n"] == 2 and ref["min_peak"] == 0.015 and ref["max_spread"] == pytest.approx(np.sqrt(3) * 2, rel=0.02)
    good = assess_confidence(heatmap_statistics(blob((5, 5, 5)), 4.5, raw_peak=0.018), ref)
    assert good == {"confident": True, "action": "crop", "reasons": [], "second_peak_limit": 0.2}
    two = np.maximum(blob((6, 8, 8)), 0.9 * blob((18, 24, 24)))
    verdict = assess_confidence(heatmap_statistics(two, 4.5, raw_peak=0.01), ref)
    assert verdict["action"] == "cover_peaks" and "second peak at 90%" in verdict["reasons"][0]
    weak = assess_confidence(heatmap_statistics(blob((5, 5, 5)), 4.5, raw_peak=0.005), ref)
    assert weak["action"] == "whole_volume" and "under half the weakest validation peak" in weak["reasons"][0]
    diffuse = assess_confidence(heatmap_statistics(blob((12, 16, 16), 6.0), 4.5, raw_peak=0.02), ref)
    assert diffuse["action"] == "whole_volume" and not diffuse["confident"]
    # without a reference (an older locator) only the fixed shape rules apply
    assert assess_confidence(heatmap_statistics(two, 4.5), None)["action"] == "cover_peaks"
    assert assess_confidence(heatmap_statistics(blob((5, 5, 5)), 4.5), None)["confident"]


def test_strong_peaks_and_the_box_covering_them():
    two = np.maximum(blob((6, 8, 8)), 0.8 * blob((18, 24, 24))) + 0.1 * blob((6, 24, 8))
    peaks = strong_peaks(two, radius=3)
    assert [p.tolist() for p in peaks] == [[6, 8, 8], [18, 24, 24]]  # the 0.1 blob is under a fifth of the highest
    box = box_around_points(peaks, (8, 8, 8), SHAPE)
    assert box == [[2, 22], [4, 28], [4, 28]]  # 4 voxels each side of each peak
    assert box_around_points(peaks, (16, 32, 32), SHAPE) == [[0, 24], [0, 32], [0, 32]]  # clipped to the image


def test_touched_faces_ignore_the_image_border_and_grow_box_moves_only_those():
    image = (40, 40, 40)
    box = [[0, 16], [10, 26], [20, 36]]
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[0, 5, 5] = 1      # low z face: the image border, nothing beyond
    labels[7, 15, 7] = 1     # high y face: inside the image
    labels[7, 7, 0] = 1      # low x face: inside the image
    assert touched_faces(labels, box, image) == [(1, 1), (2, 0)]
    assert grow_box(box, [(1, 1), (2, 0)], image, (8, 8, 8)) == [[0, 16], [10, 34], [12, 36]]
    assert grow_box([[0, 16], [30, 40], [0, 4]], [(1, 1), (2, 0)], image, (8, 8, 8)) == [[0, 16], [30, 40], [0, 4]]
