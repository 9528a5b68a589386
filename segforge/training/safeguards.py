"""What stops a training run before it wastes time or damages a model folder (issue 18).

* :func:`check_training_memory`: a training step whose activations cannot fit the device is
  refused with the estimate and the limit, before the network is built (not by the kernel's
  out-of-memory killer);
* :func:`check_finite_training`: a run whose weights (or every loss of an epoch) stopped being
  finite has diverged: it stops with one line, before anything of that epoch is saved, so
  ``checkpoint_latest.pt`` stays the last good state;
* :func:`check_model_folder_plans`: a model folder never holds folds trained with different
  plans: training a fold with new plans beside folds trained with older ones is refused.

The :class:`~segforge.training.trainer.Trainer` calls them; prediction makes the matching
check for every checkpoint it loads (``ModelFolder.check_plans_version``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from segforge.errors import InputError
from segforge.io.checkpoint import fold_plans_versions

__all__ = ["check_training_memory", "check_finite_training", "check_model_folder_plans"]


def check_training_memory(configuration, plans, device: torch.device, half_precision: bool, plans_file: Path,
                          batch_size: int | None = None) -> None:
    """Refuse a patch/batch whose training activations (the planner's estimate) exceed what ``device`` has free.

    ``batch_size``: this process's share of the batch (a distributed run splits it); default the plan's."""
    from segforge.networks.memory import training_memory_bytes
    from segforge.resources import check_memory

    c = configuration
    batch = int(batch_size or c.batch_size)
    needed = training_memory_bytes(c.network, c.patch_size, batch, c.network_input_channels(plans.num_channels),
                                   plans.num_classes,
                                   2 if half_precision else 4)
    check_memory(needed, device, f"training {c.name} with patch {'x'.join(map(str, c.patch_size))} at batch "
                 f"{batch}", plans_file,
                 "plan for this device (segforge_plan_and_preprocess --gpu-memory-gb) or lower --batch-size")


def check_finite_training(network: torch.nn.Module, epoch: int, nonfinite_iterations: int, iterations: int,
                          last_saved_epoch: int | None, output_folder: Path, initial_lr: float) -> None:
    """Raise when the weights are no longer finite, or every iteration's loss of the epoch was not.

    A few non-finite losses with finite weights are fp16 overflows the gradient scaler skipped:
    they are tolerated (and left out of the epoch's mean loss)."""
    weights_ok = bool(torch.stack([torch.isfinite(p).all() for p in network.parameters()]).all())
    if weights_ok and nonfinite_iterations < iterations:
        return
    kept = (f"checkpoint_latest.pt (epoch {last_saved_epoch}) is the last good state and is kept"
            if last_saved_epoch is not None else "no checkpoint had been written yet")
    what = "the weights" if not weights_ok else f"the loss of all {iterations} iterations"
    raise InputError(f"training diverged in epoch {epoch}: {what} became NaN or infinite; stopped without saving "
                     f"this epoch; {kept}; lower the learning rate (--lr, now {initial_lr:g}) or check the data",
                     output_folder)


def check_model_folder_plans(model_folder: Path, fold, current_version: str) -> None:
    """Refuse to train ``fold`` with plans ``current_version`` when other folds of the model folder were
    trained with other plans (``plans.json`` would be overwritten under them)."""
    others = {f: v for f, v in fold_plans_versions(model_folder).items()
              if f != str(fold) and v is not None and v != current_version}
    if not others:
        return
    folds = ", ".join(sorted(others))
    raise InputError(
        f"fold(s) {folds} in this model folder were trained with other plans (plans_version "
        f"{', '.join(sorted(set(others.values())))}) than fold {fold} would be ({current_version}): the plans changed "
        "since (a new segforge_plan_and_preprocess?). Training would mix folds of two plans in one model; move or "
        f"delete fold(s) {folds} to train every fold with the new plans, or re-plan as before", model_folder)
