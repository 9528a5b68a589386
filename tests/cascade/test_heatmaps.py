import numpy as np
import pytest

from segforge.cascade.heatmaps import (
    axis_sigmas,
    centroid_error_mm,
    gaussian_heatmap,
    heatmap_targets,
    label_centroids,
    soft_argmax,
)
from segforge.io.geometry import Geometry


def test_peak_is_one_on_a_voxel_and_symmetric():
    h = gaussian_heatmap((9, 11, 13), (4, 5, 6), 1.5)
    assert h.dtype == np.float32
    assert h[4, 5, 6] == pytest.approx(1.0)
    assert h.max() == pytest.approx(1.0)
    assert h[3, 5, 6] == pytest.approx(h[5, 5, 6])
    assert h[4, 5, 5] == pytest.approx(np.exp(-1 / (2 * 1.5**2)), rel=1e-6)


def test_spacing_makes_blob_round_in_mm():
    s = axis_sigmas(2.0, spacing=(3.0, 1.0, 1.0))
    np.testing.assert_allclose(s, [2 / 3, 2.0, 2.0])
    with pytest.raises(ValueError, match="one per axis"):
        axis_sigmas([1.0, 2.0])


@pytest.mark.parametrize(
    "center, sigma",
    [
        ((10.3, 12.71, 8.45), 1.5),  # interior, sub-voxel
        ((0.4, 12.2, 19.6), 2.0),  # cut by the border on two axes
        ((7.0, 0.0, 5.5), 4.0),  # wide blob whose peak sits on the border
        ((10.25, 12.5, 8.75), 0.8),  # narrow blob
    ],
)
def test_soft_argmax_recovers_subvoxel_centre(center, sigma):
    h = gaussian_heatmap((20, 24, 20), center, sigma)
    est = soft_argmax(h)
    assert np.abs(est - np.asarray(center)).max() < 0.1, (est, center)


def test_soft_argmax_with_anisotropic_spacing_world_error_in_mm():
    spacing = (4.0, 0.8, 0.8)
    geom = Geometry((spacing), (10.0, -20.0, 5.0), np.eye(3).ravel(), (12, 40, 40))
    center = np.array([5.37, 20.2, 17.9])
    h = gaussian_heatmap(geom.shape, center, 2.0, spacing=spacing)
    est = soft_argmax(h)
    err = centroid_error_mm(est, center, spacing)
    world_err = np.linalg.norm(geom.index_to_world(est) - geom.index_to_world(center))
    assert err["error_mm"] == pytest.approx(world_err, abs=1e-9)
    per_axis_voxels = np.abs(np.asarray(err["error_zyx_mm"])) / np.asarray(spacing)
    assert per_axis_voxels.max() < 0.1, per_axis_voxels


def test_soft_argmax_tolerates_noise_and_negative_values():
    rng = np.random.default_rng(0)
    center = (8.4, 9.6, 10.2)
    h = gaussian_heatmap((18, 20, 22), center, 2.0) + rng.normal(0, 0.02, (18, 20, 22))
    est = soft_argmax(h)
    assert np.abs(est - np.asarray(center)).max() < 0.3


def test_flat_heatmap_gives_argmax():
    h = np.zeros((5, 5, 5))
    np.testing.assert_array_equal(soft_argmax(h), [0, 0, 0])


def test_label_centroids_union_and_per_class():
    seg = np.zeros((10, 10, 10), np.int16)
    seg[1:3, 1:3, 1:3] = 1
    seg[6:8, 6:8, 6:8] = 2
    (union,) = label_centroids(seg, [1, 2], "union")
    np.testing.assert_allclose(union, [4, 4, 4])
    c1, c2, c3 = label_centroids(seg, [1, 2, 3], "per_class")
    np.testing.assert_allclose(c1, [1.5, 1.5, 1.5])
    np.testing.assert_allclose(c2, [6.5, 6.5, 6.5])
    assert c3 is None
    t = heatmap_targets(seg.shape, [c1, c3], 1.0)
    assert t.shape == (2, 10, 10, 10) and t[1].max() == 0
    with pytest.raises(ValueError, match="union"):
        label_centroids(seg, [1], "both")
