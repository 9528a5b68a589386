"""Pieces of the trainer that need no training: schedule, checkpoints, log, registry, CLI errors."""

import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.fake_preprocessed import make_plans

from segforge.cli import train as train_cli
from segforge.errors import InputError
from segforge.planning.plans import CascadeSettings, LocatorSettings
from segforge.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from segforge.training.options import TrainingOptions
from segforge.training.progress_log import TrainingLog
from segforge.training.registry import look_up_step, training_steps
from segforge.training.schedule import PolyLRSchedule, build_optimizer


def test_poly_schedule_values_and_resume():
    opt = build_optimizer([torch.zeros(1, requires_grad=True)], "sgd")
    assert opt.defaults["momentum"] == 0.99 and opt.defaults["nesterov"] and opt.defaults["weight_decay"] == 3e-5
    sched = PolyLRSchedule(opt, 0.01, total_steps=10)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(10):
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen[0] == 0.01 and seen[-1] == 0.0
    assert seen[5] == pytest.approx(0.01 * 0.5**0.9)
    other = PolyLRSchedule(build_optimizer([torch.zeros(1, requires_grad=True)], "adamw"), 0.01, 10)
    other.load_state_dict({"step": 5})
    assert other.optimizer.param_groups[0]["lr"] == seen[5]
    with pytest.raises(InputError, match="did you mean 'adam' or 'adamw'"):
        build_optimizer([torch.zeros(1, requires_grad=True)], "adamx")


def test_poly_schedule_fits_its_decay_into_the_time_left():
    opt = build_optimizer([torch.zeros(1, requires_grad=True)], "adamw")
    sched = PolyLRSchedule(opt, 0.01, total_steps=1000)
    for _ in range(10):
        sched.step()
    sched.fit_to_time(seconds_left=20.0, seconds_per_step=2.0)  # 10 more steps fit
    assert sched.total_steps == 20 and sched.lr == pytest.approx(0.01 * 0.5**0.9)
    sched.fit_to_time(seconds_left=1e6, seconds_per_step=2.0)  # re-estimated, never past the plan
    assert sched.total_steps == 1000
    sched.fit_to_time(seconds_left=29.0, seconds_per_step=2.0, steps_per_epoch=5)  # 14 steps, 2 whole epochs
    assert sched.total_steps == 20
    for _ in range(10):
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.0
    resumed = PolyLRSchedule(build_optimizer([torch.zeros(1, requires_grad=True)], "adamw"), 0.01, 1000)
    resumed.load_state_dict({"step": 10, "total_steps": 20})
    assert resumed.lr == pytest.approx(0.01 * 0.5**0.9)


def test_checkpoint_is_weights_only_and_restores_rng(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    np.random.normal()  # leaves a cached gaussian
    states = rng_states()
    expected = (random.random(), np.random.normal(), torch.rand(1).item())
    path = tmp_path / "checkpoint_latest.pt"
    save_checkpoint(path, {"network_state": {"w": torch.ones(2)}, "rng_states": states, "log": {"lr": [0.1]},
                           "options": TrainingOptions().to_dict()})
    loaded = torch.load(path, weights_only=True)
    restore_rng_states(loaded["rng_states"])
    assert (random.random(), np.random.normal(), torch.rand(1).item()) == expected
    assert TrainingOptions(**loaded["options"]).augmentation.scale == (0.7, 1.4)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_log_csv_has_one_column_per_class_and_blank_nan(tmp_path):
    log = TrainingLog()
    log.append(dict(epoch=0, train_loss=1.0, val_loss=0.9, dice=[0.5, math.nan], mean_dice=0.5, ema_dice=0.5, lr=0.01,
                    epoch_seconds=2.0, iters_per_second=5.0, centroid_error_median_mm=None))
    columns = ["epoch", "train_loss", "val_loss", "dice", "mean_dice", "centroid_error_median_mm", "lr"]
    log.write_csv(tmp_path / "log.csv", columns, {"dice": ["liver", "tumour"]})
    header, row = (tmp_path / "log.csv").read_text().splitlines()
    assert header.split(",") == ["epoch", "train_loss", "val_loss", "dice_liver", "dice_tumour", "mean_dice",
                                 "centroid_error_median_mm", "lr"]
    assert row.split(",") == ["0", "1", "0.9", "0.5", "", "0.5", "", "0.01"]
    assert TrainingLog.from_list(log.to_list()) == log and log.column("lr") == [0.01]


def test_training_steps_by_configuration_kind():
    plans = make_plans()
    assert training_steps(plans) == [("segmentation", "3d_fullres")]
    assert training_steps(plans, "2d") == [("segmentation", "2d")]
    loc = plans.configurations["3d_fullres"]
    import dataclasses

    plans.configurations["locator"] = dataclasses.replace(loc, name="locator", kind="locator",
                                                          locator=LocatorSettings())
    plans.configurations["cascade_fullres"] = dataclasses.replace(loc, name="cascade_fullres",
                                                                  cascade=CascadeSettings(crop_size=[16, 32, 32]))
    assert training_steps(plans, "cascade_fullres") == [("locator", "locator"), ("cascade_segmenter", "cascade_fullres")]
    assert callable(look_up_step("segmentation"))
    with pytest.raises(InputError, match="unknown training step 'no_such_step'"):
        look_up_step("no_such_step")
    with pytest.raises(InputError, match="did you mean 'segmentation'"):
        look_up_step("segmentaton")


def test_options_are_checked():
    with pytest.raises(InputError, match="--epochs must be at least 1"):
        TrainingOptions(epochs=0)
    with pytest.raises(InputError, match="--max-minutes"):
        TrainingOptions(max_minutes=-1)


def test_cli_answers_bad_input_in_one_line(folders, capsys):
    assert train_cli.main(["998", "0"]) == 2
    assert "no dataset with id 998" in capsys.readouterr().err
    (folders / "preprocessed" / "Dataset998_X").mkdir(parents=True)
    assert train_cli.main(["998", "x"]) == 2
    assert "fold must be a number" in capsys.readouterr().err
    assert train_cli.main(["998", "0"]) == 2
    err = capsys.readouterr().err
    assert "plans not found" in err and err.count("\n") == 1


def test_budget_stops_within_an_iteration_and_patience_after_the_epoch():
    from segforge.training.segmentation_trainer import SegmentationTrainer
    from segforge.training.time_budget import TimeBudget

    plans = make_plans()
    t = SegmentationTrainer(plans, "3d_fullres", 0, output_folder="unused/fold_0", device="cpu",
                            options=TrainingOptions(epochs=10, max_minutes=1.0, patience=3), log=lambda *_: None)
    now = [0.0]
    t.budget = TimeBudget(60.0, clock=lambda: now[0])
    t.budget.start()
    for _ in range(5):  # iterations of 10 s
        now[0] += 10.0
        t.budget.iteration_done()
    assert t.stop_reason(0, iteration=5) is None  # 50 s + another 10 s iteration fits in 60 s
    now[0] += 5.0  # validation
    assert t.stop_reason(0).startswith("time budget: stopping after epoch 0")  # 55 + 10 would not
    assert t.stop_reason(1, iteration=3).startswith("time budget: stopping in epoch 1 after 3 iterations")
    t.budget = None
    t.epochs_since_best = 3
    assert "no better EMA pseudo-Dice for 3 epochs" in t.stop_reason(4)
    assert t.stop_reason(4, iteration=1) is None  # patience is judged between epochs


def test_segmentation_trainer_refuses_a_locator_configuration():
    import dataclasses

    from segforge.training.segmentation_trainer import SegmentationTrainer

    plans = make_plans()
    plans.configurations["locator"] = dataclasses.replace(plans.configurations["3d_fullres"], name="locator",
                                                          kind="locator", locator=LocatorSettings())
    with pytest.raises(InputError, match="is not a segmentation configuration"):
        SegmentationTrainer(plans, "locator", 0, device="cpu")
