"""Every registered trainer trains, resumes and writes the one checkpoint format; every option
of TrainingOptions is read by each trainer's loop or refused by it."""

import ast
import dataclasses
import inspect

import pytest
import torch

from helpers.cascade_dataset import make_cascade_dataset
from helpers.fake_preprocessed import write_fake_dataset

from segforge import paths
from segforge.io.checkpoint import load_checkpoint
from segforge.planning.plans import Plans
from segforge.training import options as options_module
from segforge.training import reporting
from segforge.training.options import TrainingOptions
from segforge.training.registry import TRAINING_STEPS, configuration_kind

# step -> (dataset builder, configuration): a new trainer must say what it trains on here
DATASETS = {
    "segmentation": (lambda root: Plans.load(write_fake_dataset(root) / "plans.json"), "3d_fullres"),
    "locator": (lambda root: make_cascade_dataset(root, n_cases=4), "locator"),
    "cascade_segmenter": (lambda root: make_cascade_dataset(root, n_cases=4), "cascade_fullres"),
}
COMMON_ROW = {"epoch", "train_loss", "lr", "epoch_seconds", "iters_per_second"}
COMMON_CHECKPOINT = {"trainer", "plans", "configuration", "fold", "plans_version", "options", "amp_dtype",
                     "network_state", "optimizer_state", "scheduler_state", "grad_scaler_state", "epoch",
                     "rng_states", "log", "best", "epochs_since_best"}


def test_every_registered_trainer_has_a_smoke_dataset():
    assert set(DATASETS) == set(TRAINING_STEPS)


@pytest.mark.parametrize("step", sorted(TRAINING_STEPS))
def test_every_trainer_trains_resumes_and_writes_the_common_format(step, tmp_path):
    torch.set_num_threads(1)
    build, configuration = DATASETS[step]
    plans = build(tmp_path / "preprocessed")
    cls = TRAINING_STEPS[step]
    kind = configuration_kind(plans.configuration(configuration))
    assert cls.name == paths.TRAINER_OF_KIND[kind]  # the model folder's name for this kind

    def options(epochs):
        return TrainingOptions(epochs=epochs, iters_per_epoch=1, val_iters=1, num_workers=0, cpu_threads=1,
                               progress_bar=False, plots=False)

    fold = cls(plans, configuration, 0, device="cpu", options=options(1), log=lambda line: None).run()
    assert fold == paths.fold_folder(paths.model_folder(plans.dataset_name, cls.name, configuration), 0)
    ckpt = load_checkpoint(paths.checkpoint_file(fold, "final"))
    assert set(ckpt) >= COMMON_CHECKPOINT and ckpt["trainer"] == cls.name and ckpt["epoch"] == 0
    assert set(ckpt["log"][0]) >= COMMON_ROW | {cls.best_metric}

    resumed = cls(plans, configuration, 0, device="cpu", options=options(2), log=lambda line: None)
    resumed.run(resume=True)
    assert resumed.history.column("epoch") == [0, 1]
    assert load_checkpoint(paths.checkpoint_file(fold, "final"))["log"][0] == ckpt["log"][0]


def _option_names_read(cls) -> set[str]:
    """``options.<name>`` / ``o.<name>`` attributes read in the modules of ``cls`` and its bases, and
    in the two the loop hands the options to (the reporter, ``cpu_threads``)."""
    modules = {inspect.getmodule(k) for k in cls.__mro__ if k is not object} | {reporting, options_module}
    names = set()
    for module in modules:
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                owner = node.value
                if (isinstance(owner, ast.Attribute) and owner.attr == "options") or \
                        (isinstance(owner, ast.Name) and owner.id in ("o", "options")):
                    names.add(node.attr)
    return names


@pytest.mark.parametrize("step", sorted(TRAINING_STEPS))
def test_every_option_reaches_every_trainer_or_is_refused(step):
    cls = TRAINING_STEPS[step]
    read = _option_names_read(cls)
    missing = [f.name for f in dataclasses.fields(TrainingOptions) if f.name not in read | set(cls.refused_options)]
    assert not missing, f"{cls.name} neither reads nor refuses: {missing}"
    assert not set(cls.refused_options) & read, "an option is both read and refused"
