"""Everything a training run can be told, in one dataclass that round-trips through JSON."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields

import torch

from segforge.data.augmentation import AugmentationSettings
from segforge.errors import InputError
from segforge.registry import look_up
from segforge.training.experiment_loggers import LOGGERS
from segforge.training.mixup import MIXUP_MODES

__all__ = ["TrainingOptions", "cpu_threads", "changed_options", "AUGMENT_ON", "augment_on", "compile_network"]

AUGMENT_ON = ("gpu", "cpu")


@dataclass
class TrainingOptions:
    """Budgets, optimiser and run behaviour (the defaults are nnU-Net's where it has one).

    Every trainer honours every option or refuses it with one line naming it (a trainer
    lists what it refuses in ``refused_options``; only a value other than the default is
    refused). ``max_minutes``: training stops within one iteration of this budget (the final
    checkpoint comes after it); ``iters_per_epoch`` / ``val_iters`` None = nnU-Net's 250 / 50,
    or under ``max_minutes`` sized from the measured iteration time
    (:mod:`segforge.training.time_budget`); ``patience``: stop after this many epochs without
    a better value of the trainer's selection metric (the EMA pseudo-Dice; the locator's median
    centroid error). ``optimizer`` / ``initial_lr`` / ``weight_decay`` None = the trainer's
    optimiser (``sgd``; ``adam`` for the locator) with that optimiser's defaults.
    ``num_workers`` None = :func:`segforge.data.default_num_workers`; ``cpu_threads`` None =
    ``OMP_NUM_THREADS`` when set, else the CPU count less the workers (CPU training only).
    ``augment_on`` None = ``gpu`` on CUDA, ``cpu`` elsewhere (:func:`augment_on`); ``compile`` None
    = on CUDA, off elsewhere (:func:`compile_network`).
    ``mixup``: ``"input"`` or ``"manifold"`` mixup of the training batches with
    ``lam ~ Beta(mixup_alpha, mixup_alpha)`` (:mod:`segforge.training.mixup`). ``pseudo_labels``:
    a ``segforge_predict`` output folder whose cases (images + predicted labels, probabilities when
    saved) join the training cases of every fold, never the validation ones; each is drawn
    ``pseudo_weight`` times as often as a labelled case (:mod:`segforge.preprocessing.pseudo_labels`).
    ``pretrained_weights``: a checkpoint to start the network from (fine-tuning; every weight whose
    name and shape match is loaded, :mod:`segforge.training.pretrained`).
    """

    epochs: int = 1000
    iters_per_epoch: int | None = None
    val_iters: int | None = None
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
    logger: str = "none"  # experiment logger: "none", "tensorboard" or "wandb" (segforge.training.experiment_loggers)
    val_plot_every: int = 5  # epochs between val_pred.png / val_truth.png updates (and at the end)
    pretrained_weights: str | None = None
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)
    augment_on: str | None = None  # "gpu": batched torch augmentation on the training device; "cpu": batchgenerators
    compile: bool | None = None  # torch.compile the network's training and validation steps
    mixup: str = "none"  # "input" or "manifold" (segforge.training.mixup); "none": no mixup
    mixup_alpha: float = 0.2  # lam ~ Beta(alpha, alpha)
    pseudo_labels: str | None = None  # a segforge_predict output folder: its cases join every fold's training set
    pseudo_weight: float = 1.0  # a pseudo-labelled case is drawn this many times as often as a labelled one

    def __post_init__(self):
        for name in ("epochs", "iters_per_epoch", "val_iters"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
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
        look_up(self.logger, LOGGERS, "logger")  # "did you mean"
        if self.mixup not in MIXUP_MODES:
            raise InputError(f"--mixup must be one of {', '.join(MIXUP_MODES)}, got {self.mixup!r}")
        if not (math.isfinite(self.mixup_alpha) and self.mixup_alpha > 0):
            raise InputError(f"--mixup-alpha must be a positive number (Beta(alpha, alpha)), got {self.mixup_alpha}")
        if not (math.isfinite(self.pseudo_weight) and self.pseudo_weight > 0):
            raise InputError(f"--pseudo-weight must be a positive number, got {self.pseudo_weight}")
        if self.pseudo_labels is not None:
            self.pseudo_labels = str(self.pseudo_labels)
        if self.num_workers is not None and self.num_workers < 0:
            raise InputError(f"--num-workers must be 0 or more, got {self.num_workers}")
        if self.augment_on not in (None, *AUGMENT_ON):
            raise InputError(f"--augment-on must be one of {', '.join(AUGMENT_ON)}, got {self.augment_on!r}")
        if isinstance(self.augmentation, dict):
            d = dict(self.augmentation)
            self.augmentation = AugmentationSettings(**{k: tuple(v) if isinstance(v, list) and k != "mirror_axes"
                                                        else v for k, v in d.items()})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augmentation"] = self.augmentation.to_dict()
        return d


def cpu_threads(options: TrainingOptions, num_workers: int, processes: int = 1) -> int:
    """Threads for CPU training: the option, else ``OMP_NUM_THREADS``'s setting, else the CPUs left by the
    workers (of this process's share of the CPUs when ``processes`` train on the machine)."""
    if options.cpu_threads is not None:
        return max(1, int(options.cpu_threads))
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // max(1, int(processes)) - num_workers)


def changed_options(options: TrainingOptions) -> list[str]:
    """Names of the options whose value differs from the default."""
    default = TrainingOptions()
    return [f.name for f in fields(TrainingOptions) if getattr(options, f.name) != getattr(default, f.name)]


def augment_on(options: TrainingOptions, device: torch.device) -> str:
    """Where training augmentation runs: the option, else ``gpu`` (the training device) on CUDA and
    ``cpu`` (batchgenerators in the loader's workers) elsewhere. ``gpu`` on a CPU device runs the
    torch augmentation on the CPU, in the training process."""
    if options.augment_on is not None:
        return options.augment_on
    return "gpu" if torch.device(device).type == "cuda" else "cpu"


def compile_network(options: TrainingOptions, device: torch.device) -> bool:
    """Whether to ``torch.compile`` the network: the option, else on CUDA only (on the CPU compiling
    a U-Net costs minutes and was not measured to pay; docs/training.md)."""
    if options.compile is not None:
        return bool(options.compile)
    return torch.device(device).type == "cuda"
