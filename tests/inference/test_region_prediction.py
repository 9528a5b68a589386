"""Region-based models predict one sigmoid per region and write the label map by painting each region's
regions_class_order value in order; the ignore label is never written; a label subset writes the dataset's values."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from helpers.inference_fixtures import blob_image, odd_geometry, write_model_folder
from helpers.plans import tiny_configuration, tiny_plans
from segforge.inference.registry import create_predictor
from segforge.planning.plans import Plans

REGIONS = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": [3], "ignore": 4}


class ConstantLogits(nn.Module):
    """Logits ``bias[k]`` at every voxel (what a network that learnt only its biases predicts)."""

    def __init__(self, bias):
        super().__init__()
        self.bias = torch.tensor(bias, dtype=torch.float32)

    def forward(self, x):
        shape = (x.shape[0], len(self.bias), *x.shape[2:])
        return self.bias.view(1, -1, *[1] * (x.ndim - 2)).expand(shape) + 0 * x[:, :1]


def _predict(folder, bias):
    predictor = create_predictor(folder, device="cpu", tta=False)
    predictor.networks = [ConstantLogits(bias)]
    return predictor, predictor.predict_case(blob_image(), odd_geometry(), return_probabilities=True)


def test_regions_are_sigmoids_painted_in_regions_class_order(folders):
    torch.set_num_threads(1)
    plain = tiny_plans(tiny_configuration(median_shape=(10, 20, 20)))
    plans = Plans.from_dict({**plain.to_dict(), "labels": REGIONS, "regions_class_order": [1, 2, 3]})
    folder = write_model_folder(folders / "results", plans)
    predictor, (labels, probabilities) = _predict(folder, [5.0, 5.0, -5.0])
    assert predictor.num_classes == 3
    # by hand: sigmoid(5) = 0.9933 for whole and core, sigmoid(-5) = 0.0067 for enhancing; no background channel
    np.testing.assert_allclose(probabilities[:, 4, 10, 9], [0.99331, 0.99331, 0.00669], atol=1e-4)
    assert np.all(labels == 2)  # whole paints 1, then core paints 2 over it; enhancing is below one half
    _, (labels, _) = _predict(folder, [5.0, -5.0, 5.0])
    assert np.all(labels == 3)  # enhancing, painted last
    _, (labels, _) = _predict(folder, [-5.0, -5.0, -5.0])
    assert np.all(labels == 0)
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"]["whole"] == [1, 2, 3]


def test_an_ignore_label_is_never_written_and_a_subset_writes_the_dataset_values(folders):
    torch.set_num_threads(1)
    plans = tiny_plans(tiny_configuration(median_shape=(10, 20, 20)),
                       labels={"background": 0, "liver": 1, "kidney": 3, "ignore": 5})
    plans.dropped_labels = {"gallbladder": 2}
    folder = write_model_folder(folders / "results", plans)
    predictor, (labels, probabilities) = _predict(folder, [0.0, 1.0, 3.0])  # background, liver, kidney
    assert predictor.num_classes == 3 and probabilities.shape[0] == 3
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-4)  # softmax over the three outputs
    assert np.all(labels == 3)  # output 2 (kidney) writes the dataset's value 3, not 2
    _, (labels, _) = _predict(folder, [0.0, 3.0, 1.0])
    assert np.all(labels == 1)
