"""Metrics on hand-made masks with known answers."""

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from segforge.evaluation.metrics import class_metrics, dice, hd95, iou, surface_dice, surface_distances, surface_voxels

SPACING = (3.0, 1.0, 0.5)  # anisotropic (z, y, x) mm


def cube(shape, start, size=10):
    m = np.zeros(shape, bool)
    m[tuple(slice(s, s + size) for s in start)] = True
    return m


def test_cubes_shifted_by_two_voxels():
    ref = cube((20, 20, 20), (2, 5, 5))
    pred = cube((20, 20, 20), (4, 5, 5))  # shifted 2 voxels = 6 mm along z
    assert dice(ref, pred) == pytest.approx(0.8)  # 2 * 800 / 2000
    assert iou(ref, pred) == pytest.approx(800 / 1200)
    # independent check of the surface distances with a k-d tree on voxel centres
    pts = lambda m: np.argwhere(surface_voxels(m)) * np.asarray(SPACING)
    d_pr = cKDTree(pts(ref)).query(pts(pred))[0]
    d_rp = cKDTree(pts(pred)).query(pts(ref))[0]
    a, b = surface_distances(ref, pred, SPACING)
    np.testing.assert_allclose(np.sort(a), np.sort(d_pr))
    np.testing.assert_allclose(np.sort(b), np.sort(d_rp))
    assert hd95(ref, pred, SPACING) == pytest.approx(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
    assert d_pr.max() == pytest.approx(6.0)


def test_parallel_plates_have_known_distances():
    ref = np.zeros((10, 8, 8), bool)
    pred = np.zeros((10, 8, 8), bool)
    ref[2, 1:7, 1:7] = True
    pred[4, 1:7, 1:7] = True  # every voxel 2 slices = 6 mm away
    assert dice(ref, pred) == 0.0
    assert hd95(ref, pred, SPACING) == pytest.approx(6.0)
    assert surface_dice(ref, pred, SPACING, tolerance_mm=1.0) == 0.0
    assert surface_dice(ref, pred, SPACING, tolerance_mm=6.0) == 1.0


def test_identical_masks_are_perfect():
    m = cube((12, 12, 12), (1, 1, 1), 5)
    values = class_metrics(m, m, SPACING)
    assert values["dice"] == 1.0 and values["iou"] == 1.0
    assert values["hd95"] == 0.0 and values["surface_dice"] == 1.0
    assert values["fp"] == 0 and values["fn"] == 0 and values["tp"] == 125


def test_empty_masks():
    empty = np.zeros((4, 5, 6), bool)
    full = np.zeros((4, 5, 6), bool)
    full[1, 1, 1] = True
    both = class_metrics(empty, empty, SPACING)
    assert all(math.isnan(both[k]) for k in ("dice", "iou", "hd95", "surface_dice"))
    missed = class_metrics(full, empty, SPACING)
    assert missed["dice"] == 0.0 and missed["surface_dice"] == 0.0
    assert missed["hd95"] == pytest.approx(math.sqrt(12**2 + 5**2 + 3**2))  # image diagonal in mm
