"""Labels made on the device (the GPU path of Predictor.restore) equal labels from the restored probabilities."""

import numpy as np
import torch

from segforge.inference.export import probabilities_to_labels, restore_labels, restore_probabilities
from segforge.io.geometry import Geometry


def test_labels_class_by_class_equal_the_argmax_of_the_restored_probabilities():
    rng = np.random.default_rng(0)
    grid = (9, 12, 10)
    logits = torch.from_numpy(rng.normal(size=(4, *grid)).astype(np.float32) * 3)
    logits[1, 3:6, 4:8, 2:7] += 8  # a block of class 1 and ties nowhere
    probabilities = torch.softmax(logits, 0)
    geometry = Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), (24, 30, 28))
    properties = {"original_geometry": geometry.to_dict(), "crop_box": [[3, 20], [2, 29], [5, 25]],
                  "shape_after_crop": [17, 27, 20], "preprocessed_shape": list(grid)}
    expected = probabilities_to_labels(restore_probabilities(probabilities, properties))
    labels = restore_labels(probabilities, properties)
    assert labels.dtype == np.uint8 and labels.shape == (24, 30, 28)
    np.testing.assert_array_equal(labels, expected)
    assert (labels == 1).sum() > 50 and labels[0].max() == 0  # the block, and background outside the crop
    half = restore_labels(probabilities.half(), properties)  # float16 probabilities, as on a GPU
    assert (half != expected).mean() < 0.01
