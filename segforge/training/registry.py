"""Which trainers train a configuration: a registry of training steps keyed by name.

``segforge_train ID FOLD [-c CONFIG]`` asks :func:`training_steps` for the list of steps of
the configuration and runs them in order:

* ``"segmentation"`` (``2d``, ``3d_fullres``): one step, :class:`SegmentationTrainer`;
* ``"locator"``: one step, :class:`LocatorTrainer`;
* ``"cascade"`` (a segmentation configuration with ``cascade`` settings, e.g.
  ``cascade_fullres``): the locator configuration first, then ``"cascade_segmenter"``
  (:class:`CascadeSegmentationTrainer`).

A step is a function ``(plans, configuration_name, fold, device, options, resume) -> Path``
(the fold folder it trained), registered with :func:`register_step`; the names stored in
plans stay plain strings, never import paths. Unknown names answer "did you mean".
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from segforge.planning.plans import Configuration, Plans
from segforge.registry import look_up
from segforge.training.cascade_segmenter import CascadeSegmentationTrainer
from segforge.training.locator_trainer import LocatorTrainer
from segforge.training.options import TrainingOptions, resolve_device
from segforge.training.trainer import SegmentationTrainer

__all__ = ["TRAINING_STEPS", "register_step", "configuration_kind", "training_steps", "look_up_step", "TrainingStep"]

TrainingStep = Callable[[Plans, str, "int | str", "str | None", TrainingOptions, bool], Path]
TRAINING_STEPS: dict[str, TrainingStep] = {}


def register_step(name: str) -> Callable[[TrainingStep], TrainingStep]:
    def add(step: TrainingStep) -> TrainingStep:
        if name in TRAINING_STEPS:
            raise ValueError(f"training step {name!r} is registered twice")
        TRAINING_STEPS[name] = step
        return step

    return add


@register_step("segmentation")
def train_segmentation(plans: Plans, configuration: str, fold, device, options: TrainingOptions, resume: bool) -> Path:
    return SegmentationTrainer(plans, configuration, fold, device=device, options=options).run(resume=resume)


@register_step("locator")
def train_locator(plans: Plans, configuration: str, fold, device, options: TrainingOptions, resume: bool) -> Path:
    trainer = LocatorTrainer(plans.dataset_name, fold, configuration, epochs=options.epochs,
                             iters_per_epoch=options.iters_per_epoch, max_minutes=options.max_minutes,
                             device=str(resolve_device(device)), seed=options.seed, resume=resume)
    trainer.run()
    return trainer.output_dir


@register_step("cascade_segmenter")
def train_cascade_segmenter(plans: Plans, configuration: str, fold, device, options: TrainingOptions,
                            resume: bool) -> Path:
    return CascadeSegmentationTrainer(plans, configuration, fold, device=device, options=options).run(resume=resume)


def configuration_kind(configuration: Configuration) -> str:
    """``"cascade"`` for a segmenter with cascade settings, else the configuration's ``kind``."""
    if configuration.kind == "segmentation" and configuration.cascade is not None:
        return "cascade"
    return configuration.kind


def training_steps(plans: Plans, configuration_name: str | None = None) -> list[tuple[str, str]]:
    """``[(step name, configuration name), ...]`` to run, in order, for ``configuration_name`` (default: the plan's)."""
    configuration = plans.configuration(configuration_name)
    kind = configuration_kind(configuration)
    if kind == "cascade":
        locator = configuration.cascade.locator_configuration
        plans.configuration(locator)  # must be planned
        return [("locator", locator), ("cascade_segmenter", configuration.name)]
    return [(kind, configuration.name)]


def look_up_step(name: str) -> TrainingStep:
    return look_up(name, TRAINING_STEPS, "training step")
