"""Training: the one training loop (:class:`Trainer`) and its trainers, losses, checkpoints, schedules, logs."""

from segforge.training.cascade_segmenter import CascadeSegmentationTrainer
from segforge.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from segforge.training.locator_trainer import LocatorTrainer
from segforge.training.options import TrainingOptions
from segforge.training.progress_log import TrainingLog
from segforge.training.registry import TRAINING_STEPS, look_up_step, register_step, training_steps
from segforge.training.schedule import PolyLRSchedule, build_optimizer
from segforge.training.segmentation_trainer import SegmentationTrainer
from segforge.training.trainer import Trainer

__all__ = [
    "CascadeSegmentationTrainer",
    "LocatorTrainer",
    "SegmentationTrainer",
    "Trainer",
    "load_checkpoint",
    "restore_rng_states",
    "rng_states",
    "save_checkpoint",
    "TrainingOptions",
    "TrainingLog",
    "TRAINING_STEPS",
    "look_up_step",
    "register_step",
    "training_steps",
    "PolyLRSchedule",
    "build_optimizer",
]
