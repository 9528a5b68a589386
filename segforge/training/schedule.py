"""Optimisers by name and the polynomial learning-rate decay.

``sgd``: SGD with Nesterov momentum 0.99 (nnU-Net's choice: robust with instance norm and
deep supervision); ``adamw``: AdamW, for users who prefer it; ``adam``: Adam without weight
decay, the locator's default (regressing a small blob with SGD's high learning rate tends to
collapse to the all-zero map). The learning rate follows
``lr = initial_lr * (1 - step / total_steps) ** 0.9``, updated every iteration. Under a
time budget (``--max-minutes``) the locator trainer shortens ``total_steps`` after every
epoch to the steps that still fit (:meth:`PolyLRSchedule.fit_to_time`), so its rate reaches
zero when the time runs out. The segmentation trainer does not decay over a budget, and its
SGD uses momentum 0.9 there instead of 0.99: measured, decaying lost the small classes with
either momentum, and 0.9 learned them sooner (docs/planning.md "The learning rate over a budget").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from segforge.registry import look_up

__all__ = ["OptimizerDefaults", "OPTIMIZERS", "build_optimizer", "PolyLRSchedule"]


@dataclass(frozen=True)
class OptimizerDefaults:
    initial_lr: float
    weight_decay: float
    why: str


OPTIMIZERS: dict[str, OptimizerDefaults] = {
    "sgd": OptimizerDefaults(1e-2, 3e-5, "nnU-Net's SGD: Nesterov momentum 0.99, lr 1e-2, weight decay 3e-5"),
    "adamw": OptimizerDefaults(1e-3, 1e-2, "AdamW with the usual lr 1e-3 and decoupled weight decay 1e-2"),
    "adam": OptimizerDefaults(3e-3, 0.0, "Adam, lr 3e-3, no weight decay: the locator's heatmap regression"),
}


def build_optimizer(params, name: str, initial_lr: float | None = None,
                    weight_decay: float | None = None, momentum: float = 0.99) -> torch.optim.Optimizer:
    """The optimiser ``name`` (``"sgd"``, ``"adamw"`` or ``"adam"``) with its defaults unless overridden
    (``momentum``: SGD's Nesterov momentum)."""
    defaults = look_up(name, OPTIMIZERS, "optimizer")
    lr = defaults.initial_lr if initial_lr is None else float(initial_lr)
    wd = defaults.weight_decay if weight_decay is None else float(weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


class PolyLRSchedule:
    """``initial_lr * (1 - step / total_steps) ** exponent``, written into the optimiser at every :meth:`step`.

    With ``hold`` h > 0 the rate stays at ``initial_lr`` for the first h of the steps and then
    decays as ``initial_lr * ((1 - progress) / (1 - h)) ** exponent`` (h 0.8, exponent 1: the
    "warm-up, stable, decay" schedule, linear to zero over the last 20 %).
    The state is plain numbers, so it sits in a ``weights_only`` checkpoint; resuming sets
    the same step and therefore the same learning rate as an uninterrupted run.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float, total_steps: int, exponent: float = 0.9,
                 hold: float = 0.0):
        self.optimizer = optimizer
        self.initial_lr = float(initial_lr)
        self.total_steps = max(1, int(total_steps))
        self.planned_steps = self.total_steps  # the decay never ends later than this
        self.exponent = float(exponent)
        self.hold = float(hold)
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        progress = min(max(step, 0), self.total_steps) / self.total_steps
        if progress < self.hold:
            return self.initial_lr
        return self.initial_lr * ((1.0 - progress) / (1.0 - self.hold)) ** self.exponent

    @property
    def lr(self) -> float:
        return self.lr_at(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def fit_to_time(self, seconds_left: float, seconds_per_step: float, steps_per_epoch: int = 1) -> None:
        """End the decay when ``seconds_left`` run out at ``seconds_per_step`` (never later than planned).

        Only whole epochs count (the trainers never start an epoch that would not fit). Called
        after every epoch, so one slow epoch does not end the decay early for good.
        """
        if seconds_per_step <= 0:
            return
        steps = int(seconds_left / seconds_per_step) // steps_per_epoch * steps_per_epoch
        fits = self.step_count + max(steps, 1)
        self.total_steps = max(1, min(self.planned_steps, fits))
        self._apply()

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict:
        return {"step": self.step_count, "total_steps": self.total_steps, "initial_lr": self.initial_lr,
                "exponent": self.exponent}

    def load_state_dict(self, state: dict) -> None:
        """Restore the step (the total and initial lr come from this run's options; a total that a
        time budget shortened stays shortened)."""
        self.step_count = int(state["step"])
        self.total_steps = max(1, min(self.planned_steps, int(state.get("total_steps", self.total_steps))))
        self._apply()
