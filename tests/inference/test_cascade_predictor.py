"""Cascade prediction with hand-made networks, so the expected output can be worked out."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from segforge.cascade.heatmaps import gaussian_heatmap
from segforge.inference.cascade_predictor import CascadePredictor
from segforge.inference.registry import create_predictor
from segforge.io.geometry import Geometry

from helpers.cascade_dataset import tiny_plans
from helpers.inference_fixtures import write_model_folder


class FixedLocator(nn.Module):
    """Outputs a Gaussian (sigma 1.5) at the canvas position of ``world`` on ``geometry_fn``'s grid."""

    def __init__(self, point_canvas):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.point = point_canvas

    def forward(self, x):
        h = gaussian_heatmap(x.shape[2:], self.point, 1.5)
        return torch.from_numpy(h)[None, None].repeat(x.shape[0], 1, 1, 1, 1) + 0 * self.w


class AlwaysForeground(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros((x.shape[0], 2, *x.shape[2:]))
        out[:, 1] = 4.0
        return out + 0 * self.w


@pytest.fixture
def model(tmp_path):
    torch.set_num_threads(1)
    plans = tiny_plans(crop=(16, 24, 32))
    write_model_folder(tmp_path / "results", plans, config="locator", trainer="LocatorTrainer", outputs=1)
    return write_model_folder(tmp_path / "results", plans, config="cascade_fullres",
                              trainer="CascadeSegmentationTrainer", outputs=2)


def test_create_predictor_picks_the_cascade_and_output_is_on_the_input_grid(model):
    predictor = create_predictor(model, device="cpu", tta=False)
    assert isinstance(predictor, CascadePredictor)
    geometry = Geometry((1.5, 1.0, 0.9), (12.0, -30.0, 7.5), (0, 1, 0, -1, 0, 0, 0, 0, 1), (30, 50, 60))
    image = np.random.default_rng(0).normal(size=(30, 50, 60)).astype(np.float32)
    labels, probabilities = predictor.predict_case(image, geometry, return_probabilities=True)
    assert labels.shape == geometry.shape
    assert probabilities.shape == (2, *geometry.shape)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-4)


def test_crop_is_placed_around_the_located_centroid(model, tmp_path):
    # the plain crop (safeguards off: an always-foreground segmenter would make the crop grow)
    predictor = CascadePredictor(model, device="cpu", tta=False, save_locator=True, guard=False)
    geometry = Geometry((1.0, 1.0, 1.0), (5.0, 6.0, 7.0), np.eye(3).ravel(), (64, 64, 64))
    # locator grid: 32^3 at 2 mm, the canvas is exactly the image; peak at locator voxel (10, 20, 12)
    predictor.locator_networks = [FixedLocator((10.0, 20.0, 12.0))]
    predictor.networks = [AlwaysForeground()]
    image = np.random.default_rng(1).normal(size=(64, 64, 64)).astype(np.float32)
    data, properties = predictor.preprocess(image, geometry)
    probabilities = predictor.predict_preprocessed(data, properties)
    result = properties["cascade_result"]
    # locator voxel i at 2 mm is full-res voxel 2 i + 0.5
    np.testing.assert_allclose(result["centroid_voxel"], [20.5, 40.5, 24.5], atol=0.05)
    np.testing.assert_allclose(result["centroid_world"], geometry.index_to_world([20.5, 40.5, 24.5]), atol=0.05)
    assert result["crop_box"] == [[13, 29], [29, 53], [9, 41]]
    fg = probabilities.argmax(0).numpy() == 1
    expected = np.zeros_like(fg)
    expected[13:29, 29:53, 9:41] = True
    np.testing.assert_array_equal(fg, expected)

    target = tmp_path / "out" / "case_x.nii.gz"
    target.parent.mkdir()
    predictor.export_extras(properties, target)
    saved = json.loads((tmp_path / "out" / "case_x_locator.json").read_text())
    np.testing.assert_allclose(saved["centroid_world"], result["centroid_world"])
    from segforge.io.image import read_image

    heat, heat_geometry = read_image(tmp_path / "out" / "case_x_locator_heatmap.nii.gz")
    assert heat.shape == (32, 32, 32) and heat_geometry.spacing == (2.0, 2.0, 2.0)
    assert np.unravel_index(np.argmax(heat), heat.shape) == (10, 20, 12)


def test_missing_locator_folder_is_a_clear_error(model):
    import shutil

    from segforge.errors import InputError

    shutil.rmtree(model.parent / "LocatorTrainer__locator")
    with pytest.raises(InputError, match="locator model folder is missing"):
        create_predictor(model, device="cpu")


def test_segforge_predict_save_locator(model, tmp_path, monkeypatch, capsys):
    from segforge.cli.predict import main
    from segforge.io.image import read_image, write_image

    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(), (40, 48, 56))
    (tmp_path / "in").mkdir()
    write_image(np.random.default_rng(2).normal(size=geometry.shape).astype(np.float32), geometry,
                tmp_path / "in" / "scan_0000.nii.gz")
    code = main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(model), "--device", "cpu",
                 "--disable-tta", "--save-locator"])
    assert code == 0, capsys.readouterr()
    labels, out_geometry = read_image(tmp_path / "out" / "scan.nii.gz")
    assert out_geometry.same_grid(geometry)
    info = json.loads((tmp_path / "out" / "scan_locator.json").read_text())
    assert len(info["centroid_world"]) == 3
    assert (tmp_path / "out" / "scan_locator_heatmap.nii.gz").is_file()
