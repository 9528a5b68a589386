"""segforge_export and the ONNX Runtime backend: the export predicts what the model folder predicts."""

import json

import numpy as np
import pytest
import torch

from segforge.cli import export as export_cli
from segforge.cli import predict as predict_cli
from segforge.inference import create_predictor
from segforge.inference.model import ModelFolder
from segforge.inference.model_export import export_model
from segforge.io.image import read_image, write_image

from helpers.inference_fixtures import blob_image, odd_geometry, tiny_plans, write_model_folder

pytestmark = pytest.mark.slow  # the ONNX export of two folds takes 10-60 s

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("safetensors")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = write_model_folder(root / "results", tiny_plans(), folds=("0", "1"))
    out = root / "deploy"
    lines = []
    export_model(model, out, log=lines.append)
    return model, out, lines


def test_export_folder_holds_networks_weights_and_every_decision(exported):
    model, out, lines = exported
    info = json.loads((out / "export.json").read_text())
    assert info["configuration"] == "3d_fullres" and info["folds"] == ["0", "1"]
    for fold in ("0", "1"):
        assert (out / f"fold_{fold}" / "network.onnx").stat().st_size > 1000
        assert (out / f"fold_{fold}" / "weights.safetensors").is_file()
    assert info["network"]["spatial_divisor"] == [2, 2, 2]
    assert info["preprocessing"]["spacing"] == [2.5, 0.8, 1.1]
    assert info["prediction"]["patch_size"] == [8, 16, 16] and info["prediction"]["gaussian_sigma_scale"] == 0.125
    assert json.loads((out / "plans.json").read_text()) == json.loads((model / "plans.json").read_text())
    assert not list(out.parent.glob(".tmp-*"))
    assert any("fold 1" in line for line in lines)
    folder = ModelFolder.open(out)
    assert folder.trainer == "SegmentationTrainer" and folder.available_folds() == ["0", "1"]


def test_onnx_logits_match_torch_within_1e3_at_patch_and_larger_windows(exported):
    model, out, _ = exported
    torch_predictor = create_predictor(model, folds=["0"], device="cpu", tta=False)
    onnx_predictor = create_predictor(out, folds=["0"], tta=False, backend="onnxruntime")
    rng = torch.Generator().manual_seed(0)
    for shape in ((3, 1, 8, 16, 16), (1, 1, 16, 24, 32)):
        x = torch.randn(*shape, generator=rng) * 2
        with torch.inference_mode():
            expected = torch_predictor.networks[0](x)
        got = onnx_predictor.networks[0](x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < 1e-3


def test_torch_from_safetensors_equals_the_checkpoint(exported):
    model, out, _ = exported
    a = create_predictor(model, device="cpu").networks
    b = create_predictor(out, device="cpu").networks
    for na, nb in zip(a, b):
        for (ka, va), (kb, vb) in zip(na.state_dict().items(), nb.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)


def test_predict_cli_gives_the_same_labels_with_both_backends(exported, tmp_path):
    model, out, _ = exported
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        write_image(blob_image(seed=i), odd_geometry(), images / f"case_{i}_0000.nii.gz")
    assert predict_cli.main(["-i", str(images), "-o", str(tmp_path / "torch"), "-m", str(model), "--device", "cpu"]) == 0
    assert predict_cli.main(["-i", str(images), "-o", str(tmp_path / "onnx"), "-m", str(out),
                             "--backend", "onnxruntime"]) == 0
    for i in range(2):
        a, ga = read_image(tmp_path / "torch" / f"case_{i}.nii.gz")
        b, gb = read_image(tmp_path / "onnx" / f"case_{i}.nii.gz")
        assert ga.same_grid(gb)
        assert np.mean(a != b) < 1e-3  # labels equal up to ties at 1e-4 logit differences


def test_bad_requests_are_one_line_errors(exported, tmp_path, capsys):
    model, out, _ = exported
    assert export_cli.main(["-m", str(model), "-o", str(out)]) == 2  # not empty
    assert "not an empty folder" in capsys.readouterr().err
    images = tmp_path / "images"
    images.mkdir()
    write_image(blob_image(), odd_geometry(), images / "case_0000.nii.gz")
    assert predict_cli.main(["-i", str(images), "-o", str(tmp_path / "p"), "-m", str(model),
                             "--backend", "onnxruntime"]) == 2
    assert "segforge_export" in capsys.readouterr().err
