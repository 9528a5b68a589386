"""Preprocessing: crop to non-zero, resample, normalise; the inverse mapping for prediction."""

from segforge.preprocessing.case import case_seed, preprocess_case, preprocessing_version
from segforge.preprocessing.dataset_runner import case_is_done, preprocess_dataset
from segforge.preprocessing.inverse import (
    original_to_preprocessed_index,
    preprocessed_geometry,
    preprocessed_to_original_index,
    probabilities_to_labels,
    restore_to_original,
)
from segforge.preprocessing.normalization import NORMALIZATION_SCHEMES, normalize_image
from segforge.preprocessing.resampling import resample_image, resample_label, resample_probabilities, resampled_shape

__all__ = [
    "case_is_done",
    "case_seed",
    "preprocess_case",
    "preprocess_dataset",
    "preprocessing_version",
    "NORMALIZATION_SCHEMES",
    "normalize_image",
    "original_to_preprocessed_index",
    "preprocessed_geometry",
    "preprocessed_to_original_index",
    "probabilities_to_labels",
    "resample_image",
    "resample_label",
    "resample_probabilities",
    "resampled_shape",
    "restore_to_original",
]
