"""Fixtures of the reliability tests: the SEGFORGE_* folders made, a tiny model, tiny datasets."""

from __future__ import annotations

import pytest
import torch

from helpers.inference_fixtures import tiny_plans, write_case, write_model_folder


@pytest.fixture
def folders(folders):
    """The test's SEGFORGE_* folders (tests/conftest.py: raw, preprocessed, results), made."""
    for sub in ("raw", "preprocessed", "results"):
        (folders / sub).mkdir()
    torch.set_num_threads(1)
    return folders


@pytest.fixture
def model(folders):
    """A tiny untrained model (dataset 987) in the real checkpoint format."""
    return write_model_folder(folders / "results", tiny_plans())


@pytest.fixture
def images(folders):
    """Three readable input images for the tiny model."""
    folder = folders / "in"
    for name in ("a", "b", "c"):
        write_case(folder, name)
    return folder
