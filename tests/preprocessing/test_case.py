import numpy as np
import pytest
import torch
from preprocessing_cases import dice, make_case, make_configuration

from segforge.errors import InputError
from segforge.io.geometry import Geometry
from segforge.preprocessing import (
    preprocess_case,
    preprocessed_geometry,
    preprocessed_to_original_index,
    preprocessing_version,
    probabilities_to_labels,
    restore_to_original,
)
from segforge.preprocessing.case import MAX_CLASS_LOCATIONS

CONTRACT_KEYS = {
    "case", "configuration", "plans_version", "original_geometry", "crop_box", "shape_after_crop",
    "preprocessed_shape", "preprocessed_spacing", "class_locations", "centroid_voxel", "centroid_world",
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_outputs_and_properties_follow_the_contract():
    image, label, geometry = make_case()
    configuration = make_configuration()
    data, seg, props = preprocess_case(image, geometry, configuration, label, rng_seed=1, case_name="c1")
    assert CONTRACT_KEYS <= set(props)
    assert data.dtype == np.float32 and data.flags.c_contiguous and seg.dtype == np.int16
    assert props["crop_box"] == [[1, 15], [10, 88], [6, 84]]
    assert props["shape_after_crop"] == [14, 78, 78]
    assert props["preprocessed_shape"] == list(seg.shape) == list(data.shape[1:]) == [14, 55, 55]
    np.testing.assert_allclose(props["preprocessed_spacing"], [5.0, 78 * 0.7 / 55, 78 * 0.7 / 55])
    assert props["plans_version"] == configuration.version()
    assert props["preprocessing_version"] == preprocessing_version(configuration)
    assert props["configuration"] == "3d_fullres" and props["case"] == "c1"
    assert Geometry.from_dict(props["original_geometry"]) == geometry
    # zscore_nonzero: zero outside the body, standardised inside
    inside = data[0][data[0] != 0]
    assert abs(inside.mean()) < 0.05 and abs(inside.std() - 1) < 0.05


def test_class_locations_are_seeded_samples_of_each_class():
    image, label, geometry = make_case(shape=(16, 160, 160), spacing=(5.0, 0.5, 0.5))
    configuration = make_configuration(spacing=(5.0, 0.5, 0.5))
    _, seg, props = preprocess_case(image, geometry, configuration, label, rng_seed=7)
    _, _, again = preprocess_case(image, geometry, configuration, label, rng_seed=7)
    _, _, other = preprocess_case(image, geometry, configuration, label, rng_seed=8)
    assert set(props["class_locations"]) == {"1", "2"}
    ones = np.asarray(props["class_locations"]["1"])
    assert (seg == 1).sum() > MAX_CLASS_LOCATIONS and len(ones) == MAX_CLASS_LOCATIONS
    assert (seg[tuple(ones.T)] == 1).all()
    twos = np.asarray(props["class_locations"]["2"])
    assert len(twos) == (seg == 2).sum() and (seg[tuple(twos.T)] == 2).all()
    assert props["class_locations"] == again["class_locations"]
    assert props["class_locations"]["1"] != other["class_locations"]["1"]


def test_centroid_is_the_foreground_centre_on_both_grids():
    image, label, geometry = make_case()
    _, seg, props = preprocess_case(image, geometry, make_configuration(), label)
    fg = np.argwhere(label > 0).mean(axis=0)
    np.testing.assert_allclose(preprocessed_to_original_index(props["centroid_voxel"], props), fg, atol=1e-9)
    np.testing.assert_allclose(props["centroid_world"], geometry.index_to_world(fg), atol=1e-9)
    np.testing.assert_allclose(props["centroid_voxel"], np.argwhere(seg > 0).mean(axis=0), atol=0.5)
    # the preprocessed grid's own geometry puts the centroid at the same world point
    np.testing.assert_allclose(preprocessed_geometry(props).index_to_world(props["centroid_voxel"]),
                               props["centroid_world"], atol=1e-6)


def test_no_label_and_empty_label():
    image, label, geometry = make_case()
    data, seg, props = preprocess_case(image, geometry, make_configuration())
    assert seg is None and props["class_locations"] == {} and props["centroid_voxel"] is None
    _, seg, props = preprocess_case(image, geometry, make_configuration(), np.zeros_like(label))
    assert (seg == 0).all() and props["centroid_world"] is None and props["class_locations"] == {}


def test_no_crop_keeps_the_whole_image_and_ct_scheme_clips():
    image, label, geometry = make_case()
    configuration = make_configuration(schemes=("ct",), crop_to_nonzero=False, spacing=(5.0, 0.7, 0.7))
    data, seg, props = preprocess_case(image, geometry, configuration, label)
    assert props["crop_box"] == [[0, 16], [0, 96], [0, 96]]
    assert data.shape == (1, 16, 96, 96)
    np.testing.assert_array_equal(seg, label)  # same grid: labels untouched
    assert data.min() >= (-200 - 40) / 100 - 1e-6 and data.max() <= (300 - 40) / 100 + 1e-6
    assert image.max() > 100  # the caller's image is not normalised in place


def test_bad_inputs_name_the_problem():
    image, label, geometry = make_case()
    with pytest.raises(InputError, match="label shape"):
        preprocess_case(image, geometry, make_configuration(), label[:-1], case_name="c1")
    with pytest.raises(InputError, match="expect 2 channel"):
        preprocess_case(image, geometry, make_configuration(schemes=("zscore", "zscore")), label)
    with pytest.raises(InputError, match="label values"):
        preprocess_case(image, geometry, make_configuration(), label.astype(np.int16) - 1)


@pytest.mark.parametrize("target_spacing", [(5.0, 1.0, 1.0), (3.0, 0.9, 0.9), (5.0, 0.5, 0.5)])
def test_round_trip_of_labels_through_preprocessing(target_spacing):
    image, label, geometry = make_case()
    configuration = make_configuration(spacing=target_spacing)
    _, seg, props = preprocess_case(image, geometry, configuration, label)
    restored = restore_to_original(seg, props, is_label=True)
    assert restored.shape == label.shape == tuple(geometry.shape)
    for c in (1, 2):
        assert dice(restored == c, label == c) > 0.98, (c, dice(restored == c, label == c))


def test_round_trip_of_probabilities():
    image, label, geometry = make_case()
    _, seg, props = preprocess_case(image, geometry, make_configuration(), label)
    probabilities = np.stack([(seg == c).astype(np.float32) for c in range(3)])
    restored = restore_to_original(probabilities, props, is_label=False)
    assert restored.shape == (3,) + tuple(geometry.shape) and restored.dtype == np.float32
    np.testing.assert_allclose(restored.sum(axis=0), 1.0, atol=1e-5)
    outside = np.ones(geometry.shape, bool)
    outside[tuple(slice(a, b) for a, b in props["crop_box"])] = False
    assert (restored[0][outside] == 1).all() and (restored[1:, outside] == 0).all()
    labels = probabilities_to_labels(restored)
    for c in (1, 2):
        assert dice(labels == c, label == c) > 0.98


def test_restore_refuses_an_array_of_the_wrong_shape():
    image, label, geometry = make_case()
    _, seg, props = preprocess_case(image, geometry, make_configuration(), label)
    with pytest.raises(ValueError, match="preprocessed grid"):
        restore_to_original(seg[:-1], props, is_label=True)


def test_tensors_are_restored_on_their_device_like_arrays():
    image, label, geometry = make_case()
    _, seg, props = preprocess_case(image, geometry, make_configuration(), label)
    probabilities = np.stack([(seg == c).astype(np.float32) for c in range(3)])
    expected = restore_to_original(probabilities, props, is_label=False)
    restored = restore_to_original(torch.from_numpy(probabilities), props, is_label=False)
    assert isinstance(restored, torch.Tensor)
    np.testing.assert_allclose(restored.numpy(), expected, atol=1e-6)
    labels = restore_to_original(torch.from_numpy(seg), props, is_label=True)
    np.testing.assert_array_equal(labels, restore_to_original(seg, props, is_label=True))


def test_float_label_files_with_integer_values_are_accepted():
    image, label, geometry = make_case()
    _, seg, props = preprocess_case(image, geometry, make_configuration(), label.astype(np.float64))
    _, seg_int, props_int = preprocess_case(image, geometry, make_configuration(), label)
    np.testing.assert_array_equal(seg, seg_int)
    assert props["class_locations"] == props_int["class_locations"]
    with pytest.raises(InputError, match="non-integer"):
        preprocess_case(image, geometry, make_configuration(), label + 0.5)
