"""Which trainers train a configuration: a registry of trainers keyed by step name.

``segforge_train ID FOLD [-c CONFIG]`` asks :func:`training_steps` for the list of steps of
the configuration and runs them in order:

* ``"segmentation"`` (``2d``, ``3d_fullres``): one step, :class:`SegmentationTrainer`;
* ``"locator"``: one step, :class:`LocatorTrainer`;
* ``"cascade"`` (a segmentation configuration with ``cascade`` settings, e.g.
  ``cascade_fullres``): the locator configuration first, then ``"cascade_segmenter"``
  (:class:`CascadeSegmentationTrainer`).

Every trainer is built the same way, ``cls(plans, configuration, fold, device=..., options=...)``,
and trained by ``.run(resume)`` (:class:`~segforge.training.trainer.Trainer`). Plans store
names, never import paths; an unknown name answers "did you mean".
"""

from __future__ import annotations

from typing import Callable

from segforge.planning.plans import Configuration, Plans
from segforge.registry import look_up
from segforge.training.cascade_segmenter import CascadeSegmentationTrainer
from segforge.training.locator_trainer import LocatorTrainer
from segforge.training.segmentation_trainer import SegmentationTrainer
from segforge.training.trainer import Trainer

__all__ = ["TRAINING_STEPS", "register_step", "configuration_kind", "training_steps", "look_up_step"]

TRAINING_STEPS: dict[str, type[Trainer]] = {
    "segmentation": SegmentationTrainer,
    "locator": LocatorTrainer,
    "cascade_segmenter": CascadeSegmentationTrainer,
}


def register_step(name: str) -> Callable[[type[Trainer]], type[Trainer]]:
    """Class decorator adding a :class:`Trainer` subclass to :data:`TRAINING_STEPS` under ``name``."""

    def add(cls: type[Trainer]) -> type[Trainer]:
        if name in TRAINING_STEPS:
            raise ValueError(f"training step {name!r} is registered twice")
        TRAINING_STEPS[name] = cls
        return cls

    return add


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


def look_up_step(name: str) -> type[Trainer]:
    """The trainer class of step ``name``."""
    return look_up(name, TRAINING_STEPS, "training step")
