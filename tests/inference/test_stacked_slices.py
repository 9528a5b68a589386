"""2.5d prediction: every slice predicted from it and its neighbours (the edge slice repeated at the
borders), onto the input's grid; and a 2.5d model trained end to end."""

import numpy as np
import pytest
import torch

from helpers.inference_fixtures import SPACING, odd_geometry, write_case, write_model_folder
from helpers.plans import tiny_configuration, tiny_plans

from segforge.cli.predict import main as predict_main
from segforge.inference.predictor import Predictor
from segforge.io.image import read_image


class NextMinusPrevious(torch.nn.Module):
    """Class-1 logit = channel 2 - channel 0 of a 3-slice stack: the next slice minus the previous one."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:, :1]), x[:, 2:3] - x[:, 0:1]], dim=1)


def stacked_plans():
    configuration = tiny_configuration("2.5d", patch=(16, 16), spacing=SPACING, median_shape=(10, 20, 20),
                                       crop_to_nonzero=False, input_slices=3)
    return tiny_plans(configuration, labels={"background": 0, "blob": 1}, dataset="Dataset987_Tiny")


def test_each_slice_sees_its_neighbours_and_the_borders_repeat_the_edge(folders):
    predictor = Predictor(write_model_folder(folders / "results", stacked_plans(), config="2.5d"), tta=False)
    predictor.networks = [NextMinusPrevious()]
    image = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None] ** 2, (10, 20, 18)).copy()
    data, properties = predictor.preprocess(image[None], odd_geometry())
    p = predictor.predict_preprocessed(data, properties)[1].numpy()
    d = data[0]
    expected = np.empty_like(d)
    expected[1:-1] = d[2:] - d[:-2]
    expected[0] = d[1] - d[0]  # slice -1 is slice 0
    expected[-1] = d[-1] - d[-2]  # slice 10 is slice 9
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-expected)), atol=1e-5)


def test_prediction_lies_on_the_input_grid(folders):
    write_model_folder(folders / "results", stacked_plans(), config="2.5d")
    inp, out = folders / "in", folders / "out"
    image = np.zeros((10, 20, 18), np.float32)
    image[3:7, 5:14, 4:12] = 2.0
    geometry = odd_geometry()
    write_case(inp, "case_a", image=image, geometry=geometry)
    assert predict_main(["-i", str(inp), "-o", str(out), "-d", "987", "-c", "2.5d", "--disable-tta"]) == 0
    labels, written = read_image(out / "case_a.nii.gz")
    assert labels.shape == geometry.shape and written.same_grid(geometry)


def test_the_network_takes_every_channel_of_every_stacked_slice(folders):
    folder = write_model_folder(folders / "results", stacked_plans(), config="2.5d")
    predictor = Predictor(folder, tta=False)
    first = next(m for m in predictor.networks[0].modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_2_5d_trains_and_validates_end_to_end(folders, monkeypatch):
    """Synthetic raw data -> plans (with 2.5d) -> preprocess -> train 2.5d -> fold validation on the raw grid."""
    import json

    from segforge.synthetic import make_synthetic_dataset
    from segforge.training.options import TrainingOptions
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess
    from segforge.workflows.train import train_fold

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    make_synthetic_dataset(991, "Stack", kind="organs", num_train=4, num_test=0, shape=(16, 32, 32))
    plans = plan_and_preprocess(991, num_processes=1, gpu_memory_gb=0.1, configurations=["2.5d"], progress=False,
                                log=lambda *_: None)
    options = TrainingOptions(epochs=1, iters_per_epoch=2, val_iters=1, num_workers=0, progress_bar=False,
                              plots=True)
    [fold] = train_fold(plans, 0, "2.5d", "cpu", options, log=lambda *_: None)
    assert fold.parent.name == "SegmentationTrainer__2.5d" and (fold / "val_pred.png").is_file()
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert summary["cases"] and not summary["geometry_mismatches"]
