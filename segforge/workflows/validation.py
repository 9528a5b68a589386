"""Fold validation: the fold's validation cases predicted from their raw files and scored.

``validate_fold`` reads the fold's validation cases from ``splits.json`` (in the
preprocessed dataset folder), predicts each from its RAW image files with the real
predictor (same path as ``segforge_predict``: preprocessing, sliding window, mirroring,
export onto the raw grid), writes the label files to ``fold_K/validation/`` and scores them
against ``labelsTr`` into ``fold_K/validation/summary.json``. For a cascade the summary also
carries the locator's centroid error on the same fold (``locator_centroid_error``, from the
locator's ``locator_validation.json``).

It sits above training and inference (it runs a trained model's predictor), so the train
workflow calls it after training, never the trainer itself.
"""

from __future__ import annotations

import json
import os
from typing import Callable

from segforge import paths
from segforge.errors import InputError
from segforge.evaluation.evaluate import evaluate_pairs, save_summary
from segforge.inference.cascade_predictor import locator_model_folder
from segforge.inference.inputs import InputCase, output_file
from segforge.inference.model import ModelFolder
from segforge.inference.pipeline import predict_cases
from segforge.inference.registry import create_predictor
from segforge.io.dataset import RawDataset
from segforge.io.json_file import read_json
from segforge.training.locator_trainer import LOCATOR_VALIDATION_FILE

__all__ = ["validate_fold"]


def validate_fold(
    model_folder: str | os.PathLike,
    fold: str | int,
    device: str | None = None,
    checkpoint: str = "final",
    tta: bool = True,
    tolerance_mm: float = 1.0,
    log: Callable[[str], None] = print,
    save_probabilities: bool = False,
) -> dict:
    """Predict and score fold ``fold``'s validation cases; returns the summary (see
    :mod:`segforge.evaluation.evaluate`) with ``fold``, ``checkpoint`` and ``model_folder`` added.
    ``save_probabilities``: also ``CASE_probabilities.npy`` beside each prediction (what ensembles across
    configurations are scored from, :mod:`segforge.workflows.best_configuration`)."""
    from segforge.data.splits import SPLITS_FILE, fold_cases

    model = ModelFolder.open(model_folder)
    dataset = model.plans.dataset_name
    splits_file = paths.preprocessed_dataset_dir(dataset) / SPLITS_FILE
    if not splits_file.is_file():
        raise InputError("splits.json not found (it is written when training starts)", splits_file)
    splits = read_json(splits_file, what="splits file")
    raw = RawDataset.open(dataset)
    raw_cases = {c.name: c for c in raw.training_cases()}
    _, val = fold_cases(splits, fold, sorted(raw_cases))
    missing = [name for name in val if name not in raw_cases]
    if missing:
        raise InputError(f"validation cases missing from the raw dataset: {', '.join(missing)}", raw.root)
    cases = [InputCase(name, list(raw_cases[name].image_files), raw.file_ending) for name in val]

    out = paths.fold_folder(model.path, fold) / "validation"
    # the raw predictions: postprocessing is decided from them (segforge.workflows.postprocessing)
    predictor = create_predictor(model, folds=[str(fold)], checkpoint=checkpoint, device=device, tta=tta,
                                 postprocessing=False)
    reports = predict_cases(predictor, cases, out, save_probabilities=save_probabilities, log=log)
    predicted = {r.name for r in reports if r.status == "done"}
    pairs, not_predicted = [], []
    for case in cases:
        label_file = raw_cases[case.name].label_file
        if label_file is None:
            continue
        if case.name in predicted:
            pairs.append((case.name, label_file, output_file(case, out)))
        else:
            not_predicted.append(case.name)
    if not pairs:
        raise InputError(f"no validation case of fold {fold} could be predicted and scored", out)
    scheme = model.plans.label_scheme  # labels or regions the model predicts; ignored voxels are not scored
    summary = evaluate_pairs(pairs, scheme.targets, tolerance_mm, missing=not_predicted,
                             ignore_label=scheme.ignore_label)
    summary.update(fold=str(fold), checkpoint=checkpoint, model_folder=str(model.path),
                   prediction_folder=str(out), reference_folder=str(raw.root / "labelsTr"))
    if model.configuration.cascade is not None:
        error = _locator_error(model, fold)
        if error is not None:
            summary["locator_centroid_error"] = error
            if error.get("n"):
                log(f"fold {fold} locator centroid error: mean {error['mean_mm']:.2f} mm, median "
                    f"{error['median_mm']:.2f} mm, max {error['max_mm']:.2f} mm ({error['n']} validation cases)")
    save_summary(summary, out / "summary.json")
    fg = summary["foreground_mean"]
    log(f"fold {fold} validation: {len(summary['cases'])} cases, mean foreground Dice {fg['dice']:.4f}, "
        f"HD95 {fg['hd95']:.2f} mm -> {out / 'summary.json'}")
    return summary


def _locator_error(model: ModelFolder, fold) -> dict | None:
    """``centroid_error`` of the cascade's locator on ``fold`` (its ``locator_validation.json``), if written."""
    path = paths.fold_folder(locator_model_folder(model), fold) / LOCATOR_VALIDATION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["centroid_error"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError("locator_validation.json is not valid; train the locator again", path) from None
