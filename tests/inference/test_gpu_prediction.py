"""Prediction on a GPU end to end (float16 buffers, labels made on the device) against the CPU's labels."""

import numpy as np
import pytest
import torch

from segforge.inference.predictor import Predictor
from segforge.io.geometry import Geometry


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_labels_agree_with_the_cpu(model_folder):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 14, 30, 26)).astype(np.float32)
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), image.shape[1:])
    cpu, _ = Predictor(model_folder, device="cpu").predict_case(image, geometry)
    gpu_predictor = Predictor(model_folder, device="cuda")
    data, properties = gpu_predictor.preprocess(image, geometry)
    probabilities = gpu_predictor.predict_preprocessed(data, properties)
    assert probabilities.is_cuda and probabilities.dtype == torch.float16
    gpu, _ = gpu_predictor.restore(probabilities, properties)
    assert gpu.shape == cpu.shape and (gpu == cpu).mean() > 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_segforge_predict_num_gpus_splits_a_folder_across_the_gpus(model_folder, folders):
    """``--num-gpus N`` (every GPU of the machine): every case predicted once, the labels of a CPU run."""
    from helpers.inference_fixtures import blob_image, write_case

    from segforge.cli.predict import main
    from segforge.io.image import read_image

    inputs = folders / "in"
    inputs.mkdir()
    for i in range(3):
        write_case(inputs, f"case_{i}", image=blob_image(seed=i))
    common = ["-i", str(inputs), "-m", str(model_folder), "--disable-tta"]
    assert main(common + ["-o", str(folders / "cpu"), "--device", "cpu"]) == 0
    n = torch.cuda.device_count()
    assert main(common + ["-o", str(folders / "gpu"), "--num-gpus", str(n)]) == 0
    for i in range(3):
        cpu = read_image(folders / "cpu" / f"case_{i}.nii.gz")[0]
        gpu = read_image(folders / "gpu" / f"case_{i}.nii.gz")[0]
        assert gpu.shape == cpu.shape and (gpu == cpu).mean() > 0.99
