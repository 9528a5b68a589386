"""Fixtures of the reliability tests: temporary SEGFORGE_* folders, a tiny model, tiny datasets."""

from __future__ import annotations

import pytest
import torch

import harness  # noqa: F401  (puts tests/inference and tests/data on sys.path)
from inference_fixtures import tiny_plans, write_case, write_model_folder


@pytest.fixture
def folders(tmp_path, monkeypatch):
    for name, sub in (("SEGFORGE_RAW", "raw"), ("SEGFORGE_PREPROCESSED", "pre"), ("SEGFORGE_RESULTS", "res")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(name, str(tmp_path / sub))
    torch.set_num_threads(1)
    return tmp_path


@pytest.fixture
def model(folders):
    """A tiny untrained model (dataset 987) in the real checkpoint format."""
    return write_model_folder(folders / "res", tiny_plans())


@pytest.fixture
def images(folders):
    """Three readable input images for the tiny model."""
    folder = folders / "in"
    for name in ("a", "b", "c"):
        write_case(folder, name)
    return folder
