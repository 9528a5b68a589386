"""Which trainers train a configuration: a registry keyed by the configuration's kind.

``segforge_train ID FOLD [-c CONFIG]`` asks :func:`training_steps` for the list of steps of
the configuration and runs them in order:

* ``"segmentation"`` (``2d``, ``3d_fullres``): one step, :class:`SegmentationTrainer`;
* ``"locator"``: one step, the cascade's ``LocatorTrainer``;
* ``"cascade"`` (a segmentation configuration with ``cascade`` settings, e.g.
  ``cascade_fullres``): the locator configuration first, then the cascade segmenter.

A step is a function ``(plans, configuration_name, fold, device, options, resume) -> Path``
(the fold folder it trained). The cascade package registers its segmenter with
``TRAINING_STEPS["cascade_segmenter"] = its_step`` (or :func:`register_step`); the names
stored in plans stay plain strings, never import paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from segforge.errors import InputError
from segforge.planning.plans import Configuration, Plans
from segforge.training.options import TrainingOptions

__all__ = ["TRAINING_STEPS", "register_step", "configuration_kind", "training_steps", "look_up_step", "TrainingStep"]

TrainingStep = Callable[[Plans, str, "int | str", "str | None", TrainingOptions, bool], Path]
TRAINING_STEPS: dict[str, TrainingStep] = {}

# modules that register steps when imported (looked up lazily, so a missing optional part only
# fails when it is needed)
_STEP_MODULES = ("segforge.cascade.training_steps",)


def register_step(name: str) -> Callable[[TrainingStep], TrainingStep]:
    def add(step: TrainingStep) -> TrainingStep:
        TRAINING_STEPS[name] = step
        return step

    return add


@register_step("segmentation")
def train_segmentation(plans: Plans, configuration: str, fold, device, options: TrainingOptions, resume: bool) -> Path:
    from segforge.training.trainer import SegmentationTrainer

    return SegmentationTrainer(plans, configuration, fold, device=device, options=options).run(resume=resume)


@register_step("locator")
def train_locator(plans: Plans, configuration: str, fold, device, options: TrainingOptions, resume: bool) -> Path:
    from segforge.cascade.locator_trainer import LocatorTrainer

    trainer = LocatorTrainer(plans.dataset_name, fold, configuration, epochs=options.epochs,
                             iters_per_epoch=options.iters_per_epoch, max_minutes=options.max_minutes,
                             device=str(device or _default_device()), seed=options.seed, resume=resume)
    trainer.run()
    return trainer.output_dir


def _default_device() -> str:
    from segforge.training.options import resolve_device

    return str(resolve_device(None))


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
    if name not in TRAINING_STEPS:
        for module in _STEP_MODULES:
            try:
                __import__(module)
            except ModuleNotFoundError as exc:
                if exc.name != module and not module.startswith(str(exc.name)):
                    raise
    if name not in TRAINING_STEPS:
        raise InputError(f"no trainer is registered for {name!r} in this version of segforge "
                         f"(registered: {', '.join(sorted(TRAINING_STEPS))})")
    return TRAINING_STEPS[name]
