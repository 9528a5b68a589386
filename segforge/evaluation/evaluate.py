"""Score a folder of predicted label maps against a folder of reference label maps.

Files are matched by case name (the file name without its image ending). A prediction is
scored only on the reference's grid: a missing prediction, or one whose geometry differs
from its reference (``Geometry.same_grid``), is listed in the summary instead of scored.

``summary.json``::

    {"reference_folder": ..., "prediction_folder": ..., "labels": [1, 2], "tolerance_mm": 1.0,
     "cases": [{"case": "c1", "reference": path, "prediction": path,
                "metrics": {"1": {"dice", "iou", "hd95", "surface_dice", "n_ref", "n_pred", "tp", "fp", "fn"}}}],
     "mean": {"1": {"dice", "iou", "hd95", "surface_dice", "n_cases": {"dice": k, ...}}},
     "foreground_mean": {"dice", "iou", "hd95", "surface_dice"},   # mean of the class means
     "missing_predictions": [...], "geometry_mismatches": [{"case", "difference"}],
     "unreadable": [{"case", "file", "reason"}], "extra_predictions": [...], "why": {...}}

NaN (undefined, e.g. Dice of two empty masks) is written as JSON ``null`` and left out of means.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from segforge.errors import InputError
from segforge.evaluation.metrics import class_metrics
from segforge.execution import CaseStage, CaseTask, ExecutionSettings, run_cases
from segforge.io.atomic import write_text_atomic
from segforge.io.image import IMAGE_ENDINGS, is_image_file, read_label, split_ending
from segforge.io.labels import target_key, target_name

__all__ = [
    "METRICS",
    "evaluate_case",
    "evaluate_folders",
    "evaluate_pairs",
    "save_summary",
    "format_table",
    "label_files",
]

METRICS = ("dice", "iou", "hd95", "surface_dice")

_WHY = {
    "empty": "both masks empty -> Dice/IoU/HD95/surface Dice undefined (null) and left out of means; "
    "one empty -> Dice 0, IoU 0, surface Dice 0, HD95 = image diagonal in mm",
    "hd95": "max of the two directed 95th percentiles of surface-to-surface distances (mm, voxel centres)",
    "surface_dice": "share of surface voxels of each mask within tolerance_mm of the other mask's surface",
    "foreground_mean": "mean over labels of the per-label means",
    "labels": "given with -l, else every non-zero value found in the references or predictions",
}


def label_files(folder: str | os.PathLike) -> dict[str, Path]:
    """``{case: path}`` of the image files in ``folder`` (case = name without its ending)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("folder not found", folder)
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if is_image_file(p):
            found.setdefault(split_ending(p)[0], p)
    return found


def evaluate_case(
    reference_file: str | os.PathLike,
    prediction_file: str | os.PathLike,
    labels: Sequence | None = None,
    tolerance_mm: float = 1.0,
    ignore_label: int | None = None,
) -> dict:
    """Metrics of one case: ``{"metrics": {label: {...}}}`` or ``{"geometry_mismatch": text}``.

    ``labels`` None: every non-zero value in either file. A label may be a region: a list of values
    (scored as the mask of all of them, keyed ``"1,2,3"``). ``ignore_label``: reference voxels of that
    value are left out of every mask (partially annotated cases). Raises :class:`InputError` when a
    file cannot be read or is not a label map (non-integer values are refused, not rounded).
    """
    reference, ref_geometry = read_label(reference_file)
    prediction, pred_geometry = read_label(prediction_file)
    if not ref_geometry.same_grid(pred_geometry):
        return {"geometry_mismatch": ref_geometry.describe_difference(pred_geometry)}
    if labels is None:
        labels = sorted((set(np.unique(reference).tolist()) | set(np.unique(prediction).tolist())) - {0})
        labels = [v for v in labels if v != ignore_label]
    valid = None if ignore_label is None else reference != ignore_label
    metrics = {}
    for label in labels:
        ref_mask, pred_mask = _mask(reference, label), _mask(prediction, label)
        if valid is not None:
            ref_mask, pred_mask = ref_mask & valid, pred_mask & valid
        metrics[target_key(label)] = class_metrics(ref_mask, pred_mask, ref_geometry.spacing, tolerance_mm)
    return {"metrics": metrics}


def _mask(label_map: np.ndarray, label) -> np.ndarray:
    """The voxels of a label value, or of any value of a region (a list of values)."""
    if isinstance(label, (list, tuple)):
        return np.isin(label_map, [int(v) for v in label])
    return label_map == int(label)


def evaluate_folders(
    reference_folder: str | os.PathLike,
    prediction_folder: str | os.PathLike,
    labels: Sequence | None = None,
    tolerance_mm: float = 1.0,
    num_processes: int = 1,
    execution: ExecutionSettings | None = None,
    ignore_label: int | None = None,
) -> dict:
    """Score every reference case that has a prediction; the summary dict (module docstring).
    Labels (values or regions) and ``ignore_label`` as in :func:`evaluate_case`.

    ``execution``: executor and workers (default: ``num_processes`` local processes).

    Raises :class:`InputError` when no case could be scored (no reference files, or none
    with a readable prediction on the same grid).
    """
    references = label_files(reference_folder)
    predictions = label_files(prediction_folder)
    if not references:
        raise InputError(f"no reference label files ({', '.join(IMAGE_ENDINGS)})", reference_folder)
    if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise InputError(f"tolerance must be a finite number >= 0 mm, got {tolerance_mm}")
    pairs = [(case, references[case], predictions[case]) for case in references if case in predictions]
    missing = sorted(case for case in references if case not in predictions)
    extra = sorted(case for case in predictions if case not in references)
    summary = evaluate_pairs(pairs, labels, tolerance_mm, num_processes, missing, execution, ignore_label)
    summary.update(
        reference_folder=str(Path(reference_folder).absolute()),
        prediction_folder=str(Path(prediction_folder).absolute()),
        extra_predictions=extra,
    )
    return summary


def evaluate_pairs(
    pairs: Sequence[tuple[str, str | os.PathLike, str | os.PathLike]],
    labels: Sequence | None = None,
    tolerance_mm: float = 1.0,
    num_processes: int = 1,
    missing: Sequence[str] = (),
    execution: ExecutionSettings | None = None,
    ignore_label: int | None = None,
) -> dict:
    """Score ``(case, reference_file, prediction_file)`` triples; the summary dict (module docstring).

    ``missing`` names cases without a prediction (listed, not scored). Labels and ``ignore_label``
    as in :func:`evaluate_case`. Raises :class:`InputError` (one line: the first reason, and how
    many more) when no case could be scored.
    """
    results = _run(pairs, labels, tolerance_mm, execution or ExecutionSettings(workers=max(1, int(num_processes))),
                   ignore_label)
    cases, mismatches, unreadable = [], [], []
    for (case, ref, pred), result in zip(pairs, results):
        if "error" in result:
            unreadable.append({"case": case, "file": result["file"], "reason": result["error"]})
        elif "geometry_mismatch" in result:
            mismatches.append({"case": case, "difference": result["geometry_mismatch"]})
        else:
            cases.append({"case": case, "reference": str(ref), "prediction": str(pred), "metrics": result["metrics"]})

    if labels is None:
        all_labels = sorted({int(k) for c in cases for k in c["metrics"]})
    else:
        all_labels = [[int(x) for x in v] if isinstance(v, (list, tuple)) else int(v) for v in labels]
    for c in cases:  # a label absent from both files of a case: both empty
        for label in all_labels:
            c["metrics"].setdefault(target_key(label), _both_empty())

    summary = {
        "labels": all_labels,
        "ignore_label": ignore_label,
        "tolerance_mm": float(tolerance_mm),
        "cases": cases,
        "mean": _means(cases, all_labels),
        "missing_predictions": sorted(missing),
        "geometry_mismatches": mismatches,
        "unreadable": unreadable,
        "extra_predictions": [],
        "why": dict(_WHY),
    }
    summary["foreground_mean"] = _foreground_mean(summary["mean"])
    if not cases:
        problems = [f"case {c}: prediction missing" for c in missing]
        problems += [f"case {m['case']}: prediction grid differs from the reference ({m['difference']})"
                     for m in mismatches]
        problems += [f"{u['file']}: {u['reason']}" for u in unreadable]
        more = f" (and {len(problems) - 1} more like it)" if len(problems) > 1 else ""
        raise InputError(f"nothing could be evaluated among {len(pairs) + len(missing)} reference case(s): "
                         f"{problems[0] if problems else 'no pairs'}{more}")
    return summary


def save_summary(summary: dict, path: str | os.PathLike) -> None:
    """Write ``summary`` as JSON (NaN as null), atomically."""
    write_text_atomic(path, json.dumps(_nan_to_none(summary), indent=2, allow_nan=False) + "\n")


def format_table(summary: dict, label_names: dict[int, str] | None = None) -> str:
    """A text table: one row per case and label, then the means, then what was not scored."""
    names = label_names or {}
    header = f"{'case':<24} {'label':<14} " + " ".join(f"{m:>12}" for m in METRICS)
    lines = [header, "-" * len(header)]
    for c in summary["cases"]:
        for label in summary["labels"]:
            values = c["metrics"][target_key(label)]
            lines.append(f"{c['case'][:24]:<24} {_name(names, label)[:14]:<14} "
                         + " ".join(_fmt(values.get(m)) for m in METRICS))
    lines.append("-" * len(header))
    for label in summary["labels"]:
        values = summary["mean"][target_key(label)]
        lines.append(f"{'mean':<24} {_name(names, label)[:14]:<14} "
                     + " ".join(_fmt(values.get(m)) for m in METRICS))
    fg = summary["foreground_mean"]
    lines.append(f"{'mean':<24} {'foreground':<14} " + " ".join(_fmt(fg.get(m)) for m in METRICS))
    for case in summary["missing_predictions"]:
        lines.append(f"not scored: {case}: prediction missing")
    for m in summary["geometry_mismatches"]:
        lines.append(f"not scored: {m['case']}: prediction grid differs from the reference ({m['difference']})")
    for u in summary["unreadable"]:
        lines.append(f"not scored: {u['case']}: {u['file']}: {u['reason']}")
    return "\n".join(lines)


def _name(names: dict, label) -> str:
    return target_name(names, label)


def _run(pairs, labels, tolerance_mm, execution: ExecutionSettings, ignore_label=None) -> list[dict]:
    """One result per pair, in order; a case whose scoring failed is reported as unreadable."""
    if execution.part is not None:
        raise InputError("the evaluation summary needs every case: run it without --part")
    tasks = [CaseTask(case, (str(ref), str(pred), None if labels is None else list(labels), tolerance_mm,
                             ignore_label)) for case, ref, pred in pairs]
    summary = run_cases(CaseStage("evaluation", _evaluate_task), tasks, execution, progress=False, log=None)
    results = []
    for (case, ref, pred), outcome in zip(pairs, summary.outcomes):
        results.append(outcome.result if outcome.status == "done" else {"error": outcome.reason, "file": str(pred)})
    return results


def _evaluate_task(context, payload) -> dict:
    return _safe_case(*payload)


def _safe_case(ref: str, pred: str, labels, tolerance_mm: float, ignore_label=None) -> dict:
    try:
        return evaluate_case(ref, pred, labels, tolerance_mm, ignore_label)
    except InputError as exc:
        return {"error": str(exc).split(": ", 1)[-1] if exc.path else str(exc), "file": exc.path or pred}


def _both_empty() -> dict:
    nan = float("nan")
    return {"dice": nan, "iou": nan, "n_ref": 0, "n_pred": 0, "tp": 0, "fp": 0, "fn": 0,
            "hd95": nan, "surface_dice": nan}


def _means(cases: list[dict], labels: list[int]) -> dict:
    out = {}
    for label in labels:
        entry, counts = {}, {}
        for m in METRICS:
            values = [c["metrics"][target_key(label)][m] for c in cases]
            values = [v for v in values if v is not None and not math.isnan(v)]
            entry[m] = float(np.mean(values)) if values else float("nan")
            counts[m] = len(values)
        entry["n_cases"] = counts
        out[target_key(label)] = entry
    return out


def _foreground_mean(means: dict) -> dict:
    out = {}
    for m in METRICS:
        values = [v[m] for v in means.values() if not math.isnan(v[m])]
        out[m] = float(np.mean(values)) if values else float("nan")
    return out


def _nan_to_none(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>12}"
    return f"{value:>12.4f}"
