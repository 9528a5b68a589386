"""Time budget and epoch sizing, with a fake clock and numbers worked out by hand."""

from __future__ import annotations

import pytest

from segforge.training.time_budget import TimeBudget, size_epochs


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_stops_when_the_next_iteration_would_overrun():
    clock = Clock()
    budget = TimeBudget(10.0, clock)
    budget.start()
    for _ in range(8):
        clock.now += 1.0
        budget.iteration_done()
    assert budget.seconds_per_iteration == 1.0 and budget.next_iteration_fits()  # 8 + 1 <= 10
    clock.now += 1.0
    budget.iteration_done()
    assert budget.next_iteration_fits()  # 9 + 1 <= 10
    clock.now += 0.5  # e.g. a validation pass
    assert not budget.next_iteration_fits()  # 9.5 + 1 > 10
    assert budget.iterations == 9 and budget.left == pytest.approx(0.5)


def test_time_between_runs_of_iterations_is_not_an_iteration():
    clock = Clock()
    budget = TimeBudget(100.0, clock)
    budget.start()
    clock.now += 2.0
    budget.iteration_done()
    clock.now += 30.0  # validation and a checkpoint
    budget.mark()
    clock.now += 2.0
    budget.iteration_done()
    assert budget.seconds_per_iteration == 2.0
    assert budget.iterations_left() == int((100 - 34) / 2.0)
    assert budget.iterations_left(extra_seconds_per_iteration=0.2) == int(66 / 2.2)


def test_median_ignores_one_slow_iteration():
    clock = Clock()
    budget = TimeBudget(100.0, clock)
    budget.start()
    for step in (1.0, 1.0, 9.0, 1.0, 1.0):
        clock.now += step
        budget.iteration_done()
    assert budget.seconds_per_iteration == 1.0


def test_a_budget_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        TimeBudget(0.0)


def test_five_minutes_at_half_a_second():
    s = size_epochs(300.0, 0.5, 0.1)
    # epochs of 300/30 = 10 s -> 20 iterations; validation <= 10 % of 10 s at 0.1 s -> 10 batches;
    # 11 s per epoch -> 27 epochs, 300 / 11 * 20 = 545 iterations
    assert (s.iters_per_epoch, s.val_iters, s.expected_epochs, s.expected_iterations) == (20, 10, 27, 545)
    assert "20 iterations" in s.why and "10 batches" in s.why


def test_long_budget_caps_epochs_at_nnunets_length_and_validation_at_fifty():
    s = size_epochs(3600.0, 0.1, 0.01)
    assert (s.iters_per_epoch, s.val_iters) == (250, 50)


def test_short_budget_keeps_a_minimum_epoch_and_one_validation_batch():
    s = size_epochs(60.0, 1.0, 5.0)
    assert s.iters_per_epoch == 5 and s.val_iters == 1  # 60/30 = 2 s < 5 s minimum; 0.5 s of validation < 1 batch


def test_the_time_left_as_the_progress_bar_shows_it():
    from segforge.training.time_budget import clock_text

    assert [clock_text(s) for s in (0, 59.9, 61, 3599, 3600, 3725, -3)] == \
        ["0:00", "0:59", "1:01", "59:59", "1:00:00", "1:02:05", "0:00"]


def test_a_held_then_linear_schedule():
    """hold 0.8, exponent 1 over 10 steps: 1.0 for steps 0-7, then (1 - s/10) / 0.2: 0.5 at 9, 0 at 10."""
    import torch

    from segforge.training.schedule import PolyLRSchedule

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    s = PolyLRSchedule(opt, 1.0, 10, exponent=1.0, hold=0.8)
    assert [round(s.lr_at(i), 9) for i in (0, 7, 8, 9, 10)] == [1.0, 1.0, 1.0, 0.5, 0.0]


def test_the_time_kept_for_the_last_epoch_end_is_the_longest_recent_end_with_a_margin():
    from segforge.training.time_budget import END_MARGIN

    clock = Clock()
    budget = TimeBudget(100.0, clock)
    budget.start()
    for end in (4.0, 10.0, 3.0):  # one 1-second iteration, then that epoch's validation and checkpoints
        clock.now += 1.0
        budget.iteration_done()
        clock.now += end
        budget.epoch_ended()
        budget.mark()
    assert budget.reserve == pytest.approx(END_MARGIN * 10.0)  # 15 s, not the last end's 3 s
    clock.now = 100.0 + 84.0  # elapsed 84: 84 + 1 + 15 = 100 still fits
    assert budget.next_iteration_fits()
    clock.now += 0.5
    assert not budget.next_iteration_fits()
    for _ in range(5):  # the long end leaves the window of the recent ones
        budget.mark()
        clock.now += 1.0
        budget.iteration_done()
        clock.now += 1.0
        budget.epoch_ended()
    assert budget.reserve == pytest.approx(END_MARGIN * 1.0)
