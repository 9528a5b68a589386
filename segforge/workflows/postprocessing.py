"""Deciding the connected-component postprocessing from the cross-validation predictions.

As nnU-Net does, on the out-of-fold validation predictions of every fold (the raw label maps
``fold_K/validation/CASE<ending>`` and their references, listed in each fold's
``validation/summary.json``):

1. **all foreground together**: every foreground voxel outside the largest connected component
   of the foreground is set to background. Kept when the mean foreground Dice (the mean over
   labels of the per-label mean over cases) rises and no label's mean Dice falls.
2. **each label alone**, on top of step 1's decision: the voxels of the label outside its own
   largest component are set to background. Kept when that label's mean Dice rises (it changes
   no other label's Dice).

Dice per case and label as :mod:`segforge.evaluation` computes it (both empty: undefined, left
out of the mean). The decision and every figure go to ``postprocessing.json`` in the model
folder (:class:`segforge.inference.postprocessing.Postprocessing`), which the predictor applies.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from segforge import paths
from segforge.errors import InputError
from segforge.evaluation.metrics import dice
from segforge.inference.model import ModelFolder
from segforge.inference.postprocessing import CONNECTIVITY, Postprocessing, remove_all_but_largest_component
from segforge.io.image import read_label
from segforge.io.labels import target_key

__all__ = ["decide_postprocessing", "determine_postprocessing", "validation_pairs"]

_RISE = 1e-6  # a rise smaller than this is rounding, not a gain


def validation_pairs(model_folder: str | os.PathLike, folds: Sequence[str] | None = None
                     ) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``(case, reference file, raw prediction file)`` of every validated fold (``fold_K/validation/
    summary.json``), and the folds they come from. ``folds`` None: every fold with a summary."""
    model = ModelFolder.open(model_folder)
    if folds is None:
        folds = [f for f in model.available_folds() if f.isdigit()]
    pairs, used, missing = [], [], []
    for fold in folds:
        summary_file = paths.fold_folder(model.path, fold) / "validation" / "summary.json"
        if not summary_file.is_file():
            missing.append(str(fold))
            continue
        try:
            summary = json.loads(summary_file.read_text())
            folder = summary_file.parent  # the predictions beside it, wherever the model folder was moved
            pairs += [(c["case"], c["reference"], str(folder / Path(c["prediction"]).name)) for c in summary["cases"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"fold validation summary is not valid ({exc}); run segforge_train ID {fold} "
                             "--validation-only", summary_file) from None
        used.append(str(fold))
    if missing:
        raise InputError(f"fold(s) {', '.join(missing)} have no validation/summary.json: run segforge_train "
                         f"ID FOLD -c {model.configuration.name} --validation-only for each", model.path)
    if not pairs:
        raise InputError("no validated fold: train the folds (segforge_train validates each at the end)", model.path)
    return pairs, used


def _mask(label_map: np.ndarray, target) -> np.ndarray:
    return np.isin(label_map, list(target)) if isinstance(target, tuple) else label_map == target


def _case_dice(reference: np.ndarray, prediction: np.ndarray, labels: Sequence, valid) -> dict:
    if valid is not None:
        return {v: dice(_mask(reference, v) & valid, _mask(prediction, v) & valid) for v in labels}
    return {v: dice(_mask(reference, v), _mask(prediction, v)) for v in labels}


def _means(per_case: list[dict[int, float]], labels: Sequence[int]) -> dict[int, float]:
    out = {}
    for v in labels:
        values = [c[v] for c in per_case if not math.isnan(c[v])]
        out[v] = float(np.mean(values)) if values else float("nan")
    return out


def _foreground(means: dict[int, float]) -> float:
    values = [m for m in means.values() if not math.isnan(m)]
    return float(np.mean(values)) if values else float("nan")


def _rises(after: float, before: float) -> bool:
    return not math.isnan(after) and (math.isnan(before) or after > before + _RISE)


def _falls(after: float, before: float) -> bool:
    return not math.isnan(before) and (math.isnan(after) or after < before - _RISE)


def _read_cases(pairs, ignore_label):
    """``(reference, prediction, valid mask | None)`` per pair, read one at a time."""
    for case, reference_file, prediction_file in pairs:
        reference, _ = read_label(reference_file)
        prediction, _ = read_label(prediction_file)
        if reference.shape != prediction.shape:
            raise InputError(f"case {case}: prediction shape {prediction.shape} differs from the reference "
                             f"{reference.shape}", prediction_file)
        yield reference, prediction, (None if ignore_label is None else reference != ignore_label)


def decide_postprocessing(pairs: Sequence[tuple[str, str, str]], labels: Sequence[int],
                          ignore_label: int | None = None, names: dict[int, str] | None = None,
                          connectivity: int = CONNECTIVITY) -> Postprocessing:
    """The postprocessing that raises the mean Dice of ``pairs`` ``(case, reference, prediction)`` over
    ``labels`` (label values, or regions as tuples of values: these get only the all-foreground
    candidate); ``ignore_label``: reference voxels of that value count for no label."""
    labels = [tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v) for v in labels]
    single = [v for v in labels if isinstance(v, int)]  # per-label candidates: plain labels only
    names = names or {}
    # two passes over the files, one case in memory at a time: all foreground first, then each label
    baseline, with_foreground = [], []
    for reference, prediction, valid in _read_cases(pairs, ignore_label):
        baseline.append(_case_dice(reference, prediction, labels, valid))
        foreground = remove_all_but_largest_component(prediction, None, connectivity)
        with_foreground.append(_case_dice(reference, foreground, labels, valid))
    base_means, fg_means = _means(baseline, labels), _means(with_foreground, labels)
    worse = [v for v in labels if _falls(fg_means[v], base_means[v])]
    keep_foreground = _rises(_foreground(fg_means), _foreground(base_means)) and not worse
    figures = {"cases": len(baseline), "labels": [list(v) if isinstance(v, tuple) else v for v in labels],
               "connectivity": connectivity,
               "baseline": _figures(base_means)}
    candidates = [{
        "operation": "largest component of all foreground",
        **_figures(fg_means),
        "kept": keep_foreground,
        "why": (f"mean foreground Dice {_fmt(_foreground(base_means))} -> {_fmt(_foreground(fg_means))}"
                + (f"; worse for label(s) {worse}" if worse else "")
                + (": kept" if keep_foreground else ": dropped")),
    }]

    current_means = fg_means if keep_foreground else base_means
    per_label: list[dict[int, float]] = []
    for reference, prediction, valid in _read_cases(pairs, ignore_label):
        if keep_foreground:
            prediction = remove_all_but_largest_component(prediction, None, connectivity)
        per_label.append({v: _case_dice(reference, remove_all_but_largest_component(prediction, [v], connectivity),
                                        [v], valid)[v] for v in single})
    label_means = _means(per_label, single)
    kept_labels = []
    for v in single:
        before_v, after_v = current_means[v], label_means[v]
        keep = _rises(after_v, before_v)
        if keep:
            kept_labels.append(v)
        candidates.append({"operation": f"largest component of label {v} ({names.get(v, v)})", "label": v,
                           "dice_before": _num(before_v), "dice_after": _num(after_v), "kept": keep,
                           "why": f"label {v} mean Dice {_fmt(before_v)} -> {_fmt(after_v)}"
                                  + (": kept" if keep else ": dropped")})
        if keep:
            current_means = {**current_means, v: after_v}
    figures["candidates"] = candidates
    figures["final"] = _figures(current_means)
    decision = Postprocessing(keep_foreground, kept_labels, connectivity, figures)
    decision.why = (f"decided on {len(baseline)} cross-validation cases: mean foreground Dice "
                    f"{_fmt(_foreground(base_means))} without postprocessing, {_fmt(_foreground(current_means))} "
                    f"with {decision.describe(names)}")
    return decision


def determine_postprocessing(model_folder: str | os.PathLike, folds: Sequence[str] | None = None,
                             log: Callable[[str], None] = print) -> Postprocessing:
    """Decide from the model folder's fold validations and write ``postprocessing.json`` there."""
    model = ModelFolder.open(model_folder)
    pairs, used = validation_pairs(model.path, folds)
    scheme = model.plans.label_scheme
    names = {v: k for k, v in scheme.classes}
    decision = decide_postprocessing(pairs, scheme.targets, scheme.ignore_label, names=names)
    decision.cross_validation["folds"] = used
    path = decision.save(model.path)
    log(f"{model.path.name}: postprocessing {decision.describe(names)} ({decision.why}) -> {path}")
    return decision


def _figures(means: dict[int, float]) -> dict:
    return {"mean_dice": {target_key(v): _num(m) for v, m in means.items()},
            "foreground_mean_dice": _num(_foreground(means))}


def _num(value: float):
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"
