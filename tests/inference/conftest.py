"""Fixtures of the inference tests (helpers live in inference_fixtures.py)."""

import pytest
import torch

from inference_fixtures import tiny_plans, write_model_folder


@pytest.fixture
def folders(tmp_path, monkeypatch):
    for name in ("raw", "preprocessed", "results"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("SEGFORGE_RAW", str(tmp_path / "raw"))
    monkeypatch.setenv("SEGFORGE_PREPROCESSED", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("SEGFORGE_RESULTS", str(tmp_path / "results"))
    torch.set_num_threads(1)
    import segforge.inference.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "pick_device", lambda device=None: torch.device("cpu"))
    return tmp_path


@pytest.fixture
def model_folder(folders):
    return write_model_folder(folders / "results", tiny_plans())
