"""The locator's whole-image batches: canvas, placement, augmentation that moves the centroid."""

import dataclasses

import numpy as np
import torch

from helpers.cascade_dataset import make_cascade_dataset, tiny_plans

from segforge.cascade.heatmaps import gaussian_heatmap, heatmap_batch, heatmap_targets
from segforge.cascade.locator_data import (
    LocatorBatches,
    LocatorCase,
    apply_augmentation,
    draw_augmentation,
    load_locator_cases,
    locator_canvas,
    place_on_canvas,
)


def test_canvas_is_a_multiple_of_16_and_holds_every_image():
    config = tiny_plans().configurations["locator"]
    assert locator_canvas(config, [(30, 20, 33)]) == (32, 32, 48)


def test_augmentation_moves_the_centroid_with_the_image():
    rng = np.random.default_rng(1)
    data = np.zeros((1, 20, 20, 20), np.float32)
    data[0, 5, 12, 7] = 1.0
    for symmetric in (False, True):
        for _ in range(5):
            aug = draw_augmentation(rng, (20, 20, 20), (32, 32, 32), symmetric, [np.array([5.0, 12.0, 7.0])],
                                    scale_range=0.0)
            out, (c,) = apply_augmentation(data, [np.array([5.0, 12.0, 7.0])], (32, 32, 32), aug)
            peak = np.unravel_index(np.argmax(out[0]), out.shape[1:])
            np.testing.assert_allclose(peak, c, atol=1e-6)
            assert symmetric or not aug.mirror_x
    # zoomed: a smooth blob's centre of mass follows the centroid
    blob = gaussian_heatmap((20, 20, 20), (8.0, 12.0, 9.0), 2.0)[None]
    aug = dataclasses.replace(draw_augmentation(rng, (20, 20, 20), (32, 32, 32), False, [np.array([8.0, 12.0, 9.0])]),
                              offset=(6, 6, 6), scale=1.1, intensity_scale=1.0, intensity_shift=0.0)
    out, (c,) = apply_augmentation(blob, [np.array([8.0, 12.0, 9.0])], (32, 32, 32), aug)
    com = (np.indices(out.shape[1:]) * out[0]).reshape(3, -1).sum(1) / out[0].sum()
    np.testing.assert_allclose(com, c, atol=0.05)


def test_training_placement_shifts_past_the_canvas_but_keeps_the_target_on_it():
    rng = np.random.default_rng(0)
    centroid = np.array([1.0, 10.0, 18.0])
    data = np.zeros((1, 20, 20, 20), np.float32)
    data[0, 1, 10, 18] = 1.0
    offsets = []
    for _ in range(200):
        aug = draw_augmentation(rng, (20, 20, 20), (24, 24, 24), False, [centroid])
        out, (c,) = apply_augmentation(data, [centroid], (24, 24, 24), aug)
        assert c is not None and np.all(c >= 2.0) and np.all(c <= 21.0)
        offsets.append(aug.offset)
    offsets = np.array(offsets)
    assert offsets.min() < 0 and offsets.max() > 4  # beyond the slack of 4 voxels, both ways
    # and a cut image lands where it should: the kept corner is the one on the canvas
    cut = place_on_canvas(np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3), (4, 4, 4), (-1, 2, 0))
    assert cut[0, 0, 2, 0] == 9.0 and cut[0, 1, 3, 2] == 23.0 and cut[0, 2:].sum() == 0 and cut[0, :, :2].sum() == 0


def test_batches_carry_centroids_that_make_the_targets(tmp_path):
    """A batch's target holds each sample's centroids on the canvas; the device-side heatmaps of
    those centroids equal the numpy targets, and an absent structure gives an empty map."""
    make_cascade_dataset(tmp_path, n_cases=2, classes=2, target="per_class")
    cases = load_locator_cases(tmp_path / "Dataset950_CascadeTiny" / "locator", ["case_000", "case_001"], [1, 2],
                               "per_class")
    batches = LocatorBatches(cases, (32, 32, 32), batch_size=3, symmetric=False, seed=4)
    state = batches.rng.bit_generator.state
    batch = next(batches)
    assert batch["data"].shape == (3, 1, 32, 32, 32) and batch["target"].shape == (3, 2, 3)
    batches.rng.bit_generator.state = state
    images, centroids, _ = batches.next()  # the same draws, unpacked
    np.testing.assert_array_equal(images, batch["data"])
    for b in range(3):
        expected = heatmap_targets((32, 32, 32), centroids[b], 2.0, (2.0, 2.0, 2.0))
        made = heatmap_batch((32, 32, 32), torch.from_numpy(batch["target"][b:b + 1]), 2.0, (2.0, 2.0, 2.0))[0]
        np.testing.assert_allclose(made.numpy(), expected, atol=1e-6)
    missing = torch.tensor([[[np.nan, np.nan, np.nan], [4.0, 5.0, 6.0]]])
    maps = heatmap_batch((8, 8, 8), missing, 1.0)
    assert maps[0, 0].abs().sum() == 0 and maps[0, 1, 4, 5, 6] == 1.0


def test_workers_draw_different_batches():
    """In a worker the generator is re-seeded from the worker's seed: two workers, two streams."""
    data = np.random.default_rng(0).normal(size=(1, 20, 20, 20)).astype(np.float32)
    case = LocatorCase("a", data, [np.array([10.0, 10.0, 10.0])], {})
    first, second = (LocatorBatches([case], (32, 32, 32), 2, False, seed=1) for _ in range(2))
    for worker, batches in enumerate((first, second)):
        np.random.seed(100 + worker)
        batches.set_thread_id(worker)
    assert not np.array_equal(next(first)["target"], next(second)["target"])
