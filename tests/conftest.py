"""Fixtures for every test: private SEGFORGE_* folders, a made-up device calibration, a tiny-plans factory, a
tiny model folder.

``segforge_folders`` is autouse: each test gets its own ``raw``, ``preprocessed`` and ``results`` folders
under its ``tmp_path`` and the three ``SEGFORGE_*`` variables pointing at them, so no
test reads or writes the folders a user exported (tests/test_folders_fixture.py proves it).
Subprocesses a test starts inherit them through ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.inference_fixtures import tiny_plans as tiny_model_plans
from helpers.inference_fixtures import write_model_folder
from helpers.plans import tiny_plans

FOLDERS = {"SEGFORGE_RAW": "raw", "SEGFORGE_PREPROCESSED": "preprocessed", "SEGFORGE_RESULTS": "results"}

# A made-up device calibration (round numbers): no test depends on, or pays for, measuring the machine.
FAKE_RATES = {
    "conv_gflops_3d": {"4": 5.0, "8": 10.0, "16": 20.0, "32": 40.0, "64": 40.0},
    "conv_gflops_2d": {"4": 5.0, "8": 10.0, "16": 20.0, "32": 40.0, "64": 40.0},
    "elementwise_gelems": 0.1,
    "layer_overhead_s": 0.001,
    "calibration_seconds": 0.0,
}


@pytest.fixture(autouse=True, scope="session")
def fake_device_calibration(tmp_path_factory):
    """``SEGFORGE_CACHE`` holds :data:`FAKE_RATES` for this machine's CPU (and GPU), so planning finds them
    instead of calibrating (subprocesses inherit it)."""
    import torch

    from segforge.planning import device_profile as dp

    previous = os.environ.get("SEGFORGE_CACHE")
    os.environ["SEGFORGE_CACHE"] = str(tmp_path_factory.mktemp("segforge_cache"))
    dp.store_rates(dp.device_signature("cpu", dp.cpu_name(), dp.training_threads()), FAKE_RATES)
    if torch.cuda.is_available():
        dp.store_rates(dp.device_signature("cuda", torch.cuda.get_device_properties(0).name, 0), FAKE_RATES)
    yield os.environ["SEGFORGE_CACHE"]
    if previous is None:
        os.environ.pop("SEGFORGE_CACHE", None)
    else:
        os.environ["SEGFORGE_CACHE"] = previous


@pytest.fixture(autouse=True)
def segforge_folders(tmp_path: Path, monkeypatch) -> Path:
    """``tmp_path``, where the test's ``raw``, ``preprocessed`` and ``results`` folders (the SEGFORGE_* ones)
    are made when something writes there (so a test that lists ``tmp_path`` sees only its own files)."""
    for variable, name in FOLDERS.items():
        monkeypatch.setenv(variable, str(tmp_path / name))
    return tmp_path


@pytest.fixture
def folders(segforge_folders: Path) -> Path:
    """The same folder by a short name (a test module may define its own ``folders``)."""
    return segforge_folders


@pytest.fixture
def make_plans():
    """``make_plans(*configurations, labels=..., channels=..., dataset=...) -> Plans`` (default: one tiny
    ``3d_fullres``); configurations come from ``helpers.plans.tiny_configuration(name, patch=..., ...)``."""
    return tiny_plans


@pytest.fixture
def model_folder(folders) -> Path:
    """``results/Dataset987_Tiny/SegmentationTrainer__3d_fullres`` with one fold of untrained weights."""
    return write_model_folder(folders / "results", tiny_model_plans())
