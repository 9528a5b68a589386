"""The locator trainer: the common loop with locating's steps, every option honoured or refused."""

import csv
import json

import numpy as np
import pytest
import torch

from helpers.cascade_dataset import DATASET, make_cascade_dataset

from segforge.errors import InputError
from segforge.planning.plans import Plans
from segforge.training.locator_trainer import LocatorTrainer
from segforge.training.losses import heatmap_kl_loss, relative_heatmap_mse
from segforge.training.options import TrainingOptions


@pytest.fixture
def dataset(tmp_path):
    torch.set_num_threads(1)
    return make_cascade_dataset(tmp_path / "preprocessed", n_cases=6)


def options(**kw) -> TrainingOptions:
    base = dict(epochs=1, iters_per_epoch=1, val_iters=50, num_workers=0, cpu_threads=1, progress_bar=False,
                plots=False, seed=3)
    return TrainingOptions(**{**base, **kw})


def locator(plans, output_folder=None, **kw) -> LocatorTrainer:
    return LocatorTrainer(plans, "locator", 0, output_folder=output_folder, device="cpu", options=options(**kw),
                          log=lambda line: None)


def rows(fold, timing=False) -> list[dict]:
    skip = () if timing else ("epoch_seconds", "iters_per_second")
    return [{k: v for k, v in r.items() if k not in skip} for r in csv.DictReader(open(fold / "log.csv"))]


def test_relative_mse_is_one_for_the_empty_answer():
    t = torch.zeros(1, 1, 8, 8, 8)
    t[0, 0, 4, 4, 4] = 1
    assert float(relative_heatmap_mse(torch.zeros_like(t), t)) == pytest.approx(1.0)
    assert float(relative_heatmap_mse(t, t)) == 0.0


def test_short_run_writes_results_and_resumes(dataset, tmp_path):
    fold = locator(dataset).run()
    assert fold == tmp_path / "results" / DATASET / "LocatorTrainer__locator" / "fold_0"
    for name in ("checkpoint_latest.pt", "checkpoint_final.pt", "log.csv", "locator_validation.json",
                 "training_options.json"):
        assert (fold / name).is_file(), name
    assert (fold.parent / "plans.json").is_file() and (fold.parent / "dataset.json").is_file()
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["trainer"] == "LocatorTrainer" and ckpt["epoch"] == 0  # the index of the last epoch, as every trainer
    assert ckpt["curriculum"]["sigma"] == 4.0 and ckpt["n_heatmaps"] == 1 and ckpt["amp_dtype"] == "float32"
    assert isinstance(ckpt["log"], list) and ckpt["log"][0]["sigma"] == 4.0

    trainer = locator(dataset, epochs=2)
    trainer.run(resume=True)
    assert [r["epoch"] for r in rows(fold)] == ["0", "1"]
    assert "sigma" in rows(fold)[0] and "centroid_error_median_mm" in rows(fold)[0]
    saved = json.loads((fold / "locator_validation.json").read_text())
    assert saved["epochs_trained"] == 2 == trainer.result["epochs_trained"]
    err = saved["centroid_error"]
    assert err["n"] == len(saved["cases"]) > 0
    assert err["median_mm"] <= err["max_mm"] and len(err["std_zyx_mm"]) == 3


@pytest.mark.slow
def test_a_resumed_locator_logs_what_an_uninterrupted_one_does(dataset, tmp_path):
    """Three epochs in one go, or interrupted after two and resumed for the third: the same log,
    row for row (timings aside), the same curriculum and the same weights. In-process loading
    (0 workers) restores the batch stream too."""
    kw = dict(iters_per_epoch=3, val_iters=3)
    whole = locator(dataset, tmp_path / "whole" / "fold_0", epochs=3, **kw)
    whole.run()
    split = tmp_path / "split" / "fold_0"
    interrupted = locator(dataset, split, epochs=3, **kw)
    save = interrupted.save_checkpoint

    def save_then_stop(which, epoch):  # the run dies right after epoch 1's checkpoint_latest.pt
        save(which, epoch)
        if which == "latest" and epoch == 1:
            raise KeyboardInterrupt

    interrupted.save_checkpoint = save_then_stop
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert not (split / "checkpoint_final.pt").exists()
    resumed = locator(dataset, split, epochs=3, **kw)
    resumed.run(resume=True)
    assert rows(split) == rows(whole.output_folder)
    assert [r["epoch"] for r in rows(split)] == ["0", "1", "2"]
    assert resumed.curriculum.state_dict() == whole.curriculum.state_dict()
    a = torch.load(split / "checkpoint_final.pt", weights_only=True)["network_state"]
    b = torch.load(whole.output_folder / "checkpoint_final.pt", weights_only=True)["network_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_locator_resumes_on_the_gpu(dataset, tmp_path):
    """--device cuda --continue: the checkpoint (RNG states included) loads on the CPU, training goes on."""
    fold = tmp_path / "gpu" / "fold_0"
    LocatorTrainer(dataset, "locator", 0, output_folder=fold, device="cuda", options=options(epochs=1, iters_per_epoch=2),
                   log=lambda line: None).run()
    trainer = LocatorTrainer(dataset, "locator", 0, output_folder=fold, device="cuda",
                             options=options(epochs=2, iters_per_epoch=2), log=lambda line: None)
    trainer.run(resume=True)
    assert [r["epoch"] for r in rows(fold)] == ["0", "1"]
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    assert ckpt["amp_dtype"] in ("bfloat16", "float16")
    assert np.isfinite(float(rows(fold)[-1]["train_loss"]))


def test_rejects_a_segmentation_configuration(dataset):
    with pytest.raises(InputError, match="not a locator"):
        LocatorTrainer(dataset, "cascade_fullres", 0, device="cpu")


def test_options_reach_the_locator(dataset):
    """The locator's own defaults (Adam at 3e-3), and the options that change them."""
    trainer = locator(dataset)
    trainer.initialize()
    assert isinstance(trainer.optimizer, torch.optim.Adam) and trainer.initial_lr == 3e-3
    trainer = locator(dataset, optimizer="sgd", initial_lr=0.02, weight_decay=1e-4, val_iters=1)
    seen = []
    original = trainer.evaluate_cases
    trainer.evaluate_cases = lambda cases, sigma: seen.append(len(cases)) or original(cases, sigma)
    trainer.run()
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    assert trainer.optimizer.defaults["weight_decay"] == 1e-4 and trainer.history[0]["lr"] == pytest.approx(0.02)
    # an epoch validates on val_iters cases, the final validation on all of them
    assert len(trainer.val_data) == 2 and seen == [1, 2] and trainer.result["centroid_error"]["n"] == 2


def test_patience_stops_the_locator(dataset, monkeypatch):
    """No better median centroid error for ``patience`` epochs: training stops after that epoch."""
    trainer = locator(dataset, epochs=5, patience=1)
    lines = []
    trainer.log = lines.append
    errors = iter([5.0, 6.0, 4.0, 3.0, 2.0])  # epoch 1 is worse than epoch 0 -> stop after it
    original = trainer.validate

    def validate(epoch):
        metrics = original(epoch)
        return {**metrics, "centroid_error_median_mm": next(errors)}

    monkeypatch.setattr(trainer, "validate", validate)
    trainer.run()
    assert len(trainer.history) == 2
    assert any("early stop after epoch 1" in line and "median validation centroid error" in line for line in lines)


def test_time_budget_stops_the_locator_and_ends_its_learning_rate(dataset):
    """A budget the first iteration overruns: the run stops after that one-iteration epoch, still
    writes its final checkpoint and validation, and the learning-rate decay is shortened to what fits."""
    trainer = locator(dataset, epochs=50, max_minutes=1e-4)
    lines = []
    trainer.log = lines.append
    trainer.run()
    assert len(trainer.history) == 1
    assert any(line.startswith("time budget: stopping after epoch 0") for line in lines)
    assert (trainer.output_folder / "checkpoint_final.pt").is_file() and trainer.result is not None
    assert trainer.schedule.total_steps < trainer.schedule.planned_steps == 50


@pytest.mark.parametrize("option, value", [("ema_momentum", 0.5), ("val_plot_every", 2), ("mixup", "input"),
                                           ("mixup_alpha", 1.0), ("pseudo_labels", "predictions/"),
                                           ("pseudo_weight", 2.0)])
def test_options_the_locator_cannot_honour_are_refused(dataset, option, value):
    with pytest.raises(InputError, match=f"LocatorTrainer cannot honour the option '{option}'") as info:
        locator(dataset, **{option: value})
    assert "\n" not in str(info.value)


def test_loader_workers_feed_the_locator(dataset):
    trainer = locator(dataset, num_workers=1, iters_per_epoch=2)
    trainer.run()
    assert len(trainer.history) == 1 and np.isfinite(trainer.history[0]["train_loss"])


@pytest.mark.slow
def test_tiny_locator_finds_the_ball(dataset, tmp_path):
    trainer = locator(dataset, epochs=4, iters_per_epoch=8, plots=True)
    fold = trainer.run()
    err = trainer.result["centroid_error"]
    assert err["median_mm"] < 3 * 2.0, err  # under 3 locator voxels (2 mm)
    # the confidence reference: the extremes of the validation heatmaps, each of which it then judges confident
    from segforge.cascade.safeguard import assess_confidence

    result = trainer.result
    reference = result["confidence_reference"]
    assert reference["n"] == len(result["cases"]) > 0 and result["confidence_radius_voxels"] > 1
    stats = [c["heatmap_statistics"] for c in result["cases"]]
    assert reference["min_peak"] == min(s["peak"] for s in stats) > 0
    assert all(assess_confidence(s, reference)["confident"] for s in stats)
    assert (fold / "heatmap_sigma_4.00.png").is_file()
    assert (fold / "losses.png").is_file() and (fold / "metrics.png").is_file()
    assert list(fold.glob("val_locator_*.png"))


@pytest.mark.parametrize("loss", ["kl", "mse"])
def test_kl_loss_and_per_class_targets_run(tmp_path, loss):
    """Two foreground classes with per-class targets: one heatmap per class, each located, for
    both losses (the relative MSE is 1 for a map of zeros, the KL is not bounded by it)."""
    torch.set_num_threads(1)
    plans = make_cascade_dataset(tmp_path / "preprocessed", n_cases=4, classes=2, loss=loss, target="per_class")
    trainer = locator(plans, iters_per_epoch=2)
    torch.manual_seed(trainer.options.seed)  # the network the trainer starts from
    before = trainer.build_network().state_dict()
    trainer.run()
    assert trainer.n_heatmaps == 2 and trainer.network.heads[-1].out_channels == 2
    result = trainer.result
    assert result["centroid_error"]["n"] == len(result["cases"]) > 0
    assert all(len(case["channels"]) == 2 and all(np.isfinite(ch["error_mm"]) for ch in case["channels"])
               for case in result["cases"])
    assert trainer.loss.loss is (relative_heatmap_mse if loss == "mse" else heatmap_kl_loss)
    after = torch.load(trainer.output_folder / "checkpoint_final.pt", weights_only=True)["network_state"]
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert Plans.load(trainer.model_folder / "plans.json").configurations["locator"].locator.loss == loss
