"""Finding a trained model folder and loading its checkpoints safely.

A model folder is ``segforge_results/DatasetNNN_Name/<trainer>__<configuration>/`` holding
``plans.json``, ``dataset.json`` and ``fold_K/checkpoint_{final,best,latest}.pt``. It may
come from anywhere: checkpoints load with ``torch.load(weights_only=True)`` (tensors and
plain values only) and networks are built from the registry by name, so nothing in the
folder can make segforge run code.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from segforge import paths
from segforge.errors import InputError
from segforge.io.checkpoint import load_checkpoint as load_training_checkpoint
from segforge.io.checkpoint import plain_state_dict
from segforge.io.json_file import read_json
from segforge.paths import CHECKPOINT_NAMES
from segforge.planning.plans import Configuration, Plans

__all__ = ["ModelFolder", "resolve_model_folder", "load_checkpoint", "checkpoint_plans_version", "plain_state_dict",
           "read_export_description", "EXPORT_FILE"]

EXPORT_FILE = "export.json"  # marks a folder written by segforge_export (segforge/inference/model_export.py)
DEFAULT_TRAINER = paths.TRAINER_OF_KIND["segmentation"]


@dataclass
class ModelFolder:
    """A trained model folder: its plans, configuration and the folds that have checkpoints.

    An export folder (``segforge_export``: ``export.json``, ``fold_K/weights.safetensors`` and
    ``fold_K/network.onnx``) is a model folder too; ``export`` then holds its ``export.json``
    and its trainer and configuration come from there rather than from the folder's name.
    """

    path: Path
    plans: Plans
    configuration: Configuration
    trainer: str
    dataset_json: dict
    export: dict | None = None

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "ModelFolder":
        path = Path(folder).expanduser().absolute()
        if not path.is_dir():
            raise InputError("model folder not found", path)
        plans = Plans.load(path / "plans.json")
        from segforge.networks.registry import check_buildable

        check_buildable(plans, path / "plans.json")  # a typo in a name is reported with the file
        export = read_export_description(path)
        if export is not None:
            parsed = (export.get("trainer", "exported"), export.get("configuration"))
        else:
            parsed = paths.parse_model_folder_name(path.name)
        if parsed is None:
            raise InputError("model folder name must be <trainer>__<configuration>, e.g. "
                             f"{paths.model_folder_name(DEFAULT_TRAINER, '3d_fullres')}", path)
        trainer, config_name = parsed
        configuration = plans.configuration(config_name)
        dataset_json = read_json(path / "dataset.json", missing_ok=True) or {}
        return cls(path, plans, configuration, trainer, dataset_json, export)

    def check_plans_version(self, checkpoint: dict, path: Path) -> None:
        """Refuse a checkpoint trained with other plans than this folder's ``plans.json``: its network
        would be fed data preprocessed another way (another spacing, normalisation or patch)."""
        trained_with = checkpoint_plans_version(checkpoint, self.configuration.name)
        expected = self.configuration.version()
        if trained_with is not None and trained_with != expected:
            raise InputError(
                f"checkpoint was trained with other plans (plans_version {trained_with}) than the model folder's "
                f"plans.json ({expected}): the plans changed after this fold was trained; retrain this fold with "
                "the current plans, or predict with the folds that match (-f)", path)

    def available_folds(self) -> list[str]:
        """Fold names (``"0"``, ``"all"``...) with at least one checkpoint (or exported weights), numbers first."""
        def has_weights(fold: Path) -> bool:
            if self.export:
                return any((fold / n).is_file() for n in ("weights.safetensors", "network.onnx"))
            return any(paths.checkpoint_file(fold, c).is_file() for c in CHECKPOINT_NAMES)

        folds = [p.name[len("fold_"):] for p in self.path.glob("fold_*") if p.is_dir() and has_weights(p)]
        return sorted(folds, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))

    def checkpoint_file(self, fold: str | int, checkpoint: str = "final") -> Path:
        """``fold_K/checkpoint_<checkpoint>.pt``; ``final`` falls back to ``latest`` with a warning."""
        fold_dir = paths.fold_folder(self.path, fold)
        if self.export is not None:  # one set of weights per fold, the checkpoint chosen at export
            weights = fold_dir / "weights.safetensors"
            if weights.is_file():
                return weights
            raise InputError(f"no weights.safetensors for fold {fold} in this export (folds: "
                             f"{', '.join(self.available_folds()) or 'none'})", fold_dir)
        wanted = paths.checkpoint_file(fold_dir, checkpoint)
        if wanted.is_file():
            return wanted
        latest = paths.checkpoint_file(fold_dir, "latest")
        if checkpoint == "final" and latest.is_file():
            warnings.warn(f"{wanted} not found (training not finished?); using {latest.name}", stacklevel=2)
            return latest
        available = ", ".join(self.available_folds()) or "none"
        raise InputError(f"no checkpoint_{checkpoint}.pt for fold {fold} (folds with checkpoints: {available})",
                         fold_dir)

    def resolve_folds(self, folds=None) -> list[str]:
        """``folds`` as strings, or every fold with a checkpoint when None."""
        if folds is None or len(folds) == 0:
            found = self.available_folds()
            if not found:
                raise InputError("model folder holds no fold_K/checkpoint_*.pt; train first", self.path)
            numbered = [f for f in found if f.isdigit()]
            return numbered or found  # fold "all" only when no cross-validation fold exists
        return [str(f) for f in folds]


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A model folder's weights: a training checkpoint (:func:`segforge.io.checkpoint.load_checkpoint`:
    on the CPU, ``weights_only``, its ``network_state`` checked), or an export's ``weights.safetensors``,
    which loads as ``{"network_state": ..., "configuration": ...}``."""
    if str(path).endswith(".safetensors"):
        return _load_safetensors(Path(path))
    return load_training_checkpoint(path)


def checkpoint_plans_version(checkpoint: dict, configuration: str) -> str | None:
    """The configuration version a checkpoint was trained with: ``plans_version``, else computed
    from its ``plans`` copy; None when it carries neither (older checkpoints)."""
    if checkpoint.get("plans_version"):
        return str(checkpoint["plans_version"])
    plans = checkpoint.get("plans")
    if isinstance(plans, dict):
        try:
            return Plans.from_dict(plans).configuration(configuration).version()
        except (InputError, KeyError, TypeError, ValueError):
            return None
    return None


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"cannot load weights ({str(exc).splitlines()[0][:200]})", path) from None
    from segforge.training.checkpoint import check_network_state

    check_network_state(state, path)
    return {"network_state": state, "configuration": meta.get("configuration")}


def read_export_description(folder: str | os.PathLike) -> dict | None:
    """``export.json`` of an export folder, or None for an ordinary model folder."""
    path = Path(folder) / EXPORT_FILE
    info = read_json(path, missing_ok=True)
    if info is None:
        return None
    if not isinstance(info, dict) or info.get("format") != "segforge-export" or not info.get("configuration"):
        raise InputError("not a segforge export description (format segforge-export with a configuration)", path)
    return info


def resolve_model_folder(
    dataset: str | int | None = None,
    model_folder: str | os.PathLike | None = None,
    configuration: str | None = None,
    trainer: str | None = None,
) -> Path:
    """The model folder from ``-m`` (taken as is) or from ``-d`` under ``segforge_results``.

    Without either, the results folder must hold exactly one trained dataset. The
    configuration defaults to the plans' ``default``; the trainer to ``SegmentationTrainer``
    (or the only trainer trained for that configuration).
    """
    if model_folder is not None:
        path = Path(model_folder).expanduser().absolute()
        if (path / "plans.json").is_file():
            return path
        if path.is_dir() and _model_folders(path):
            return _pick_in_dataset(path, configuration, trainer)
        raise InputError("not a model folder (expected plans.json and fold_K/checkpoint_*.pt)", path)
    if dataset is not None:
        return _pick_in_dataset(paths.results_dataset_dir(dataset), configuration, trainer)
    root = paths.results_root()
    trained = sorted(p for p in root.glob("Dataset*") if p.is_dir() and _model_folders(p)) if root.is_dir() else []
    if len(trained) != 1:
        found = ", ".join(p.name for p in trained) or "none"
        raise InputError(f"name the model with -d DATASET or -m MODEL_FOLDER (trained datasets in {root}: {found})")
    return _pick_in_dataset(trained[0], configuration, trainer)


def _model_folders(dataset_dir: Path) -> list[Path]:
    return sorted(p for p in dataset_dir.iterdir()
                  if p.is_dir() and paths.parse_model_folder_name(p.name) and (p / "plans.json").is_file())


def _pick_in_dataset(dataset_dir: Path, configuration: str | None, trainer: str | None) -> Path:
    if not dataset_dir.is_dir():
        raise InputError("no trained model for this dataset (train it with segforge_train)", dataset_dir)
    folders = _model_folders(dataset_dir)
    if not folders:
        raise InputError("no model folder (<trainer>__<configuration> with plans.json) here; train first", dataset_dir)
    if configuration is None:
        configuration = Plans.load(folders[0] / "plans.json").default_configuration
    names = {p: paths.parse_model_folder_name(p.name) for p in folders}  # (trainer, configuration)
    matching = [p for p in folders if names[p][1] == configuration]
    if trainer is not None:
        matching = [p for p in matching if names[p][0] == trainer]
    elif len(matching) > 1:
        matching = [p for p in matching if names[p][0] == DEFAULT_TRAINER] or matching[:1]
    if not matching:
        have = ", ".join(p.name for p in folders)
        raise InputError(f"no model folder for configuration {configuration!r}"
                         f"{'' if trainer is None else f' and trainer {trainer!r}'} (have: {have})", dataset_dir)
    return matching[0]
