"""Ensembles across configurations, and the dataset's chosen model (``best_configuration.json``).

:class:`EnsemblePredictor` runs several model folders' predictors (``2d`` + ``3d_fullres``,
say: each with its own preprocessing, sliding window and fold mean), takes each member's
probabilities back onto the input's grid, averages them, and then does what a single
predictor does: argmax and the ensemble's cross-validated postprocessing. It offers the
predictor's interface (``preprocess`` -> ``predict_preprocessed`` -> ``restore``), so the
prediction pipeline runs it unchanged.

``segforge_results/DatasetNNN_Name/best_configuration.json`` (written by
``segforge_find_best_configuration``, :mod:`segforge.workflows.best_configuration`) names the
chosen model: one model folder or an ensemble (its ``ensembles/<name>/`` folder holds the
ensemble's ``postprocessing.json``). ``segforge_predict -d ID`` uses it when no ``-c``/``-tr``/``-m``
names another model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from segforge import paths
from segforge.errors import InputError
from segforge.inference.export import restore_probabilities
from segforge.inference.postprocessing import Postprocessing
from segforge.io.json_file import read_json

__all__ = ["BEST_CONFIGURATION_FILE", "ENSEMBLES_FOLDER", "EnsemblePredictor", "read_best_configuration",
           "best_model_folders", "chosen_model", "create_chosen_predictor", "ensemble_folder_name"]

BEST_CONFIGURATION_FILE = "best_configuration.json"
ENSEMBLES_FOLDER = "ensembles"
FORMAT = "segforge-best-configuration"


def read_best_configuration(dataset_results: str | os.PathLike) -> dict | None:
    """``best_configuration.json`` of a dataset's results folder, or None when there is none."""
    path = Path(dataset_results) / BEST_CONFIGURATION_FILE
    data = read_json(path, missing_ok=True)
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("best"), dict):
        raise InputError(f"not a segforge best-configuration file (format {FORMAT} with 'best')", path)
    return data


def best_model_folders(dataset_results: str | os.PathLike) -> tuple[list[Path], Path | None] | None:
    """``(model folders, ensemble folder or None)`` of the chosen model, or None without a choice."""
    dataset_results = Path(dataset_results)
    data = read_best_configuration(dataset_results)
    if data is None:
        return None
    best = data["best"]
    try:
        folders = [dataset_results / name for name in best["model_folders"]]
    except (KeyError, TypeError):
        raise InputError("best_configuration.json: 'best' has no model_folders", dataset_results) from None
    missing = [str(f) for f in folders if not (f / "plans.json").is_file()]
    if missing:
        raise InputError(f"the chosen model's folder(s) are gone: {', '.join(missing)}; run "
                         "segforge_find_best_configuration again", dataset_results / BEST_CONFIGURATION_FILE)
    ensemble = dataset_results / best["ensemble_folder"] if best.get("ensemble_folder") else None
    return folders, ensemble


class EnsemblePredictor:
    """The mean of several model folders' probabilities on the input's grid, then argmax and postprocessing.

    ``members``: predictors (:func:`segforge.inference.registry.create_predictor`) of one dataset.
    ``folder``: where the ensemble's ``postprocessing.json`` is (None: no postprocessing).
    """

    def __init__(self, members: list, folder: str | os.PathLike | None = None, postprocessing: bool = True):
        if len(members) < 2:
            raise InputError("an ensemble needs at least two model folders")
        first = members[0]
        for other in members[1:]:
            if other.plans.labels != first.plans.labels or other.plans.channel_names != first.plans.channel_names:
                raise InputError(f"{other.model.path.name} predicts other labels or channels than "
                                 f"{first.model.path.name}: only models of one dataset can be ensembled",
                                 other.model.path)
        self.members = members
        self.plans = first.plans
        self.num_classes = first.num_classes
        self.folder = Path(folder) if folder is not None else None
        self.postprocessing = Postprocessing.load(self.folder) if (postprocessing and self.folder) else None
        self.device, self.step, self.mirror_axes = first.device, first.step, first.mirror_axes
        self.folds = sorted({f for m in members for f in m.folds})

    @property
    def name(self) -> str:
        return " + ".join(m.model.path.name for m in self.members)

    @property
    def progress(self) -> bool:
        return self.members[0].progress

    @progress.setter
    def progress(self, value: bool) -> None:
        for m in self.members:
            m.progress = value

    def preprocess(self, image: np.ndarray, geometry) -> tuple[list, dict]:
        """Each member's ``(data, properties)``; members preprocessing alike share one copy."""
        from segforge.preprocessing.case import preprocessing_version

        done: dict[tuple, tuple] = {}
        data, properties = [], []
        for m in self.members:
            c = m.configuration
            key = (c.data_identifier, preprocessing_version(c))
            if key not in done:
                done[key] = m.preprocess(image, geometry)
            data.append(done[key][0])
            properties.append(done[key][1])
        return data, {"members": properties}

    def predict_preprocessed(self, data: list, properties: dict) -> list:
        """Each member's probabilities on its own preprocessed grid."""
        return [m.predict_preprocessed(d, p) for m, d, p in zip(self.members, data, properties["members"])]

    def restore(self, probabilities: list, properties: dict, keep_probabilities: bool = False):
        """``(labels (Z, Y, X), mean probabilities (K, Z, Y, X) | None)`` on the original grid."""
        total = None
        for probs, props in zip(probabilities, properties["members"]):
            restored = restore_probabilities(probs, props, background_channel=not self.plans.label_scheme.is_regions)
            total = restored if total is None else np.add(total, restored, out=total)
        mean = total / len(probabilities)
        labels = self.plans.label_scheme.probabilities_to_labels(mean)
        if self.postprocessing is not None:
            labels = self.postprocessing.apply(labels)
        return labels, (mean if keep_probabilities else None)

    def export_extras(self, properties: dict, target) -> None:
        for m, props in zip(self.members, properties["members"]):
            m.export_extras(props, target)

    def predict_case(self, image: np.ndarray, geometry, return_probabilities: bool = False):
        data, properties = self.preprocess(image, geometry)
        return self.restore(self.predict_preprocessed(data, properties), properties, return_probabilities)


def ensemble_folder_name(model_folders: list[str]) -> str:
    """The ``ensembles/`` sub-folder of an ensemble of these model folder names."""
    return "+".join(model_folders)


def chosen_model(dataset=None, model_folder=None, configuration=None, trainer=None
                 ) -> tuple[list[Path], Path | None] | None:
    """The dataset's ``best_configuration.json`` choice when the caller named no particular model
    (no ``-m``, ``-c``, ``-tr``), else None (the usual model-folder resolution applies)."""
    if model_folder is not None or configuration is not None or trainer is not None:
        return None
    if dataset is not None:
        return best_model_folders(paths.results_dataset_dir(dataset))
    root = paths.results_root()
    trained = sorted(p for p in root.glob("Dataset*") if p.is_dir()) if root.is_dir() else []
    return best_model_folders(trained[0]) if len(trained) == 1 else None


def create_chosen_predictor(folders: list[Path], ensemble: Path | None, postprocessing: bool = True, **kwargs):
    """One model folder's predictor, or the :class:`EnsemblePredictor` of several (``kwargs``: each
    member predictor's options; the members' own postprocessing is off, the ensemble's applies)."""
    from segforge.inference.registry import create_predictor

    if len(folders) == 1:
        return create_predictor(folders[0], postprocessing=postprocessing, **kwargs)
    members = [create_predictor(f, postprocessing=False, **kwargs) for f in folders]
    return EnsemblePredictor(members, ensemble, postprocessing)
