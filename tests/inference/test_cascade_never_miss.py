"""The cascade predictor with its safeguards, on planted misses: a hand-made locator points where the
test says, and a threshold segmenter marks every bright voxel, so the right answer is known."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from segforge.cascade.heatmaps import gaussian_heatmap
from segforge.inference.cascade_predictor import CascadePredictor
from segforge.io.geometry import Geometry
from segforge.networks import build_network
from segforge.planning.plans import (
    CascadeSettings,
    ChannelNormalization,
    Configuration,
    LocatorSettings,
    NetworkTopology,
    Plans,
    ResamplingSettings,
)

GEOMETRY = Geometry((1.0, 1.0, 1.0), (5.0, 6.0, 7.0), tuple(np.eye(3).ravel()), (64, 64, 64))  # the locator grid (2 mm) is then 32^3 = its canvas


def _topology():
    return NetworkTopology(features_per_stage=[4, 8], kernel_sizes=[[3, 3, 3]] * 2, strides=[[1, 1, 1], [2, 2, 2]])


def _plans():
    norm = [ChannelNormalization("zscore")]
    locator = Configuration(name="locator", kind="locator", spacing=[2.0, 2.0, 2.0], patch_size=[32, 32, 32],
                            batch_size=2, network=_topology(), normalization=norm, resampling=ResamplingSettings(),
                            median_shape=[32, 32, 32], crop_to_nonzero=False, locator=LocatorSettings(sigma_min=1.5))
    seg = Configuration(name="cascade_fullres", kind="segmentation", spacing=[1.0, 1.0, 1.0], patch_size=[16, 16, 16],
                        batch_size=2, network=_topology(), normalization=norm, resampling=ResamplingSettings(),
                        median_shape=[64, 64, 64], crop_to_nonzero=False,
                        cascade=CascadeSettings(crop_size=[16, 16, 16], expected_locator_error_mm=2.0))
    return Plans("Dataset951_NeverMiss", {"0": "MR"}, {"background": 0, "target": 1},
                 {"locator": locator, "cascade_fullres": seg}, "cascade_fullres", 8.0)


def _folder(root, plans, trainer, configuration, n_out, validation=None):
    folder = root / plans.dataset_name / f"{trainer}__{configuration}"
    (folder / "fold_0").mkdir(parents=True)
    plans.save(folder / "plans.json")
    net = build_network(plans.configurations[configuration], 1, n_out)
    torch.save({"network_state": net.state_dict(), "configuration": configuration, "n_heatmaps": 1,
                "trainer": trainer, "plans_version": plans.configurations[configuration].version()},
               folder / "fold_0" / "checkpoint_final.pt")
    if validation is not None:
        (folder / "fold_0" / "locator_validation.json").write_text(json.dumps(validation))
    return folder


class PlantedLocator(nn.Module):
    """KL logits whose softmax is the sum of the given Gaussians (sigma 1.5) plus a floor."""

    def __init__(self, blobs, floor=1e-6):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.blobs, self.floor = blobs, floor

    def forward(self, x):
        h = sum(w * gaussian_heatmap(x.shape[2:], c, 1.5) for c, w in self.blobs) + self.floor
        return torch.from_numpy(np.log(h).astype(np.float32))[None, None].repeat(x.shape[0], 1, 1, 1, 1) + 0 * self.w


class Threshold(nn.Module):
    """Foreground where the (z-scored) input is above 2: the bright boxes, never the faint noise."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        fg = (x[:, :1] > 2.0).float() * 8 - 4
        return torch.cat([-fg, fg], 1) + 0 * self.w


@pytest.fixture
def predictor(tmp_path):
    torch.set_num_threads(1)
    plans = _plans()
    validation = {"confidence_reference": {"n": 3, "min_peak": 0.01, "min_mass_near_peak": 0.9, "max_spread": 3.0,
                                           "max_second_peak": 0.05}, "confidence_radius_voxels": 5.5}
    _folder(tmp_path, plans, "LocatorTrainer", "locator", 1, validation)
    model = _folder(tmp_path, plans, "CascadeSegmentationTrainer", "cascade_fullres", 2)
    p = CascadePredictor(model, device="cpu", tta=False)
    p.networks = [Threshold()]
    return p


def _image(*boxes):
    image = np.random.default_rng(0).normal(0, 0.01, GEOMETRY.shape).astype(np.float32)
    label = np.zeros(GEOMETRY.shape, np.uint8)
    for box in boxes:
        image[tuple(slice(a, b) for a, b in box)] = 3.0
        label[tuple(slice(a, b) for a, b in box)] = 1
    return image, label


def _predict(predictor, image, blobs, floor=1e-6, guard=True, tmp_path=None):
    predictor.locator_networks = [PlantedLocator(blobs, floor)]
    predictor.guard = guard
    data, properties = predictor.preprocess(image, GEOMETRY)
    labels, _ = predictor.restore(predictor.predict_preprocessed(data, properties), properties)
    if tmp_path is not None:
        predictor.export_extras(properties, tmp_path / "case.nii.gz")
    return labels, predictor.last_cascade_record


def test_confident_and_whole_target_is_the_plain_crop_and_says_so(predictor, tmp_path):
    image, label = _image([[18, 24], [20, 26], [22, 28]])
    labels, record = _predict(predictor, image, [((10.25, 11.25, 12.25), 1.0)], tmp_path=tmp_path)
    assert record["decision"] == "crop" and record["confident"], record
    np.testing.assert_array_equal(labels, label)
    saved = json.loads((tmp_path / "case_cascade.json").read_text())
    assert saved["decision"] == "crop" and saved["boxes"] == record["boxes"]


def test_corner_target_cut_by_the_plain_crop_is_found_whole(predictor):
    image, label = _image([[46, 64], [0, 22], [40, 64]])  # 18 x 22 x 24 voxels against three image faces
    plain, record = _predict(predictor, image, [((27.25, 5.25, 25.75), 1.0)], guard=False)
    assert record["decision"] == "crop" and plain.sum() < label.sum()  # the plain crop cuts it, silently
    labels, record = _predict(predictor, image, [((27.25, 5.25, 25.75), 1.0)])
    assert record["decision"] == "grown crop" and record["growths"] >= 1
    np.testing.assert_array_equal(labels, label)


def test_two_targets_are_both_segmented(predictor):
    image, label = _image([[6, 12], [6, 12], [6, 12]], [[36, 42], [50, 56], [50, 56]])
    blobs = [((4.25, 4.25, 4.25), 1.0), ((19.25, 26.25, 26.25), 0.9)]
    plain, _ = _predict(predictor, image, blobs, guard=False)
    assert plain.sum() < label.sum()
    labels, record = _predict(predictor, image, blobs)
    assert not record["confident"] and record["decision"] == "grown crop"
    np.testing.assert_array_equal(labels, label)


def test_no_target_where_the_locator_looks_segments_the_whole_volume(predictor):
    image, label = _image([[40, 46], [2, 8], [56, 62]])
    labels, record = _predict(predictor, image, [((5.0, 25.0, 5.0), 1.0)], floor=1e-2)  # a weak blob on a floor
    assert record["decision"] == "whole volume" and not record["confident"] and record["reasons"]
    np.testing.assert_array_equal(labels, label)
    blank = np.zeros(GEOMETRY.shape, np.float32)  # no target at all (and no noise for the threshold to catch)
    empty, record = _predict(predictor, blank, [((5.0, 25.0, 5.0), 1.0)], floor=1e-2)
    assert record["decision"] == "whole volume"
    assert not empty.any()
