"""Where the three folders are, how a dataset is named, and how a trained model's folder is named.

``SEGFORGE_RAW``, ``SEGFORGE_PREPROCESSED`` and ``SEGFORGE_RESULTS`` override the defaults
``./segforge_raw``, ``./segforge_preprocessed`` and ``./segforge_results``. A dataset is
addressed by number (``901``) or full name (``Dataset901_BrainTissue``).

A trained model is ``<results>/DatasetNNN_Name/<trainer>__<configuration>/`` (the model
folder: ``plans.json``, ``dataset.json``) with ``fold_K/checkpoint_<which>.pt`` inside; this
module is the one place that builds and parses those names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from segforge.errors import InputError

__all__ = [
    "raw_root",
    "preprocessed_root",
    "results_root",
    "dataset_folder_name",
    "resolve_dataset_name",
    "raw_dataset_dir",
    "preprocessed_dataset_dir",
    "results_dataset_dir",
    "CHECKPOINT_NAMES",
    "TRAINER_OF_KIND",
    "model_folder_name",
    "parse_model_folder_name",
    "model_folder",
    "fold_folder",
    "checkpoint_file",
    "cache_root",
]

_NAME_RE = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_\-]+)$")


def raw_root() -> Path:
    return Path(os.environ.get("SEGFORGE_RAW", "segforge_raw")).absolute()


def preprocessed_root() -> Path:
    return Path(os.environ.get("SEGFORGE_PREPROCESSED", "segforge_preprocessed")).absolute()


def results_root() -> Path:
    return Path(os.environ.get("SEGFORGE_RESULTS", "segforge_results")).absolute()


def cache_root() -> Path:
    """Per-machine cache (the device calibration): ``SEGFORGE_CACHE``, else ``$XDG_CACHE_HOME/segforge``,
    else ``~/.cache/segforge``."""
    if os.environ.get("SEGFORGE_CACHE"):
        return Path(os.environ["SEGFORGE_CACHE"]).absolute()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).absolute() / "segforge"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``(901, "Brain")`` -> ``"Dataset901_Brain"``."""
    if not 0 <= int(dataset_id) <= 999:
        raise InputError(f"dataset id must be between 0 and 999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise InputError(f"dataset name {name!r} may only hold letters, digits, '_' and '-'")
    return f"Dataset{int(dataset_id):03d}_{name}"


def resolve_dataset_name(dataset: str | int) -> str:
    """Turn ``901``, ``"901"`` or ``"Dataset901_Name"`` into the folder name.

    Looks in the raw, preprocessed and results folders, in that order.
    """
    text = str(dataset).strip()
    if _NAME_RE.match(text):
        return text
    if not text.isdigit():
        raise InputError(f"dataset {text!r} is neither a number nor a name like Dataset901_Name")
    prefix = f"Dataset{int(text):03d}_"
    found: set[str] = set()
    for root in (raw_root(), preprocessed_root(), results_root()):
        if root.is_dir():
            found.update(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))
    if not found:
        raise InputError(
            f"no dataset with id {int(text)} in {raw_root()}, {preprocessed_root()} or {results_root()}"
            " (set SEGFORGE_RAW / SEGFORGE_PREPROCESSED / SEGFORGE_RESULTS, or run segforge_import)"
        )
    if len(found) > 1:
        raise InputError(f"dataset id {int(text)} is ambiguous: {', '.join(sorted(found))}; use the full name")
    return found.pop()


def raw_dataset_dir(dataset: str | int) -> Path:
    return raw_root() / resolve_dataset_name(dataset)


def preprocessed_dataset_dir(dataset: str | int) -> Path:
    return preprocessed_root() / resolve_dataset_name(dataset)


def results_dataset_dir(dataset: str | int) -> Path:
    return results_root() / resolve_dataset_name(dataset)


# --- trained models -------------------------------------------------------------------------
CHECKPOINT_NAMES = ("final", "best", "latest")  # what a trainer writes; prediction takes "final" by default
# the trainer that trains each kind of configuration ("cascade": a segmentation configuration with
# cascade settings); its name is the first half of the model folder's name
TRAINER_OF_KIND = {"segmentation": "SegmentationTrainer", "locator": "LocatorTrainer",
                   "cascade": "CascadeSegmentationTrainer"}
_SEPARATOR = "__"


def model_folder_name(trainer: str, configuration: str) -> str:
    """``("SegmentationTrainer", "3d_fullres")`` -> ``"SegmentationTrainer__3d_fullres"``."""
    return f"{trainer}{_SEPARATOR}{configuration}"


def parse_model_folder_name(name: str) -> tuple[str, str] | None:
    """``"SegmentationTrainer__3d_fullres"`` -> ``("SegmentationTrainer", "3d_fullres")``; None if not such a name."""
    trainer, sep, configuration = name.partition(_SEPARATOR)
    return (trainer, configuration) if sep and trainer and configuration else None


def model_folder(dataset: str | int, trainer: str, configuration: str) -> Path:
    """``<results>/DatasetNNN_Name/<trainer>__<configuration>``."""
    return results_dataset_dir(dataset) / model_folder_name(trainer, configuration)


def fold_folder(model_folder_path: str | os.PathLike, fold: int | str) -> Path:
    """``<model folder>/fold_<fold>``."""
    return Path(model_folder_path) / f"fold_{fold}"


def checkpoint_file(fold_folder_path: str | os.PathLike, which: str) -> Path:
    """``<fold folder>/checkpoint_<which>.pt`` for ``which`` in :data:`CHECKPOINT_NAMES`."""
    if which not in CHECKPOINT_NAMES:
        raise InputError(f"checkpoint must be one of {', '.join(CHECKPOINT_NAMES)}, got {which!r}")
    return Path(fold_folder_path) / f"checkpoint_{which}.pt"
