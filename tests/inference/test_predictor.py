"""Predictor and segforge.predict: exact labels through preprocessing and export, folds, checkpoints."""

import numpy as np
import pytest
import torch

from helpers.inference_fixtures import odd_geometry, tiny_plans, write_case, write_model_folder
import segforge
from segforge.errors import InputError
from segforge.inference.model import ModelFolder
from segforge.io.checkpoint import load_checkpoint
from segforge.inference.predictor import Predictor


class Threshold(torch.nn.Module):
    """Class 1 where the (normalised) input is positive."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x * 10], dim=1)


class Foreground(torch.nn.Module):
    """Class 1 everywhere the network looks."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])], dim=1)


def box_image(shape=(10, 20, 18)):
    image = np.zeros(shape, np.float32)
    image[3:7, 5:14, 4:12] = 2.0
    return image


@pytest.mark.parametrize("crop", [False, True], ids=["threshold-whole-image", "foreground-in-nonzero-crop"])
def test_exact_box_on_the_input_grid(folders, crop):
    """Whole image: a threshold network finds the box. Cropped to non-zero: the crop is the box,
    so a network answering "foreground" everywhere gives exactly the box after pasting back."""
    folder = write_model_folder(folders / "results", tiny_plans(crop=crop))
    predictor = Predictor(folder, tta=True)
    predictor.networks = [Foreground() if crop else Threshold()]
    image, geometry = box_image(), odd_geometry()
    [result] = segforge.predict([(image, geometry)], predictor=predictor, return_probabilities=True)
    labels, g = result
    assert g == geometry
    np.testing.assert_array_equal(labels, (image > 0).astype(np.uint8))
    assert result.probabilities.shape == (2, *image.shape)


def test_folds_are_averaged(folders):
    folder = write_model_folder(folders / "results", tiny_plans(), folds=("0", "1"))
    image, geometry = box_image(), odd_geometry()
    both = Predictor(folder, tta=False)
    assert both.folds == ["0", "1"]
    data, properties = both.preprocess(image[None], geometry)
    p0 = Predictor(folder, folds=[0], tta=False).predict_preprocessed(data, properties)
    p1 = Predictor(folder, folds=[1], tta=False).predict_preprocessed(data, properties)
    torch.testing.assert_close(both.predict_preprocessed(data, properties), (p0 + p1) / 2)


def test_predict_api_takes_paths_and_defaults_to_the_only_dataset(folders, model_folder):
    write_case(folders / "in", "x")
    write_case(folders / "in", "y")
    results = segforge.predict(folders / "in", tta=False)
    assert [r.name for r in results] == ["x", "y"]
    assert results[0].labels.shape == (10, 20, 18) and results[0].probabilities is None


def test_final_falls_back_to_latest_with_a_warning(folders):
    folder = write_model_folder(folders / "results", tiny_plans(), checkpoint="latest")
    with pytest.warns(UserWarning, match="checkpoint_final.pt not found"):
        predictor = Predictor(folder, checkpoint="final", tta=False)
    assert predictor.folds == ["0"]
    with pytest.raises(InputError, match="no checkpoint_best.pt for fold 0"):
        Predictor(folder, checkpoint="best")


class NotAllowed:
    pass


def test_checkpoint_with_code_is_refused(folders, model_folder):
    path = model_folder / "fold_0" / "checkpoint_final.pt"
    torch.save({"network_state": {}, "evil": NotAllowed()}, path)
    with pytest.raises(InputError, match="cannot load checkpoint"):
        load_checkpoint(path)


def test_model_folder_lists_folds(folders):
    folder = write_model_folder(folders / "results", tiny_plans(), folds=("1", "0", "all"))
    model = ModelFolder.open(folder)
    assert model.available_folds() == ["0", "1", "all"]
    assert model.resolve_folds(None) == ["0", "1"]


def test_2d_configuration_predicts_slice_by_slice(folders):
    from segforge.planning.plans import NetworkTopology

    plans = tiny_plans(patch=(16, 16))
    configuration = plans.configurations.pop("3d_fullres")
    configuration.name, configuration.data_identifier = "2d", "2d"
    configuration.network = NetworkTopology([4, 8], [[3, 3], [3, 3]], [[1, 1], [2, 2]])
    plans.configurations["2d"] = configuration
    plans.default_configuration = "2d"
    folder = write_model_folder(folders / "results", plans, config="2d")
    predictor = Predictor(folder, tta=True)
    assert predictor.mirror_axes == (0, 1)
    labels, _ = predictor.predict_case(box_image(), odd_geometry())
    assert labels.shape == (10, 20, 18)
    predictor.networks = [Threshold()]
    labels, _ = predictor.predict_case(box_image(), odd_geometry())
    np.testing.assert_array_equal(labels, (box_image() > 0).astype(np.uint8))


def test_out_of_memory_falls_back_to_cpu_accumulation_then_single_windows(folders, model_folder, monkeypatch):
    predictor = Predictor(model_folder, tta=False, window_batch=3)
    data, properties = predictor.preprocess(box_image()[None], odd_geometry())
    expected = predictor.predict_preprocessed(data, properties)
    tried = []
    real = Predictor._fold_mean

    def fold_mean(self, data, accumulate, window_batch):
        tried.append((accumulate.type, window_batch))
        if accumulate.type != "cpu" or window_batch > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(self, data, accumulate, window_batch)

    monkeypatch.setattr(Predictor, "_fold_mean", fold_mean)
    monkeypatch.setattr(Predictor, "_accumulation_device", lambda self, shape: torch.device("meta"))
    with pytest.warns(UserWarning, match="out of"):
        result = predictor.predict_preprocessed(data, properties)
    torch.testing.assert_close(result, expected)
    assert tried == [("meta", 3), ("cpu", 3), ("cpu", 1)]
    assert predictor.window_batch == 1


def test_resampled_plan_still_predicts_on_the_input_grid(folders):
    """Plan spacing differs from the image's: the prediction is resampled back onto the input grid."""
    from segforge.evaluation.metrics import dice

    folder = write_model_folder(folders / "results", tiny_plans(spacing=(1.5, 1.6, 0.9)))
    predictor = Predictor(folder, tta=False)
    predictor.networks = [Threshold()]
    image, geometry = box_image(), odd_geometry()
    data, properties = predictor.preprocess(image[None], geometry)
    assert data.shape[1:] != image.shape  # really resampled
    labels, probabilities = predictor.predict_case(image, geometry, return_probabilities=True)
    assert labels.shape == geometry.shape and probabilities.shape == (2, *geometry.shape)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    # the threshold sits at 8 % of the box height, so blur from resampling grows the box by at
    # most one voxel; a shifted grid would miss part of the box or move its centre
    box, found = image > 0, labels == 1
    assert (box & found).sum() == box.sum()
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        b, f = np.flatnonzero(box.any(others)), np.flatnonzero(found.any(others))
        assert b[0] - 1 <= f[0] and f[-1] <= b[-1] + 1
    assert dice(box, found) > 0.75


def test_device_errors_are_input_errors():
    from segforge.inference.predictor import pick_device

    with pytest.raises(InputError, match="unknown device"):
        pick_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            pick_device("cuda")
