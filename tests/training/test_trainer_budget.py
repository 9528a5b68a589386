"""--max-minutes honoured to the iteration, epochs sized to the budget, a cascade's stages sharing it.

The trainer's budget clock is replaced by a fake one that advances exactly one second per
training iteration and not at all otherwise, so the counts below are worked out by hand.
"""

from __future__ import annotations

import pytest
import torch

from helpers.fake_preprocessed import make_plans, write_fake_dataset

from segforge.planning.plans import ComputeTarget, Plans
from segforge.training import trainer as trainer_module
from segforge.training.options import TrainingOptions
from segforge.training.segmentation_trainer import SegmentationTrainer
from segforge.training.time_budget import TimeBudget


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def fake_budget_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "TimeBudget", lambda seconds: TimeBudget(seconds, clock=clock))
    return clock


def make_trainer(tmp_path, clock, lines, **options):
    torch.set_num_threads(1)
    folder = write_fake_dataset(tmp_path / "pre")
    plans = Plans.load(folder / "plans.json")
    opts = TrainingOptions(num_workers=0, cpu_threads=1, progress_bar=False, plots=False, **options)
    t = SegmentationTrainer(plans, "3d_fullres", 0, output_folder=tmp_path / "res" / "fold_0", device="cpu",
                            options=opts, preprocessed_dir=folder, log=lines.append)
    step = t.train_step

    def one_second_step(batch):
        clock.now += 1.0
        return step(batch)

    t.train_step = one_second_step
    return t


def test_training_stops_within_one_iteration_of_the_budget_with_sized_epochs(tmp_path, fake_budget_clock):
    lines = []
    t = make_trainer(tmp_path, fake_budget_clock, lines, max_minutes=0.5)
    t.run()
    # 30 s at 1 s per iteration: the 30th ends exactly at the budget, a 31st would not fit
    assert sum(r["epoch"] >= 0 for r in t.history) == len(t.history)
    assert t.budget.iterations == 30 and fake_budget_clock.now == 30.0
    # sized after 4 iterations with 26 s left: epochs of max(5 s, 26 s / 30) = 5 iterations, validation
    # at most 10 % of 5 s at 0.4 s per batch -> 1 batch; 30 iterations = 6 epochs
    assert (t.iters_per_epoch, t.val_iters, len(t.history)) == (5, 1, 6)
    sized = next(line for line in lines if line.startswith("time budget 0.5 minutes"))
    assert "1 s per iteration measured" in sized and "epochs of 5 iterations, 1 validation batches each" in sized
    assert any(line.startswith("time budget: stopping after epoch 5") for line in lines), lines
    assert any(line.startswith("training: 30 iterations in 0.50 of 0.5 minutes") for line in lines)
    assert (t.output_folder / "checkpoint_final.pt").is_file()
    # under a budget: momentum 0.9 and no decay over it (the poly schedule spans 1000 x 250 iterations)
    assert t.optimizer.param_groups[0]["momentum"] == 0.9
    assert t.history.column("lr")[5] == pytest.approx(0.01 * (1 - 25 / 250_000) ** 0.9)


def test_the_last_epoch_is_cut_in_the_middle(tmp_path, fake_budget_clock):
    lines = []
    t = make_trainer(tmp_path, fake_budget_clock, lines, max_minutes=0.2, iters_per_epoch=5, val_iters=1)
    t.run()
    # 12 s: epochs of 5 as given (not sized), the third cut after 2 iterations
    assert t.budget.iterations == 12 and len(t.history) == 3 and t.iters_per_epoch == 5
    assert any(line.startswith("time budget: stopping in epoch 2 after 2 iterations") for line in lines)


def test_without_a_budget_epochs_are_nnunets(tmp_path):
    t = SegmentationTrainer(make_plans(), "3d_fullres", 0, output_folder=tmp_path / "fold_0", device="cpu",
                            options=TrainingOptions())
    assert (t.iters_per_epoch, t.val_iters, t.budget) == (250, 50, None)


def test_the_run_says_which_plan_and_device(tmp_path, fake_budget_clock):
    lines = []
    t = make_trainer(tmp_path, fake_budget_clock, lines, max_minutes=0.1, iters_per_epoch=3, val_iters=1)
    t.plans.compute = ComputeTarget(device="cuda", device_name="big gpu", memory_gb=80.0, sized_for_minutes=60.0,
                                    configurations={"3d_fullres": {"gflop_per_iteration": 1.5,
                                                                   "predicted_seconds_per_iteration": 0.9}})
    t.run()
    plan = next(line for line in lines if line.startswith("plan 3d_fullres"))
    assert "patch 16x32x32, batch 2, U-Net 4->16 features in 3 stages, 1.5 GFLOP per iteration" in plan
    assert "made for cuda (big gpu), 80 GB, sized for 60 minutes" in plan and "training on cpu instead" in plan


def test_a_cascade_shares_the_budget(tmp_path, fake_budget_clock, monkeypatch):
    """5.05 minutes = 303 s; the plan predicts 0.2 s per locator iteration: the locator wants the time of
    300 iterations = 60 s = 60 / (0.85 * 303) = 23.3 % (within 20-50 %) -> 0.233 * 303 = 70.6 s: 7 iterations
    of 10 s. The segmenter gets what is left, 303 - 70 = 233 s: 23 iterations. 300 s in all, not 2 x 303."""
    import types

    from helpers.cascade_dataset import make_cascade_dataset

    from segforge import paths
    from segforge.training.trainer import Trainer
    from segforge.workflows import train as train_workflow

    torch.set_num_threads(1)
    plans = make_cascade_dataset(paths.preprocessed_root(), n_cases=4)
    plans.compute = ComputeTarget(device="cpu", device_name="test cpu", memory_gb=1.0, configurations={
        "locator": {"predicted_seconds_per_iteration": 0.2},
        "cascade_fullres": {"predicted_seconds_per_iteration": 1.0}})
    monkeypatch.setattr(train_workflow, "time", types.SimpleNamespace(monotonic=fake_budget_clock))
    step = Trainer.train_step

    def ten_second_step(self, batch):
        fake_budget_clock.now += 10.0
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", ten_second_step)
    lines = []
    options = TrainingOptions(max_minutes=5.05, num_workers=0, cpu_threads=1, progress_bar=False, plots=False)
    train_workflow.train_fold(plans, 0, options=options, validate=False, log=lines.append)
    stages = [line for line in lines if line.startswith("training locator") or line.startswith("training cascade")]
    assert len(stages) == 2, lines
    assert "for 1.18 of 5.05 minutes" in stages[0] and "time of 300 iterations (23% of 5.05 minutes" in stages[0]
    assert "for 3.88 of 5.05 minutes" in stages[1]  # 233 s
    done = [line for line in lines if line.startswith("training: ")]
    assert done[0].startswith("training: 7 iterations") and done[1].startswith("training: 23 iterations"), done
    assert fake_budget_clock.now == 300.0


def test_the_last_epochs_validation_fits_in_the_budget(tmp_path, fake_budget_clock):
    """Iterations of 1 s, an epoch's end (validation, checkpoints) of 3 s, epochs of 5, 30 s: epochs end at
    8, 16, 24 s; the last epoch's end is given 1.5 x 3 = 4.5 s (END_MARGIN): in the fourth epoch a first
    iteration (25 s) leaves room for it (29.5 s), a second (26 + 4.5 = 30.5 s) would not: the epoch is cut
    after 1 iteration and its end comes at 28 s, inside the budget."""
    lines = []
    t = make_trainer(tmp_path, fake_budget_clock, lines, max_minutes=0.5, iters_per_epoch=5, val_iters=1)
    validate = t.validate

    def three_second_validation(epoch):
        fake_budget_clock.now += 3.0
        return validate(epoch)

    t.validate = three_second_validation
    t.run()
    assert t.budget.iterations == 16 and len(t.history) == 4 and fake_budget_clock.now == 28.0
    assert any(line.startswith("time budget: stopping in epoch 3 after 1 iterations") for line in lines), lines


@pytest.mark.parametrize("minutes", [None, 0.01])
def test_fold_validation_under_a_budget_is_not_mirrored(minutes, monkeypatch):
    """Test-time mirroring costs 8 predictions per window in 3D: under --max-minutes the fold validation
    after training goes without it (--validation-only mirrors); without a budget it mirrors."""
    from segforge import paths
    from segforge.workflows import train as train_workflow

    torch.set_num_threads(1)
    folder = write_fake_dataset(paths.preprocessed_root())
    plans = Plans.load(folder / "plans.json")
    asked = []
    monkeypatch.setattr(train_workflow, "validate_trained_fold", lambda *a, tta=True, **k: asked.append(tta))
    options = TrainingOptions(epochs=1, iters_per_epoch=1, val_iters=1, max_minutes=minutes, num_workers=0,
                              cpu_threads=1, progress_bar=False, plots=False)
    lines = []
    train_workflow.train_fold(plans, 0, options=options, log=lines.append)
    assert asked == [minutes is None]
    assert any(line.startswith("fold validation: ") for line in lines)
