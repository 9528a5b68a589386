"""Training: losses, the generic segmentation trainer, checkpoints, schedules, logs and plots."""

from segforge.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from segforge.training.options import TrainingOptions, resolve_device
from segforge.training.progress_log import TrainingLog
from segforge.training.registry import TRAINING_STEPS, register_step, training_steps
from segforge.training.schedule import PolyLRSchedule, build_optimizer
from segforge.training.trainer import SegmentationTrainer

__all__ = [
    "load_checkpoint",
    "restore_rng_states",
    "rng_states",
    "save_checkpoint",
    "TrainingOptions",
    "resolve_device",
    "TrainingLog",
    "TRAINING_STEPS",
    "register_step",
    "training_steps",
    "PolyLRSchedule",
    "build_optimizer",
    "SegmentationTrainer",
]
