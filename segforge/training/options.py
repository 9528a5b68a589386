"""Everything a training run can be told, in one dataclass that round-trips through JSON."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import torch

from segforge.data.augmentation import AugmentationSettings
from segforge.errors import InputError

__all__ = ["TrainingOptions", "resolve_device"]


@dataclass
class TrainingOptions:
    """Budgets, optimiser and run behaviour (the defaults are nnU-Net's where it has one).

    ``max_minutes``: stop after the epoch that would otherwise run past the budget (judged
    from the last epoch's duration); ``patience``: stop after this many epochs without a
    better EMA pseudo-Dice. ``num_workers`` None = :func:`segforge.data.default_num_workers`;
    ``cpu_threads`` None = ``OMP_NUM_THREADS`` when set, else the CPU count less the workers
    (CPU training only).
    """

    epochs: int = 1000
    iters_per_epoch: int = 250
    val_iters: int = 50
    max_minutes: float | None = None
    patience: int | None = None
    seed: int = 12345
    deterministic: bool = False
    optimizer: str = "sgd"
    initial_lr: float | None = None
    weight_decay: float | None = None
    grad_clip: float = 12.0
    ema_momentum: float = 0.9  # ema = m * ema + (1 - m) * mean pseudo-Dice
    num_workers: int | None = None
    cpu_threads: int | None = None
    progress_bar: bool = True
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
        if isinstance(self.augmentation, dict):
            d = dict(self.augmentation)
            self.augmentation = AugmentationSettings(**{k: tuple(v) if isinstance(v, list) and k != "mirror_axes"
                                                        else v for k, v in d.items()})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augmentation"] = self.augmentation.to_dict()
        return d


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an :class:`InputError`."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {device}")
    return device


def cpu_threads(options: TrainingOptions, num_workers: int) -> int:
    """Threads for CPU training: the option, else ``OMP_NUM_THREADS``'s setting, else the CPUs left by the workers."""
    if options.cpu_threads is not None:
        return max(1, int(options.cpu_threads))
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) - num_workers)
