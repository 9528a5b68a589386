import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from segforge.cascade.heatmaps import gaussian_heatmap
from segforge.cascade.locator_data import apply_augmentation, draw_augmentation, locator_canvas, place_on_canvas
from segforge.training.locator_trainer import LocatorTrainer, relative_heatmap_mse

from .fixtures import make_cascade_dataset, tiny_plans


@pytest.fixture
def dataset(tmp_path):
    torch.set_num_threads(1)
    make_cascade_dataset(tmp_path / "preprocessed", n_cases=6)
    return tmp_path


def test_canvas_is_a_multiple_of_16_and_holds_every_image():
    config = tiny_plans().configurations["locator"]
    assert locator_canvas(config, [(30, 20, 33)]) == (32, 32, 48)


def test_augmentation_moves_the_centroid_with_the_image():
    rng = np.random.default_rng(1)
    data = np.zeros((1, 20, 20, 20), np.float32)
    data[0, 5, 12, 7] = 1.0
    for symmetric in (False, True):
        for _ in range(5):
            aug = draw_augmentation(rng, (20, 20, 20), (32, 32, 32), symmetric, [np.array([5.0, 12.0, 7.0])],
                                    scale_range=0.0)
            out, (c,) = apply_augmentation(data, [np.array([5.0, 12.0, 7.0])], (32, 32, 32), aug)
            peak = np.unravel_index(np.argmax(out[0]), out.shape[1:])
            np.testing.assert_allclose(peak, c, atol=1e-6)
            assert symmetric or not aug.mirror_x
    # zoomed: a smooth blob's centre of mass follows the centroid
    blob = gaussian_heatmap((20, 20, 20), (8.0, 12.0, 9.0), 2.0)[None]
    aug = dataclasses.replace(draw_augmentation(rng, (20, 20, 20), (32, 32, 32), False, [np.array([8.0, 12.0, 9.0])]),
                              offset=(6, 6, 6), scale=1.1, intensity_scale=1.0, intensity_shift=0.0)
    out, (c,) = apply_augmentation(blob, [np.array([8.0, 12.0, 9.0])], (32, 32, 32), aug)
    com = (np.indices(out.shape[1:]) * out[0]).reshape(3, -1).sum(1) / out[0].sum()
    np.testing.assert_allclose(com, c, atol=0.05)


def test_training_placement_shifts_past_the_canvas_but_keeps_the_target_on_it():
    rng = np.random.default_rng(0)
    centroid = np.array([1.0, 10.0, 18.0])
    data = np.zeros((1, 20, 20, 20), np.float32)
    data[0, 1, 10, 18] = 1.0
    offsets = []
    for _ in range(200):
        aug = draw_augmentation(rng, (20, 20, 20), (24, 24, 24), False, [centroid])
        out, (c,) = apply_augmentation(data, [centroid], (24, 24, 24), aug)
        assert c is not None and np.all(c >= 2.0) and np.all(c <= 21.0)
        offsets.append(aug.offset)
    offsets = np.array(offsets)
    assert offsets.min() < 0 and offsets.max() > 4  # beyond the slack of 4 voxels, both ways
    # and a cut image lands where it should: the kept corner is the one on the canvas
    cut = place_on_canvas(np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3), (4, 4, 4), (-1, 2, 0))
    assert cut[0, 0, 2, 0] == 9.0 and cut[0, 1, 3, 2] == 23.0 and cut[0, 2:].sum() == 0 and cut[0, :, :2].sum() == 0


def test_relative_mse_is_one_for_the_empty_answer():
    t = torch.zeros(1, 1, 8, 8, 8)
    t[0, 0, 4, 4, 4] = 1
    assert float(relative_heatmap_mse(torch.zeros_like(t), t)) == pytest.approx(1.0)
    assert float(relative_heatmap_mse(t, t)) == 0.0


def test_short_run_writes_results_and_resumes(dataset):
    LocatorTrainer(950, 0, epochs=1, iters_per_epoch=1, plots=False, log=lambda m: None).run()
    fold = dataset / "results" / "Dataset950_CascadeTiny" / "LocatorTrainer__locator" / "fold_0"
    for name in ("checkpoint_latest.pt", "checkpoint_final.pt", "log.csv", "locator_validation.json"):
        assert (fold / name).is_file(), name
    assert (fold.parent / "plans.json").is_file()
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["trainer"] == "LocatorTrainer" and ckpt["epoch"] == 1
    assert ckpt["curriculum"]["sigma"] == 4.0

    result = LocatorTrainer(950, 0, epochs=2, iters_per_epoch=1, plots=False, resume=True).run()
    rows = list(csv.DictReader(open(fold / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert "sigma" in rows[0] and "centroid_error_median_mm" in rows[0]
    saved = json.loads((fold / "locator_validation.json").read_text())
    assert saved["epochs_trained"] == 2 == result["epochs_trained"]
    err = saved["centroid_error"]
    assert err["n"] == len(saved["cases"]) > 0
    assert err["median_mm"] <= err["max_mm"] and len(err["std_zyx_mm"]) == 3


def test_rejects_a_segmentation_configuration(dataset):
    from segforge.errors import InputError

    with pytest.raises(InputError, match="not a locator"):
        LocatorTrainer(950, 0, configuration="cascade_fullres")


@pytest.mark.slow
def test_tiny_locator_finds_the_ball(dataset):
    result = LocatorTrainer(950, 0, epochs=4, iters_per_epoch=8, plots=True).run()
    err = result["centroid_error"]
    assert err["median_mm"] < 3 * 2.0, err  # under 3 locator voxels (2 mm)
    fold = dataset / "results" / "Dataset950_CascadeTiny" / "LocatorTrainer__locator" / "fold_0"
    assert (fold / "heatmap_sigma_4.00.png").is_file()
    assert (fold / "losses.png").is_file() and (fold / "metrics.png").is_file()
    assert list(fold.glob("val_locator_*.png"))


def test_kl_loss_and_per_class_targets_run(tmp_path):
    torch.set_num_threads(1)
    make_cascade_dataset(tmp_path / "preprocessed", n_cases=4, loss="kl", target="per_class")
    trainer = LocatorTrainer(950, 0, epochs=1, iters_per_epoch=1, plots=False, log=lambda m: None)
    result = trainer.run()
    assert trainer.n_heatmaps == 1  # one foreground class
    assert result["centroid_error"]["n"] == len(result["cases"])
    assert np.isfinite(result["centroid_error"]["median_mm"])
