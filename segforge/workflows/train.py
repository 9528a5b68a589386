"""Train one fold of a configuration, then predict and score its validation cases.

What ``segforge_train`` runs. The steps come from the training registry (a cascade: the
locator, then the segmenter); after the last one the fold's validation cases are predicted
from their raw files with the real predictor and scored (:func:`validate_fold`). The
trainers never run the predictor themselves: validation is orchestrated here, above both.

Started as one of several processes (torchrun, SLURM: :mod:`segforge.training.distributed`),
it joins their process group first; every process trains, the processes wait for each other
between steps (the segmenter reads what the locator's rank 0 wrote), and rank 0 alone
validates the fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from segforge import paths
from segforge.devices import resolve_device
from segforge.errors import InputError
from segforge.planning.plans import Plans
from segforge.training.distributed import ProcessGroup
from segforge.training.options import TrainingOptions
from segforge.training.registry import configuration_kind, look_up_step, training_steps
from segforge.workflows.validation import validate_fold

__all__ = ["train_fold", "validate_trained_fold", "segmentation_model_folder"]


def train_fold(plans: Plans, fold: int | str, configuration: str | None = None, device: str | None = None,
               options: TrainingOptions | None = None, resume: bool = False, validate: bool = True,
               log: Callable[[str], None] = print) -> list[Path]:
    """Run the training steps of ``configuration`` (default: the plan's) for ``fold``; returns
    their fold folders in order. With ``validate`` the last step's model is validated."""
    options = options or TrainingOptions()
    steps = training_steps(plans, configuration)
    group = ProcessGroup.from_environment(resolve_device(device).type)
    if not group.is_main:
        log = lambda line: None  # noqa: E731 - rank 0 speaks for the run
    elif group.enabled:
        log(f"distributed training: {group.world_size} processes")
    folders = []
    try:
        for step, name in steps:
            if len(steps) > 1:
                log(f"training {name} ({step})")
            trainer = look_up_step(step)(plans, name, fold, device=device, options=options, log=log)
            folders.append(trainer.run(resume=resume))
            group.barrier()  # what rank 0 wrote (checkpoints, locator_validation.json) is there for all
    finally:
        group.close()
    if validate and group.is_main and configuration_kind(plans.configuration(steps[-1][1])) != "locator":
        validate_trained_fold(folders[-1].parent, fold, group.device(resolve_device(device)), log)
    return folders


def segmentation_model_folder(plans: Plans, configuration: str | None = None) -> Path:
    """The model folder whose fold validation ``--validation-only`` runs (a segmentation's, not a locator's)."""
    conf = plans.configuration(configuration)
    kind = configuration_kind(conf)
    if kind == "locator":
        raise InputError(f"--validation-only scores segmentations; {conf.name!r} is a locator configuration "
                         "(its validation is locator_validation.json, written at the end of training)")
    return paths.results_root() / plans.dataset_name / paths.model_folder_name(paths.TRAINER_OF_KIND[kind], conf.name)


def validate_trained_fold(model_folder: Path, fold: int | str, device: str | None = None,
                          log: Callable[[str], None] = print) -> dict | None:
    """:func:`validate_fold`; a dataset whose raw cases are gone is reported, not an error."""
    try:
        return validate_fold(model_folder, fold, device, log=log)
    except InputError as exc:
        log(f"fold validation skipped: {exc}")
        return None
