"""Preprocessing: crop to non-zero, resample, normalise; the inverse mapping for prediction.

Names are imported on first use (PEP 562), so a worker that needs only one of them does
not pay for importing the others (torch among them). Cropping to the non-zero region is
measured by the fingerprint and lives there (:mod:`segforge.fingerprint.cropping`).
"""

from importlib import import_module

_WHERE = {
    "case_is_done": "dataset_runner",
    "case_seed": "case",
    "preprocess_case": "case",
    "preprocess_dataset": "dataset_runner",
    "preprocessing_version": "case",
    "NORMALIZATION_SCHEMES": "normalization",
    "normalize_image": "normalization",
    "original_to_preprocessed_index": "inverse",
    "preprocessed_geometry": "inverse",
    "preprocessed_to_original_index": "inverse",
    "probabilities_to_labels": "inverse",
    "resample_image": "resampling",
    "resample_label": "resampling",
    "resample_probabilities": "resampling",
    "resampled_shape": "resampling",
    "restore_to_original": "inverse",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'segforge.preprocessing' has no attribute {name!r}")
    value = getattr(import_module(f"segforge.preprocessing.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
