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

__all__ = ["TimeBudget", "EpochSizing", "size_epochs", "TARGET_EPOCHS", "VALIDATION_SHARE", "MIN_EPOCH_SECONDS",
           "MAX_ITERS_PER_EPOCH", "MAX_VAL_ITERS"]

TARGET_EPOCHS = 30
VALIDATION_SHARE = 0.1
MIN_EPOCH_SECONDS = 5.0
MAX_ITERS_PER_EPOCH = 250
MAX_VAL_ITERS = 50
_WINDOW = 25  # iterations whose median time predicts the next one


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
        """Whether one more iteration (at the recent median time) ends within the budget."""
        per = self.seconds_per_iteration or 0.0
        return self.elapsed + per <= self.seconds

    def iterations_left(self, extra_seconds_per_iteration: float = 0.0) -> int:
        """Iterations that still fit at the recent median time (plus a per-iteration share of other work)."""
        per = (self.seconds_per_iteration or 0.0) + extra_seconds_per_iteration
        return int(self.left / per) if per > 0 else 0


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
