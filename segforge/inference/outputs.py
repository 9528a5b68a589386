"""Where predictions go: the output folder checked before any work, and finished outputs told apart.

``prepare_output_folder`` runs before the network is loaded: the output must not be (or
replace) an input, must be a folder (or creatable as one) and must take a file; the
temporary files a killed run left there are removed.

``output_problem`` decides what ``--continue`` may skip. An output counts as finished only
when it is a whole, readable label map (the validating reader: a truncated or zero-byte
file is not), on the grid of its input, with whole probability files when they are asked
for. Anything else is re-done, and the reason is said.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from segforge.errors import InputError
from segforge.execution.claims import LockFile
from segforge.inference.export import probability_files
from segforge.inference.inputs import InputCase, check_output_folder, output_file
from segforge.io.atomic import check_writable_folder, remove_stale_temporaries, write_json_atomic
from segforge.io.image import read_geometry, read_label
from segforge.preprocessing.pseudo_labels import MANIFEST_FILE  # the reader of the manifest written here

__all__ = ["prepare_output_folder", "output_problem", "write_prediction_manifest", "MANIFEST_FILE"]


def prepare_output_folder(input_path: str | os.PathLike, output_folder: str | os.PathLike,
                          cases: list[InputCase]) -> Path:
    """Refuse an output that is the input, a file, under a file or not writable; clear stale temporaries."""
    check_output_folder(input_path, output_folder, cases)
    folder = check_writable_folder(output_folder)
    remove_stale_temporaries(folder)
    return folder


def output_problem(case: InputCase, output_folder: str | os.PathLike, save_probabilities: bool,
                   num_classes: int | None = None) -> str | None:
    """None when ``case``'s outputs are complete; else why it must be predicted (again)."""
    target = output_file(case, output_folder)
    if not target.exists():
        return "no output yet"
    if target.name.endswith(".dcm"):  # --output-format dicom-seg
        from segforge.inference.dicom_seg import check_dicom_seg

        try:
            check_dicom_seg(target)
        except InputError as exc:
            return f"output {target.name} is not a whole DICOM Segmentation ({_reason(exc)})"
        return None
    try:
        labels, geometry = read_label(target)
    except InputError as exc:
        return f"output {target.name} is not a whole label map ({_reason(exc)})"
    if not case.is_dicom and not case.problem and case.sources:
        try:
            expected = read_geometry(case.sources[0])
        except InputError:
            expected = None  # the input's own problem is reported when it is read
        if expected is not None and not geometry.same_grid(expected):
            return f"output {target.name} lies on another grid than its input ({expected.describe_difference(geometry)})"
    if save_probabilities:
        npy, meta = probability_files(target)
        try:
            probabilities = np.load(npy, mmap_mode="r", allow_pickle=False)
            json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            return f"probability files of {target.name} are missing or damaged ({exc})"
        wrong_classes = num_classes is not None and probabilities.shape[0] != num_classes
        if probabilities.ndim != 4 or tuple(probabilities.shape[1:]) != labels.shape or wrong_classes:
            return f"{npy.name} has shape {probabilities.shape}, not (K, {', '.join(map(str, labels.shape))})"
    return None


def _reason(exc: InputError) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if exc.path and text.startswith(f"{exc.path}: ") else text


def write_prediction_manifest(output_folder: str | os.PathLike, model_folder: str | os.PathLike, configuration: str,
                              labels: dict[str, int], cases: list[InputCase], written: list[str]) -> Path:
    """``OUTPUT/predictions.json``: which images each label file in the folder was predicted from, by which
    model; what ``segforge_train --pseudo-labels OUTPUT`` reads. ``written``: names of the cases whose
    outputs are complete (predicted now or found complete); a case of an earlier run in the same folder
    is kept."""
    folder = Path(output_folder)
    path = folder / MANIFEST_FILE
    by_name = {case.name: case for case in cases}
    with LockFile(folder / f".{MANIFEST_FILE}.lock") as lock:  # --part runs may update it together
        entries = {}
        if path.is_file():
            try:
                entries = {c["case"]: c for c in json.loads(path.read_text()).get("cases", [])}
            except (OSError, ValueError, TypeError, KeyError):
                entries = {}
        for name in written:
            case = by_name[name]
            target = output_file(case, folder)
            npy, _ = probability_files(target)
            entries[name] = {"case": name, "images": [str(Path(s).absolute()) for s in case.sources],
                             "is_dicom": case.is_dicom, "series_uids": list(case.series_uids),
                             "labels": target.name, "probabilities": npy.name if npy.is_file() else None}
        write_json_atomic(path, {
            "format": "segforge-predictions", "model_folder": str(Path(model_folder).absolute()),
            "configuration": configuration, "labels": dict(labels),
            "why": "written by segforge_predict: each label file with the image(s) it was predicted from",
            "cases": [entries[k] for k in sorted(entries)]})
        lock.remove()
    return path
