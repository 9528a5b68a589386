"""--mirror-axes, --fast and --bf16: what they change, and how bad combinations are refused."""

import numpy as np
import pytest
import torch

from helpers.inference_fixtures import blob_image, odd_geometry, write_case
from segforge.cli.predict import main, speed_options
from segforge.errors import InputError
from segforge.inference.predictor import FAST_MODE, Predictor
from segforge.inference.sliding_window import mirror_combinations


def test_mirror_axes_choose_the_flips(model_folder):
    assert Predictor(model_folder).mirror_axes == (0, 1, 2)
    assert Predictor(model_folder, mirror_axes=(1, 2)).mirror_axes == (1, 2)
    assert Predictor(model_folder, tta=False, mirror_axes=(1, 2)).mirror_axes == ()
    with pytest.raises(InputError, match="not distinct axes of a 3D model"):
        Predictor(model_folder, mirror_axes=(0, 3))


def test_fewer_mirror_axes_predict_the_mean_over_fewer_flips(model_folder):
    """Mirroring over y only = the mean of the plain and the y-flipped image's predictions (flipped back)."""
    data = torch.from_numpy(blob_image(shape=(8, 16, 16))[None])
    one = Predictor(model_folder, mirror_axes=(1,))
    plain = Predictor(model_folder, tta=False)
    expected = 0.5 * (plain._fold_mean(data, torch.device("cpu"), 4).log()
                      + plain._fold_mean(torch.flip(data, (2,)), torch.device("cpu"), 4).log().flip(2))
    got = one.predict_preprocessed(data, {})
    # softmax of the mean logits; compare through log-probabilities up to a per-voxel constant
    assert len(mirror_combinations(one.mirror_axes)) == 2
    diff = got.log() - torch.log_softmax(expected, 0)
    assert (diff - diff.mean(0, keepdim=True)).abs().max() < 1e-4


def test_bf16_stays_close_to_float32(model_folder):
    data = torch.from_numpy(blob_image(shape=(8, 16, 16))[None])
    a = Predictor(model_folder, tta=False).predict_preprocessed(data, {})
    b = Predictor(model_folder, tta=False, bf16=True).predict_preprocessed(data, {})
    assert b.dtype == torch.float32 and (a - b).abs().max() < 0.05


def test_speed_options_of_the_command_line():
    assert speed_options(True, None, None) == FAST_MODE["options"]
    assert speed_options(False, None, None) == {"step": 0.5, "mirror_axes": None}
    assert speed_options(False, 0.75, [1, 2]) == {"step": 0.75, "mirror_axes": [1, 2]}
    with pytest.raises(InputError, match="--fast sets the step"):
        speed_options(True, 0.5, None)
    with pytest.raises(InputError, match=r"--step must be in \(0, 1\]"):
        speed_options(False, 1.5, None)


def test_fast_prediction_runs_and_says_what_it_used(folders, model_folder, capsys):
    images = folders / "images"
    images.mkdir()
    write_case(images, "case_1", blob_image(), odd_geometry())
    assert main(["-i", str(images), "-o", str(folders / "out"), "-d", "987", "--fast"]) == 0
    out = capsys.readouterr().out
    axes = ",".join("zyx"[a] for a in FAST_MODE["options"]["mirror_axes"])
    assert f"mirroring axes {axes}" in out and f"step {FAST_MODE['options']['step']}" in out
    assert (folders / "out" / "case_1.nii.gz").is_file()
    assert main(["-i", str(images), "-o", str(folders / "out2"), "-d", "987", "--fast", "--step", "0.5"]) == 2
