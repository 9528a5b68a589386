"""Pseudo-labelled cases for self-distillation: a segforge prediction folder, preprocessed for training.

``segforge_train ID FOLD --pseudo-labels DIR`` adds the cases a segforge model predicted into
``DIR`` (``segforge_predict -o DIR``: label files, probabilities when ``--save-probabilities``, and
``DIR/predictions.json`` naming the image(s) each was predicted from) to the training cases of
every fold. Here they are preprocessed exactly like the dataset's cases, with the predicted
labels as labels, into their own folder::

    segforge_preprocessed/DatasetNNN_Name/pseudo_labels/<key>/<data_identifier>/
        CASE.npy  CASE_seg.npy  CASE.json      as any preprocessed case (+ "pseudo_label_source")
        CASE_soft.npy                          float16 (K, z, y, x): the saved probabilities, preprocessed
                                               (cropped, resampled linearly); only when they were saved

``<key>`` digests the folder, its manifest, every label/probability file's size and time, and the
configuration's preprocessing, so a new prediction into ``DIR`` is preprocessed anew and an
unchanged one is reused; a case is done when its JSON is there (written last).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from segforge.errors import InputError
from segforge.io.atomic import save_npy_atomic
from segforge.io.image import read_image, read_label, read_multichannel
from segforge.planning.plans import Configuration
from segforge.preprocessing.case import preprocess_case, preprocessing_version
from segforge.preprocessing.dataset_runner import case_is_done, write_case
from segforge.preprocessing.resampling import resample_probabilities

__all__ = ["MANIFEST_FILE", "PSEUDO_PREFIX", "PseudoLabelledCase", "read_prediction_manifest",
           "prepare_pseudo_labelled_cases"]

MANIFEST_FILE = "predictions.json"  # segforge.inference.outputs.MANIFEST_FILE
PSEUDO_PREFIX = "pseudo__"  # case keys of pseudo-labelled cases in training (never a dataset case's name)


@dataclass
class PseudoLabelledCase:
    name: str
    images: list[Path]
    labels: Path
    probabilities: Path | None = None
    is_dicom: bool = False
    series_uids: tuple[str, ...] = ()


def read_prediction_manifest(folder: str | os.PathLike) -> list[PseudoLabelledCase]:
    """The cases of a segforge prediction folder (``predictions.json``), each checked to exist."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise InputError("--pseudo-labels folder not found", folder)
    if not path.is_file():
        raise InputError(f"no {MANIFEST_FILE}: --pseudo-labels takes a folder written by segforge_predict "
                         "(it records which image each label file was predicted from)", folder)
    try:
        manifest = json.loads(path.read_text())
        cases = [PseudoLabelledCase(c["case"], [Path(p) for p in c["images"]], folder / c["labels"],
                                    folder / c["probabilities"] if c.get("probabilities") else None,
                                    bool(c.get("is_dicom")), tuple(c.get("series_uids") or ()))
                 for c in manifest["cases"]]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(f"not a valid prediction manifest ({exc})", path) from None
    if not cases:
        raise InputError("the prediction folder lists no predicted case", path)
    for case in cases:
        for p in [*case.images, case.labels] + ([case.probabilities] if case.probabilities else []):
            if not p.exists():
                raise InputError(f"case {case.name}: {p.name} is missing (named in {MANIFEST_FILE})", p)
    return cases


def _key(folder: Path, cases: list[PseudoLabelledCase], configuration: Configuration) -> str:
    h = hashlib.sha256(str(folder.absolute()).encode())
    h.update((folder / MANIFEST_FILE).read_bytes())
    for case in cases:
        for p in [case.labels] + ([case.probabilities] if case.probabilities else []):
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(preprocessing_version(configuration).encode())
    return h.hexdigest()[:12]


def prepare_pseudo_labelled_cases(folder: str | os.PathLike, configuration: Configuration, labels: dict[str, int],
                                  preprocessed_dir: str | os.PathLike,
                                  log: Callable[[str], None] = print) -> tuple[Path, list[str]]:
    """Preprocess the predicted cases of ``folder`` for ``configuration`` (once); returns
    ``(the folder holding them, their case names)``. Labels outside ``labels`` (the plans'), an
    image and label on different grids, or probabilities of another shape are refused naming the file."""
    folder = Path(folder)
    cases = read_prediction_manifest(folder)
    out = Path(preprocessed_dir) / "pseudo_labels" / _key(folder, cases, configuration) / configuration.data_identifier
    version = preprocessing_version(configuration)
    todo = [c for c in cases if not case_is_done(out, c.name, version, has_label=True)]
    if todo:
        log(f"preprocessing {len(todo)} pseudo-labelled case(s) from {folder} into {out}")
    known = set(int(v) for v in labels.values())
    for case in todo:
        _prepare_case(case, configuration, known, out)
    return out, [c.name for c in cases]


def _prepare_case(case: PseudoLabelledCase, configuration: Configuration, known: set[int], out: Path) -> None:
    if case.is_dicom:
        array, geometry = read_image(case.images[0], case.series_uids or None)
        image = array.astype(np.float32)[None]
    else:
        image, geometry = read_multichannel(case.images)
    label, label_geometry = read_label(case.labels)
    if not geometry.same_grid(label_geometry):
        raise InputError(f"predicted labels lie on another grid than their image "
                         f"({geometry.describe_difference(label_geometry)})", case.labels)
    unknown = sorted(set(np.unique(label).tolist()) - known)
    if unknown:
        raise InputError(f"predicted label values {unknown} are not labels of this dataset", case.labels)
    data, seg, properties = preprocess_case(image, geometry, configuration, label, case_name=case.name)
    properties["pseudo_label_source"] = {"labels": str(case.labels), "images": [str(p) for p in case.images],
                                         "probabilities": str(case.probabilities) if case.probabilities else None}
    out.mkdir(parents=True, exist_ok=True)
    if case.probabilities is not None:
        probabilities = np.load(case.probabilities, allow_pickle=False)
        if probabilities.ndim != 4 or probabilities.shape[1:] != tuple(geometry.shape) or \
                probabilities.shape[0] != max(known) + 1:
            raise InputError(f"probabilities of shape {probabilities.shape} do not fit {max(known) + 1} classes on "
                             f"the image's grid {tuple(geometry.shape)}", case.probabilities)
        box = properties["crop_box"]
        cropped = probabilities[(slice(None), *(slice(a, b) for a, b in box))].astype(np.float32)
        rs = configuration.resampling
        soft = resample_probabilities(cropped, properties["preprocessed_shape"], 1, rs.separate_axis,
                                      min(int(rs.separate_axis_order), 1))
        soft = np.clip(soft, 0, None)
        soft /= np.maximum(soft.sum(0, keepdims=True), 1e-6)
        save_npy_atomic(out / f"{case.name}_soft.npy", soft.astype(np.float16))
    write_case(out, case.name, data, seg, properties)  # the JSON last: the case is done
