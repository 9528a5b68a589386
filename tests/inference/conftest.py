"""Fixtures of the inference tests (helpers live in tests/helpers/inference_fixtures.py)."""

import pytest
import torch


@pytest.fixture
def folders(folders, monkeypatch):
    """The test's SEGFORGE_* folders (tests/conftest.py), made, on one CPU thread, prediction on the CPU."""
    for name in ("raw", "preprocessed", "results"):
        (folders / name).mkdir()
    torch.set_num_threads(1)
    import segforge.inference.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "pick_device", lambda device=None: torch.device("cpu"))
    return folders
