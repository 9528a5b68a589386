"""A training run inside a time budget (``--max-minutes``): when to stop, how long an epoch is.

* :class:`TimeBudget` follows the iteration time as it is measured (the median of the
  recent iterations) and says to stop when the next iteration would end past the budget:
  training ends within one iteration of it, whatever the plan. The final checkpoint and
  the fold validation come after, outside the budget (their time is reported apart).
* :func:`size_epochs`: with a budget and no ``--iters-per-epoch`` given, an epoch lasts
  about ``1 / TARGET_EPOCHS`` of the budget (between ``MIN_EPOCH_SECONDS`` and nnU-Net's 250
  iterations), so validation, checkpoints and the progress plots come often enough in a
  five-minute run and not too often in a long one; validation takes at most
  ``VALIDATION_SHARE`` of an epoch's time.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

__all__ = ["TimeBudget", "EpochSizing", "size_epochs", "validation_batch_seconds", "budget_line", "describe_plan",
           "clock_text",
           "TARGET_EPOCHS", "VALIDATION_SHARE", "MIN_EPOCH_SECONDS", "MAX_ITERS_PER_EPOCH", "MAX_VAL_ITERS",
           "DEFAULT_ITERS_PER_EPOCH", "DEFAULT_VAL_ITERS", "SIZING_ITERATIONS", "VALIDATION_BATCH_COST"]

DEFAULT_ITERS_PER_EPOCH = 250  # nnU-Net's, without a time budget
DEFAULT_VAL_ITERS = 50
SIZING_ITERATIONS = 4  # iterations timed before the epochs are sized (the first one includes warm-up)
VALIDATION_BATCH_COST = 0.4  # a validation batch (forward only) against a training iteration (forward + backward)
TARGET_EPOCHS = 30
VALIDATION_SHARE = 0.1
MIN_EPOCH_SECONDS = 5.0
MAX_ITERS_PER_EPOCH = DEFAULT_ITERS_PER_EPOCH
MAX_VAL_ITERS = DEFAULT_VAL_ITERS
_WINDOW = 25  # iterations whose median time predicts the next one
_END_WINDOW = 5  # epoch ends whose longest predicts the last one's
END_MARGIN = 1.5


class TimeBudget:
    """``seconds`` of training from :meth:`start`; ``clock`` is injectable for tests."""

    def __init__(self, seconds: float, clock=time.monotonic):
        if not seconds > 0:
            raise ValueError(f"a time budget must be positive, got {seconds} s")
        self.seconds = float(seconds)
        self.clock = clock
        self.started: float | None = None
        self._last: float | None = None
        self._recent: deque[float] = deque(maxlen=_WINDOW)
        self.iterations = 0
        self._ends: deque[float] = deque(maxlen=_END_WINDOW)
        self.reserve = 0.0  # seconds an epoch's end takes (validation, checkpoints): kept free for the last one

    def start(self) -> None:
        self.started = self._last = self.clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def left(self) -> float:
        return max(0.0, self.seconds - self.elapsed)

    def mark(self) -> None:
        """Between two runs of iterations (validation, checkpoints): that time is not an iteration's."""
        self._last = self.clock()

    def epoch_ended(self) -> None:
        """After an epoch's validation and checkpoints: the last (cut) epoch needs that time after its last
        iteration too. Kept free: the longest of the recent ends with a margin (on a loaded machine one end
        took 10.8 s where the one before had taken far less, and a 15-minute run ended 4 s late)."""
        self._ends.append(max(0.0, self.clock() - self._last))
        self.reserve = END_MARGIN * max(self._ends)

    def iteration_done(self) -> None:
        now = self.clock()
        self._recent.append(now - self._last)
        self._last = now
        self.iterations += 1

    @property
    def seconds_per_iteration(self) -> float | None:
        if not self._recent:
            return None
        ordered = sorted(self._recent)
        return ordered[len(ordered) // 2]

    def next_iteration_fits(self) -> bool:
        """Whether one more iteration (at the recent median time), and the end of its epoch after it
        (:attr:`reserve`), end within the budget."""
        per = self.seconds_per_iteration or 0.0
        return self.elapsed + per + self.reserve <= self.seconds

    def iterations_left(self, extra_seconds_per_iteration: float = 0.0) -> int:
        """Iterations that still fit at the recent median time (plus a per-iteration share of other work)."""
        per = (self.seconds_per_iteration or 0.0) + extra_seconds_per_iteration
        return int(max(0.0, self.left - self.reserve) / per) if per > 0 else 0


@dataclass(frozen=True)
class EpochSizing:
    iters_per_epoch: int
    val_iters: int
    expected_epochs: int
    expected_iterations: int
    why: str


def size_epochs(budget_seconds: float, seconds_per_iteration: float, seconds_per_val_batch: float,
                max_val_iters: int = MAX_VAL_ITERS) -> EpochSizing:
    """Iterations per epoch and validation batches for a budget, from the measured times."""
    if seconds_per_iteration <= 0:
        raise ValueError("seconds_per_iteration must be positive")
    epoch_seconds = max(MIN_EPOCH_SECONDS, budget_seconds / TARGET_EPOCHS)
    iters = int(min(MAX_ITERS_PER_EPOCH, max(1, round(epoch_seconds / seconds_per_iteration))))
    train_seconds = iters * seconds_per_iteration
    val = int(max(1, min(max_val_iters, math.floor(VALIDATION_SHARE * train_seconds / max(seconds_per_val_batch, 1e-9)))))
    epoch_total = train_seconds + val * seconds_per_val_batch
    epochs = max(1, int(budget_seconds / epoch_total))
    iterations = int(budget_seconds / epoch_total * iters)
    why = (f"{seconds_per_iteration:.3g} s per iteration, {seconds_per_val_batch:.3g} s per validation batch: "
           f"epochs of about {epoch_seconds:.0f} s (1/{TARGET_EPOCHS} of {budget_seconds / 60:.3g} minutes, at least "
           f"{MIN_EPOCH_SECONDS:g} s, at most {MAX_ITERS_PER_EPOCH} iterations) -> {iters} iterations; validation "
           f"at most {VALIDATION_SHARE:.0%} of that -> {val} batches; about {epochs} epochs, {iterations} iterations")
    return EpochSizing(iters, val, epochs, iterations, why)


def clock_text(seconds: float) -> str:
    """``M:SS``, or ``H:MM:SS`` from an hour: the time left, as the progress bar shows it."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def validation_batch_seconds(seconds_per_iteration: float) -> float:
    """Estimated time of one validation batch: a forward pass without gradients."""
    return VALIDATION_BATCH_COST * seconds_per_iteration


def budget_line(max_minutes: float, budget: TimeBudget, sizing: EpochSizing, predicted: float | None) -> str:
    """What the budget buys, said once the first iterations are timed."""
    per = budget.seconds_per_iteration
    text = f"time budget {max_minutes:g} minutes: {per:.3g} s per iteration measured"
    if predicted:
        text += f" (the plan predicted {predicted:.3g} s)"
    return (text + f" -> about {sizing.expected_iterations + budget.iterations} iterations in {sizing.expected_epochs} "
            f"epochs of {sizing.iters_per_epoch} iterations, {sizing.val_iters} validation batches each")


def describe_plan(plans, configuration, device) -> str:
    """The plan a run trains, and the device and budget it was made for."""
    c = configuration
    net = c.network
    text = (f"plan {c.name}: patch {'x'.join(map(str, c.patch_size))}, batch {c.batch_size}, U-Net "
            f"{net.features_per_stage[0]}->{net.features_per_stage[-1]} features in {net.n_stages} stages")
    compute = plans.compute
    if compute is None:
        return text + f"; sized for {plans.gpu_memory_gb:g} GB"
    cost = compute.configurations.get(c.name, {})
    if "gflop_per_iteration" in cost:
        text += f", {cost['gflop_per_iteration']:.3g} GFLOP per iteration"
    text += f"; made for {compute.device} ({compute.device_name}), {compute.memory_gb:g} GB"
    if compute.sized_for_minutes is not None:
        text += f", sized for {compute.sized_for_minutes:g} minutes of training"
    if compute.device != getattr(device, "type", str(device)):
        text += f" -- training on {device} instead: re-plan with --device for a plan sized to it"
    return text
