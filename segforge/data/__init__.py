"""Training data: cross-validation splits, patch sampling, augmentation and batch loaders."""

from segforge.data.augmentation import AugmentationSettings, sample_region_size, training_transforms, validation_transforms
from segforge.data.loader import (
    TrainingBatches,
    ValidationBatches,
    close_loader,
    default_num_workers,
    make_loader,
    worker_seeds,
)
from segforge.data.patch_sampler import CaseStore, PatchSampler, list_preprocessed_cases, read_region
from segforge.data.slice_stack import adjacent_slice_indices, stack_adjacent_slices
from segforge.data.splits import SPLITS_FILE, fold_cases, kfold_splits, load_or_create_splits, parse_fold

__all__ = [
    "AugmentationSettings",
    "sample_region_size",
    "training_transforms",
    "validation_transforms",
    "TrainingBatches",
    "ValidationBatches",
    "close_loader",
    "default_num_workers",
    "make_loader",
    "worker_seeds",
    "CaseStore",
    "PatchSampler",
    "list_preprocessed_cases",
    "read_region",
    "adjacent_slice_indices",
    "stack_adjacent_slices",
    "SPLITS_FILE",
    "fold_cases",
    "kfold_splits",
    "load_or_create_splits",
    "parse_fold",
]
