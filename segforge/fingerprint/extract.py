"""Extract a raw dataset's fingerprint in parallel, summarise it, save and load it.

``fingerprint.json`` lives in ``segforge_preprocessed/DatasetNNN_Name/``; its keys are the
contract in docs/architecture.md ("Fingerprint"). Cases run through
:func:`segforge.execution.run_cases` (local processes or a Ray cluster); workers read one case each and send back
only its small entry and at most :data:`MAX_SAMPLES_PER_CASE` foreground intensities per
channel, so memory stays around one case per worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from segforge import paths
from segforge.errors import DatasetProblems, InputError
from segforge.execution import CaseStage, CaseTask, ExecutionSettings, run_cases
from segforge.fingerprint.case import (
    MAX_SAMPLES_PER_CASE,
    fingerprint_case,
    intensity_stats,
)
from segforge.io import read_image, read_multichannel
from segforge.io.atomic import write_json_atomic
from segforge.io.dataset import RawDataset

__all__ = ["FINGERPRINT_FILE", "extract_fingerprint", "summarize_cases", "save_fingerprint", "load_fingerprint",
           "fingerprint_path"]

FINGERPRINT_FILE = "fingerprint.json"
_TOP_KEYS = ("dataset_name", "channel_names", "labels", "cases", "intensity", "summary")


def extract_fingerprint(ds: RawDataset, num_processes: int = 2, progress: bool = True,
                        max_samples_per_case: int = MAX_SAMPLES_PER_CASE,
                        execution: ExecutionSettings | None = None,
                        log: Callable[[str], None] | None = None) -> dict:
    """Measure every training case of ``ds`` and summarise the dataset.

    ``num_processes`` local worker processes (1: in this process), or ``execution`` (executor
    and workers; a ``part`` is refused: the summary needs every case). The result does not
    depend on either: each case samples its foreground with a seed made from its name.
    Cases that cannot be measured are raised together as :class:`DatasetProblems`.
    """
    cases = ds.training_cases()
    if not cases:
        raise InputError("no training cases in imagesTr", ds.root)
    settings = execution or ExecutionSettings(workers=max(1, int(num_processes)))
    if settings.part is not None:
        raise InputError("the fingerprint needs every case: run it without --part")
    label_values = ds.label_values  # plain labels, the regions' values and the ignore label
    tasks = []
    for case in cases:
        if case.label_file is None:
            raise InputError(f"training case {case.name} has no label file in labelsTr", case.image_files[0])
        tasks.append(CaseTask(case.name, (case.name, [str(p) for p in case.image_files], str(case.label_file),
                                          label_values, max_samples_per_case)))
    summary = run_cases(CaseStage("fingerprint", _fingerprint_task), tasks, settings, progress=progress, log=log)
    if summary.failed:
        raise DatasetProblems(summary.failure_lines())
    results = [summary.results()[task.name] for task in tasks]

    entries = [entry for entry, _ in results]
    pooled = np.concatenate([samples for _, samples in results], axis=1)
    fingerprint = {
        "dataset_name": ds.name,
        "channel_names": dict(ds.channel_names),
        "labels": dict(ds.labels),
        "cases": entries,
        "intensity": [intensity_stats(pooled[c]) for c in range(pooled.shape[0])],
        "summary": summarize_cases(entries),
    }
    if ds.label_scheme.regions_class_order is not None:  # region-based labels (segforge.io.labels)
        fingerprint["regions_class_order"] = list(ds.label_scheme.regions_class_order)
    return fingerprint


def summarize_cases(cases: list[dict]) -> dict:
    """The dataset-level numbers the planner reads, from the per-case entries.

    Foreground numbers use only the cases with foreground (None when no case has any).
    ``centroid_spread_mm`` is the standard deviation over cases of the union's centroid
    position in the image, ``centroid_voxel * spacing``, per array axis ``(z, y, x)``.
    """
    spacings = np.array([c["spacing"] for c in cases], dtype=float)
    shapes = np.array([c["shape"] for c in cases], dtype=float)
    crop_shapes = np.array([c["shape_after_crop"] for c in cases], dtype=float)
    median_spacing = np.median(spacings, axis=0)
    with_fg = [c for c in cases if c["objects"]["union"]["voxels"] > 0]
    if with_fg:
        extents = np.array([c["objects"]["union"]["extent_mm"] for c in with_fg], dtype=float)
        fractions = [float(np.prod([b - a for a, b in c["objects"]["union"]["bbox_voxels"]]) / np.prod(c["shape"]))
                     for c in with_fg]
        positions = np.array([np.multiply(c["objects"]["union"]["centroid_voxel"], c["spacing"]) for c in with_fg])
        fg = {
            "median_union_extent_mm": _floats(np.median(extents, axis=0)),
            "p95_union_extent_mm": _floats(np.percentile(extents, 95, axis=0)),
            "median_union_bbox_fraction": float(np.median(fractions)),
            "centroid_spread_mm": _floats(positions.std(axis=0)),
        }
    else:
        fg = dict.fromkeys(("median_union_extent_mm", "p95_union_extent_mm", "median_union_bbox_fraction",
                            "centroid_spread_mm"))
    return {
        "median_spacing": _floats(median_spacing),
        "median_shape": _floats(np.median(shapes, axis=0)),
        "median_shape_after_crop": _floats(np.median(crop_shapes, axis=0)),
        "spacing_p10": _floats(np.percentile(spacings, 10, axis=0)),
        "anisotropy": float(median_spacing.max() / median_spacing.min()),
        "median_nonzero_fraction_removed": float(np.median([c["nonzero_fraction_removed"] for c in cases])),
        **fg,
    }


def fingerprint_path(dataset: str | int) -> Path:
    """``segforge_preprocessed/DatasetNNN_Name/fingerprint.json``."""
    return paths.preprocessed_dataset_dir(dataset) / FINGERPRINT_FILE


def save_fingerprint(fingerprint: dict) -> Path:
    """Write ``fingerprint`` atomically to its dataset's preprocessed folder and return the path."""
    path = paths.preprocessed_root() / fingerprint["dataset_name"] / FINGERPRINT_FILE
    write_json_atomic(path, fingerprint)
    return path


def load_fingerprint(dataset: str | int) -> dict:
    """Read a dataset's ``fingerprint.json`` (by id or name); InputError when missing or malformed."""
    path = fingerprint_path(dataset)
    if not path.is_file():
        raise InputError(f"no fingerprint yet; run segforge_plan_and_preprocess -d {dataset}", path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"fingerprint is not valid JSON ({exc}); delete it and re-run "
                         "segforge_plan_and_preprocess", path) from None
    missing = [k for k in _TOP_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise InputError(f"fingerprint lacks {', '.join(missing)}; delete it and re-run segforge_plan_and_preprocess",
                         path)
    return data


def _fingerprint_task(context, job) -> tuple[dict, np.ndarray]:
    return _measure_case_files(job)


def _measure_case_files(job) -> tuple[dict, np.ndarray]:
    """Read one case's files and measure it (runs in a worker)."""
    name, image_files, label_file, label_values, max_samples = job
    image, geometry = read_multichannel(image_files)
    label, label_geometry = read_image(label_file)
    if not label_geometry.same_grid(geometry):
        raise InputError(f"label grid differs from the image's: {label_geometry.describe_difference(geometry)}",
                         label_file)
    label = _as_integer_labels(label, label_file)
    if label.min() < 0:
        raise InputError(f"label map holds negative values ({int(label.min())})", label_file)
    present = [v for v, box in enumerate(ndimage.find_objects(label), start=1) if box is not None]
    undeclared = sorted(set(present) - set(label_values))
    if undeclared:
        raise InputError(f"label values {undeclared} are not declared in dataset.json labels", label_file)
    return fingerprint_case(name, image, label, geometry, label_values, max_samples)


def _as_integer_labels(label: np.ndarray, path) -> np.ndarray:
    if np.issubdtype(label.dtype, np.integer):
        return label
    if not np.all(np.isfinite(label)) or not np.array_equal(label, np.rint(label)):
        raise InputError("label map holds non-integer values", path)
    return label.astype(np.int32)


def _floats(values) -> list[float]:
    return [float(v) for v in values]
