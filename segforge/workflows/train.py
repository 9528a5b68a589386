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

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from segforge import paths
from segforge.devices import resolve_device
from segforge.errors import InputError
from segforge.planning.budget_rule import stage_shares
from segforge.planning.plans import Plans
from segforge.training.distributed import ProcessGroup
from segforge.training.options import TrainingOptions
from segforge.training.registry import configuration_kind, look_up_step, training_steps
from segforge.workflows.validation import validate_fold

__all__ = ["train_fold", "stage_budgets", "validate_trained_fold", "segmentation_model_folder", "MIN_STAGE_MINUTES"]

MIN_STAGE_MINUTES = 0.05  # a stage left with less still runs its set-up and a few iterations


def train_fold(plans: Plans, fold: int | str, configuration: str | None = None, device: str | None = None,
               options: TrainingOptions | None = None, resume: bool = False, validate: bool = True,
               log: Callable[[str], None] = print, save_probabilities: bool = False) -> list[Path]:
    """Run the training steps of ``configuration`` (default: the plan's) for ``fold``; returns
    their fold folders in order. With ``validate`` the last step's model is validated
    (``save_probabilities``: with the validation cases' probabilities, for ensembles)."""
    options = options or TrainingOptions()
    if options.max_minutes is None and plans.compute is not None and plans.compute.train_minutes is not None:
        options = replace(options, max_minutes=plans.compute.train_minutes)
        log(f"time budget {options.max_minutes:g} minutes: the plan's (segforge_plan_and_preprocess --train-minutes)")
    steps = training_steps(plans, configuration)
    group = ProcessGroup.from_environment(resolve_device(device).type)
    if not group.is_main:
        log = lambda line: None  # noqa: E731 - rank 0 speaks for the run
    elif group.enabled:
        log(f"distributed training: {group.world_size} processes")
    budgets = stage_budgets(plans, [name for _, name in steps], options.max_minutes)
    started = time.monotonic()
    folders = []
    try:
        for i, (step, name) in enumerate(steps):
            step_options = options
            if options.max_minutes is not None and len(steps) > 1:
                # this stage's share; the last stage gets whatever the earlier ones left (rank 0's clock)
                left = group.broadcast_object(options.max_minutes - (time.monotonic() - started) / 60)
                minutes = left if i == len(steps) - 1 else min(left, budgets[name][0])
                step_options = replace(options, max_minutes=max(minutes, MIN_STAGE_MINUTES))
                log(f"training {name} ({step}) for {step_options.max_minutes:.2f} of {options.max_minutes:g} "
                    f"minutes: {budgets[name][1]}")
            elif len(steps) > 1:
                log(f"training {name} ({step})")
            step_options = _pretrained_for(step_options, plans.configuration(name), len(steps) > 1, log)
            trainer = look_up_step(step)(plans, name, fold, device=device, options=step_options, log=log)
            folders.append(trainer.run(resume=resume))
            group.barrier()  # what rank 0 wrote (checkpoints, locator_validation.json) is there for all
    finally:
        group.close()
    if options.max_minutes is not None:
        log(f"training and final checkpoint{'s of all stages' if len(steps) > 1 else ''}: "
            f"{(time.monotonic() - started) / 60:.2f} minutes (budget {options.max_minutes:g})")
    if validate and group.is_main and configuration_kind(plans.configuration(steps[-1][1])) != "locator":
        start = time.monotonic()
        # under a time budget without test-time mirroring: 1/8 of the time in 3D (--validation-only mirrors)
        mirrored = options.max_minutes is None
        validate_trained_fold(folders[-1].parent, fold, group.device(resolve_device(device)), log, tta=mirrored,
                              save_probabilities=save_probabilities)
        log(f"fold validation: {time.monotonic() - start:.1f} s (after the training budget"
            + ("" if mirrored else "; without test-time mirroring: segforge_train ... --validation-only mirrors") + ")")
    return folders


def stage_budgets(plans: Plans, stages: list[str], minutes: float | None) -> dict[str, tuple[float | None, str]]:
    """``{stage: (minutes, why)}``: a cascade's locator gets its planned share of the budget
    (:func:`segforge.planning.budget_rule.stage_shares`, from the plan's predicted iteration
    times; an even split when the plan has none), the segmenter the rest."""
    if minutes is None or len(stages) < 2:
        return {name: (minutes, "the whole budget") for name in stages}
    costs = plans.compute.configurations if plans.compute is not None else {}
    seconds = {name: costs.get(name, {}).get("predicted_seconds_per_iteration") for name in stages}
    if all(seconds.values()):
        shares, why = stage_shares(plans, seconds, minutes, stages[-1])
    else:
        shares, why = {name: 1 / len(stages) for name in stages}, "no predicted iteration times in the plan: even split"
    return {name: (minutes * shares[name], why) for name in stages}


def _pretrained_for(options: TrainingOptions, configuration, several_steps: bool, log) -> TrainingOptions:
    """A cascade's steps train different kinds of network: ``--pretrained-weights`` starts the steps
    of the checkpoint's kind (the segmenter, from a segmentation checkpoint); the others start fresh."""
    if not options.pretrained_weights or not several_steps:
        return options
    from segforge.io.checkpoint import load_checkpoint
    from segforge.training.pretrained import checkpoint_configuration

    path = options.pretrained_weights
    kind = checkpoint_configuration(load_checkpoint(path), path).kind
    if kind == configuration.kind:
        return options
    log(f"{configuration.name}: trained from scratch (the pretrained checkpoint holds a {kind} network)")
    return replace(options, pretrained_weights=None)


def segmentation_model_folder(plans: Plans, configuration: str | None = None) -> Path:
    """The model folder whose fold validation ``--validation-only`` runs (a segmentation's, not a locator's)."""
    conf = plans.configuration(configuration)
    kind = configuration_kind(conf)
    if kind == "locator":
        raise InputError(f"--validation-only scores segmentations; {conf.name!r} is a locator configuration "
                         "(its validation is locator_validation.json, written at the end of training)")
    return paths.results_root() / plans.dataset_name / paths.model_folder_name(paths.TRAINER_OF_KIND[kind], conf.name)


def validate_trained_fold(model_folder: Path, fold: int | str, device: str | None = None,
                          log: Callable[[str], None] = print, tta: bool = True,
                          save_probabilities: bool = False) -> dict | None:
    """:func:`validate_fold`; a dataset whose raw cases are gone is reported, not an error."""
    try:
        return validate_fold(model_folder, fold, device, log=log, tta=tta, save_probabilities=save_probabilities)
    except InputError as exc:
        log(f"fold validation skipped: {exc}")
        return None
