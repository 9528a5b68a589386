"""``segforge.predict``: label maps for images, from Python.

>>> import segforge
>>> results = segforge.predict("scans/", dataset=901)          # a folder, a file or DICOM folders
>>> labels, geometry = results[0].labels, results[0].geometry   # (Z, Y, X) on the input's grid
>>> results = segforge.predict([(array, geometry)], model_folder="path/to/SegmentationTrainer__3d_fullres")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from segforge.errors import InputError
from segforge.inference.inputs import discover_cases, read_case
from segforge.inference.model import ModelFolder, resolve_model_folder
from segforge.inference.predictor import Predictor
from segforge.inference.registry import create_predictor
from segforge.io.geometry import Geometry

__all__ = ["Prediction", "predict", "load_predictor"]


@dataclass
class Prediction:
    """One predicted case: ``labels (Z, Y, X)`` on ``geometry`` (the input's grid).

    ``probabilities`` ``(K, Z, Y, X)`` float32 when asked for. Unpacks as ``labels, geometry``.
    """

    name: str
    labels: np.ndarray
    geometry: Geometry
    probabilities: np.ndarray | None = None

    def __iter__(self):
        return iter((self.labels, self.geometry))


def load_predictor(
    model_folder: str | os.PathLike | None = None,
    dataset: str | int | None = None,
    configuration: str | None = None,
    folds: Sequence[str | int] | None = None,
    checkpoint: str = "final",
    device: str | None = None,
    tta: bool = True,
    step: float = 0.5,
    backend: str = "torch",
    mirror_axes: Sequence[int] | None = None,
    bf16: bool = False,
    fast: bool = False,
    postprocessing: bool = True,
) -> Predictor:
    """The predictor of ``model_folder`` (any folder, or an export folder) or of ``dataset`` under
    ``segforge_results``; ``backend="onnxruntime"`` runs an export folder's ONNX networks;
    ``fast`` takes the step and mirror axes of :data:`~segforge.inference.predictor.FAST_MODE`;
    ``postprocessing`` applies the model folder's cross-validated ``postprocessing.json``. With only a
    dataset named, the model ``segforge_find_best_configuration`` chose (``best_configuration.json``:
    one model folder or an ensemble of several), else the plans' default configuration."""
    from segforge.inference.ensemble import chosen_model, create_chosen_predictor
    from segforge.inference.predictor import FAST_MODE

    speed = dict(FAST_MODE["options"]) if fast else {"step": step, "mirror_axes": mirror_axes}
    options = dict(folds=folds, checkpoint=checkpoint, device=device, tta=tta, backend=backend, bf16=bf16, **speed)
    chosen = chosen_model(dataset, model_folder, configuration)  # best_configuration.json, when nothing is named
    if chosen is not None:
        return create_chosen_predictor(*chosen, postprocessing=postprocessing, **options)
    folder = resolve_model_folder(dataset, model_folder, configuration)
    return create_predictor(ModelFolder.open(folder), postprocessing=postprocessing, **options)


def predict(
    images,
    model_folder: str | os.PathLike | None = None,
    dataset: str | int | None = None,
    folds: Sequence[str | int] | None = None,
    checkpoint: str = "final",
    device: str | None = None,
    tta: bool = True,
    configuration: str | None = None,
    return_probabilities: bool = False,
    predictor: Predictor | None = None,
    postprocessing: bool = True,
) -> list[Prediction]:
    """Predict ``images``: a path (folder, file or DICOM series folder), a list of paths, or
    ``(array, Geometry)`` tuples with ``array`` ``(Z, Y, X)`` or ``(C, Z, Y, X)``.

    Returns one :class:`Prediction` per case, in input order (cases of a folder sorted by
    name). Unreadable inputs raise :class:`InputError`.
    """
    predictor = predictor or load_predictor(model_folder, dataset, configuration, folds, checkpoint, device, tta,
                                            postprocessing=postprocessing)
    results = []
    for name, image, geometry in _images(images, predictor.plans.num_channels):
        labels, probabilities = predictor.predict_case(image, geometry, return_probabilities)
        results.append(Prediction(name, labels, geometry, probabilities))
    return results


def _images(images, num_channels: int) -> Iterable[tuple[str, np.ndarray, Geometry]]:
    if isinstance(images, (str, os.PathLike)) or _is_array_pair(images):
        images = [images]
    for i, item in enumerate(images):
        if _is_array_pair(item):
            array, geometry = item
            array = np.asarray(array, dtype=np.float32)
            if array.ndim == 3:
                array = array[None]
            if array.shape[1:] != tuple(geometry.shape):
                raise InputError(
                    f"image {i}: array shape {array.shape[1:]} differs from geometry shape {geometry.shape}"
                )
            yield f"image_{i}", array, geometry
        elif isinstance(item, (str, os.PathLike)):
            for case in discover_cases(Path(item), num_channels):
                image, geometry = read_case(case)
                yield case.name, image, geometry
        else:
            raise InputError(f"image {i}: expected a path or an (array, Geometry) pair, got {type(item).__name__}")


def _is_array_pair(item) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Geometry)
