"""dataset.json labels: plain, regions with regions_class_order, an ignore label, a subset; one line per mistake."""

from __future__ import annotations

import numpy as np
import pytest

from segforge.errors import InputError
from segforge.io.labels import parse_label_scheme, select_labels

BRATS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}


def test_plain_labels_are_softmax_outputs_in_value_order():
    scheme = parse_label_scheme({"background": 0, "b": 2, "a": 1})
    assert scheme.classes == [("background", 0), ("a", 1), ("b", 2)] and scheme.num_outputs == 3
    assert scheme.is_identity and scheme.targets == [1, 2] and scheme.foreground_names == ["a", "b"]


def test_regions_paint_their_values_in_order():
    scheme = parse_label_scheme(BRATS, [1, 2, 3])
    assert scheme.is_regions and scheme.num_outputs == 3 and scheme.targets == [(1, 2, 3), (2, 3), (3,)]
    p = np.zeros((3, 1, 1, 4), np.float32)
    p[0, ..., 1:] = 0.9  # whole tumour at x >= 1
    p[1, ..., 2:] = 0.8  # core at x >= 2
    p[2, ..., 3] = 0.7  # enhancing at x = 3
    assert scheme.probabilities_to_labels(p)[0, 0].tolist() == [0, 1, 2, 3]
    lookup = scheme.training_lookup()
    assert lookup.tolist() == [0, 1, 2, 3]


def test_ignore_label_is_never_an_output_and_maps_to_the_ignore_index():
    scheme = parse_label_scheme({"background": 0, "liver": 1, "ignore": 2})
    assert scheme.num_outputs == 2 and scheme.ignore_label == 2 and scheme.ignore_index == 2
    assert scheme.targets == [1] and not scheme.is_identity and 2 in scheme.raw_values
    assert scheme.foreground_values == [1]
    regions = parse_label_scheme({**BRATS, "ignore": 4}, [1, 2, 3])
    assert regions.num_outputs == 3 and regions.ignore_index == 4 and regions.training_lookup()[4] == 4


def test_a_subset_keeps_the_dataset_values_and_makes_the_others_background():
    scheme = select_labels(parse_label_scheme({"background": 0, "kidney": 1, "tumor": 2, "cyst": 3}),
                           ["kidney", "cyst"])
    assert scheme.classes == [("background", 0), ("kidney", 1), ("cyst", 3)]
    assert scheme.training_lookup().tolist() == [0, 1, 0, 2]  # tumour -> background, cyst -> output 2
    probabilities = np.zeros((3, 1, 1, 3), np.float32)
    probabilities[[0, 1, 2], 0, 0, [0, 1, 2]] = 1
    assert scheme.probabilities_to_labels(probabilities)[0, 0].tolist() == [0, 1, 3]  # written as the dataset's
    with pytest.raises(InputError, match=r"unknown label 'kidny'; did you mean 'kidney'"):
        select_labels(parse_label_scheme({"background": 0, "kidney": 1}), ["kidny"])
    regions = select_labels(parse_label_scheme(BRATS, [1, 2, 3]), ["tumor core"])
    assert regions.targets == [(2, 3)] and regions.regions_class_order == (2,)


@pytest.mark.parametrize("labels, order, message", [
    (BRATS, None, "region-based labels need \"regions_class_order\""),
    (BRATS, [1, 2], "one label value per region \\(3"),
    ({"background": 0, "a": [1, -2]}, None, "must list non-negative integer"),
    ({"background": 0, "a": 1, "ignore": 1}, None, "ignore label's value 1 is also"),
    ({"background": 0, "a": 1}, [1], "no label is a region"),
    ({"a": 1}, None, "background as 0"),
    ({"background": 0, "a": 1, "b": 1}, None, "two names to the same value"),
])
def test_mistakes_are_one_clear_line(labels, order, message):
    with pytest.raises(InputError, match=message):
        parse_label_scheme(labels, order, "dataset.json")
