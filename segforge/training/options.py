"""Everything a training run can be told, in one dataclass that round-trips through JSON."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields

import torch

from segforge.data.augmentation import AugmentationSettings
from segforge.errors import InputError

__all__ = ["TrainingOptions", "cpu_threads", "changed_options"]


@dataclass
class TrainingOptions:
    """Budgets, optimiser and run behaviour (the defaults are nnU-Net's where it has one).

    Every trainer honours every option or refuses it with one line naming it (a trainer
    lists what it refuses in ``refused_options``; only a value other than the default is
    refused). ``max_minutes``: stop after the epoch that would otherwise run past the budget
    (judged from the last epoch's duration); ``patience``: stop after this many epochs without
    a better value of the trainer's selection metric (the EMA pseudo-Dice; the locator's median
    centroid error). ``optimizer`` / ``initial_lr`` / ``weight_decay`` None = the trainer's
    optimiser (``sgd``; ``adam`` for the locator) with that optimiser's defaults.
    ``num_workers`` None = :func:`segforge.data.default_num_workers`; ``cpu_threads`` None =
    ``OMP_NUM_THREADS`` when set, else the CPU count less the workers (CPU training only).
    """

    epochs: int = 1000
    iters_per_epoch: int = 250
    val_iters: int = 50
    max_minutes: float | None = None
    patience: int | None = None
    seed: int = 12345
    deterministic: bool = False
    optimizer: str | None = None
    initial_lr: float | None = None
    weight_decay: float | None = None
    grad_clip: float = 12.0
    ema_momentum: float = 0.9  # ema = m * ema + (1 - m) * mean pseudo-Dice
    num_workers: int | None = None
    cpu_threads: int | None = None
    progress_bar: bool = True
    plots: bool = True  # progress and validation pictures (drawn in the background)
    tensorboard: bool = False
    val_plot_every: int = 5  # epochs between val_pred.png / val_truth.png updates (and at the end)
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)

    def __post_init__(self):
        for name in ("epochs", "iters_per_epoch", "val_iters"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise InputError(f"--max-minutes must be a positive number of minutes, got {self.max_minutes}")
        if self.initial_lr is not None and not (math.isfinite(self.initial_lr) and self.initial_lr > 0):
            raise InputError(f"--lr must be a positive finite learning rate, got {self.initial_lr}")
        if self.weight_decay is not None and not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError(f"weight decay must be a finite number >= 0, got {self.weight_decay}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise InputError(f"--seed must be a whole number from 0 to {2**32 - 1}, got {self.seed}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise InputError(f"gradient clipping must be a positive finite norm, got {self.grad_clip}")
        if self.patience is not None and self.patience < 1:
            raise InputError(f"--patience must be at least 1, got {self.patience}")
        if self.num_workers is not None and self.num_workers < 0:
            raise InputError(f"--num-workers must be 0 or more, got {self.num_workers}")
        if isinstance(self.augmentation, dict):
            d = dict(self.augmentation)
            self.augmentation = AugmentationSettings(**{k: tuple(v) if isinstance(v, list) and k != "mirror_axes"
                                                        else v for k, v in d.items()})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augmentation"] = self.augmentation.to_dict()
        return d


def cpu_threads(options: TrainingOptions, num_workers: int) -> int:
    """Threads for CPU training: the option, else ``OMP_NUM_THREADS``'s setting, else the CPUs left by the workers."""
    if options.cpu_threads is not None:
        return max(1, int(options.cpu_threads))
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) - num_workers)


def changed_options(options: TrainingOptions) -> list[str]:
    """Names of the options whose value differs from the default."""
    default = TrainingOptions()
    return [f.name for f in fields(TrainingOptions) if getattr(options, f.name) != getattr(default, f.name)]
