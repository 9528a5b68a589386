"""Every registered predictor predicts a case onto its input's grid; kinds and unknown names."""

import numpy as np
import pytest
import torch

from helpers.cascade_dataset import tiny_plans as cascade_plans
from helpers.inference_fixtures import blob_image, odd_geometry, tiny_plans, write_model_folder

from segforge.errors import InputError
from segforge.inference.registry import PREDICTORS, create_predictor, look_up_predictor, predictor_kind


def plain_folder(results):
    return write_model_folder(results, tiny_plans())


def cascade_folder(results):
    plans = cascade_plans(crop=(16, 24, 32))
    write_model_folder(results, plans, config="locator", trainer="LocatorTrainer", outputs=1)
    return write_model_folder(results, plans, config="cascade_fullres", trainer="CascadeSegmentationTrainer")


# predictor -> a model folder it predicts with: a new predictor must say here what it takes
MODEL_FOLDERS = {"plain": plain_folder, "cascade": cascade_folder}


def test_every_registered_predictor_has_a_smoke_model():
    assert set(MODEL_FOLDERS) == set(PREDICTORS)


@pytest.mark.parametrize("kind", sorted(PREDICTORS))
def test_every_predictor_predicts_onto_the_input_grid(kind, folders):
    torch.set_num_threads(1)
    folder = MODEL_FOLDERS[kind](folders / "results")
    predictor = create_predictor(folder, device="cpu", tta=False)
    assert type(predictor) is PREDICTORS[kind] and predictor_kind(predictor.configuration) == kind
    image, geometry = blob_image(), odd_geometry()
    labels, probabilities = predictor.predict_case(image, geometry, return_probabilities=True)
    assert labels.shape == geometry.shape and probabilities.shape == (predictor.num_classes, *geometry.shape)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-4)
    assert set(np.unique(labels)) <= set(range(predictor.num_classes))


def test_a_locator_has_no_predictor_and_unknown_names_answer_did_you_mean():
    plans = cascade_plans()
    with pytest.raises(InputError, match="locator configuration; predict with the segmentation configuration"):
        predictor_kind(plans.configuration("locator"))
    with pytest.raises(InputError, match="unknown predictor 'cascde'; did you mean 'cascade'"):
        look_up_predictor("cascde")
