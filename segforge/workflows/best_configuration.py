"""Choosing the model to predict with: configurations and their pairwise ensembles by CV Dice.

What ``segforge_find_best_configuration ID`` runs (nnU-Net's ``find_best_configuration``):

1. **candidates**: every trained segmentation configuration of the dataset (``2d``, ``2.5d``,
   ``3d_fullres``, ``cascade_fullres``; one model folder each) whose folds were all validated
   (``fold_K/validation/summary.json``, written after training); the others are listed as
   skipped with the reason;
2. **single configurations**: the mean Dice per label over all cross-validation cases (every
   fold's validation cases, each predicted by the fold that did not train on it), and the mean
   over labels (the foreground mean);
3. **pairwise ensembles**: for each pair, every validation case's probabilities of both
   (``validation/CASE_probabilities.npy``, written by ``segforge_train ... --save-probabilities``) are
   averaged on the case's grid, argmax, scored the same way; the label maps go to
   ``ensembles/<A>+<B>/validation/``. A pair without probabilities is skipped, saying which
   command writes them;
4. **the choice**: the highest foreground mean Dice (a tie keeps the earlier: single
   configurations before ensembles, in plan order);
5. **postprocessing** (:mod:`segforge.workflows.postprocessing`) is decided for every single
   configuration (``postprocessing.json`` in its model folder) and for the chosen ensemble
   (in its ``ensembles/`` folder), from the same cross-validation predictions;
6. ``segforge_results/DatasetNNN_Name/best_configuration.json``: the choice, why, and the table
   of figures. ``segforge_predict -d ID`` then predicts with it by default.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from segforge import paths
from segforge.errors import InputError
from segforge.evaluation.metrics import dice
from segforge.inference.ensemble import (
    BEST_CONFIGURATION_FILE,
    ENSEMBLES_FOLDER,
    FORMAT,
    ensemble_folder_name,
)
from segforge.inference.export import probability_files
from segforge.inference.model import ModelFolder
from segforge.io.atomic import write_json_atomic
from segforge.io.image import read_label, write_image
from segforge.io.labels import target_key
from segforge.workflows.postprocessing import decide_postprocessing, determine_postprocessing

__all__ = ["find_best_configuration", "format_best_table"]

CONFIGURATION_ORDER = ("2d", "2.5d", "3d_fullres", "cascade_fullres")
METRIC = ("mean Dice per label over every cross-validation case (each predicted by the fold that did not train on it), "
          "then the mean over labels (foreground mean); both-empty cases left out")


def _model_folders(results: Path, configurations, trainer) -> list[ModelFolder]:
    found = []
    for folder in sorted(results.iterdir()) if results.is_dir() else []:
        parsed = paths.parse_model_folder_name(folder.name)
        if parsed is None or not (folder / "plans.json").is_file():
            continue
        model = ModelFolder.open(folder)
        c = model.configuration
        if c.kind != "segmentation" or (configurations and c.name not in configurations):
            continue
        if trainer is not None and parsed[0] != trainer:
            continue
        found.append(model)
    order = {n: i for i, n in enumerate(CONFIGURATION_ORDER)}
    return sorted(found, key=lambda m: (order.get(m.configuration.name, len(order)), m.path.name))


def _default_folds(dataset_name: str, models: list[ModelFolder]) -> list[str]:
    """The cross-validation folds of ``splits.json``, else every numbered fold validated anywhere."""
    splits = paths.preprocessed_dataset_dir(dataset_name) / "splits.json"
    if splits.is_file():
        try:
            return [str(i) for i in range(len(json.loads(splits.read_text())["folds"]))]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError("splits.json is not valid", splits) from None
    validated = {p.parent.parent.name[len("fold_"):] for m in models for p in m.path.glob("fold_*/validation/summary.json")}
    return sorted((f for f in validated if f.isdigit()), key=int)


def _validation_cases(model: ModelFolder, folds: Sequence[str]) -> list[dict] | str:
    """Every fold's validated cases (``case``, ``reference``, ``prediction``, ``metrics``, ``fold``), or why not."""
    cases = []
    for fold in folds:
        summary = paths.fold_folder(model.path, fold) / "validation" / "summary.json"
        if not summary.is_file():
            return (f"fold {fold} not validated (train it: segforge_train ID {fold} -c {model.configuration.name}, "
                    "or --validation-only)")
        try:
            data = json.loads(summary.read_text())
            for c in data["cases"]:
                cases.append({"case": c["case"], "reference": c["reference"], "metrics": c["metrics"], "fold": fold,
                              "prediction": str(summary.parent / Path(c["prediction"]).name)})
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"fold validation summary is not valid ({exc})", summary) from None
    return cases


def _mean_figures(per_case: list[dict[int, float]], labels: Sequence[int]) -> dict:
    means = {}
    for v in labels:
        values = [c[v] for c in per_case if c.get(v) is not None and not math.isnan(c[v])]
        means[v] = float(np.mean(values)) if values else float("nan")
    valid = [m for m in means.values() if not math.isnan(m)]
    return {"mean_dice": {target_key(v): _num(m) for v, m in means.items()},
            "foreground_mean_dice": _num(float(np.mean(valid)) if valid else float("nan"))}


def _single_figures(cases: list[dict], labels: Sequence[int]) -> dict:
    per_case = [{v: _nan((c["metrics"].get(target_key(v)) or {}).get("dice")) for v in labels} for c in cases]
    return {"cases": len(cases), **_mean_figures(per_case, labels)}


def _ensemble(members: list[ModelFolder], cases: list[list[dict]], labels: Sequence, out: Path
              ) -> tuple[dict, list[tuple[str, str, str]]] | str:
    """Score the mean of the members' validation probabilities; write its label maps into ``out``."""
    first = {c["case"]: c for c in cases[0]}
    others = [{c["case"]: c for c in member_cases} for member_cases in cases[1:]]
    if any(set(o) != set(first) for o in others):
        return "the members were validated on different cases (other splits)"
    for model, member_cases in zip(members, cases):
        missing = [c["case"] for c in member_cases if not probability_files(c["prediction"])[0].is_file()]
        if missing:
            return (f"{model.path.name} has no validation probabilities ({len(missing)} case(s), e.g. {missing[0]}): "
                    f"segforge_train ID FOLD -c {model.configuration.name} --validation-only --save-probabilities")
    per_case, pairs = [], []
    for name, case in first.items():
        total = None
        for lookup in [first, *others]:
            probabilities = np.load(probability_files(lookup[name]["prediction"])[0], allow_pickle=False)
            if total is not None and probabilities.shape != total.shape:
                return f"case {name}: the members' probabilities differ in shape"
            total = probabilities.astype(np.float32) if total is None else total + probabilities
        scheme = members[0].plans.label_scheme
        labels_map = scheme.probabilities_to_labels(total / len(members))
        reference, geometry = read_label(case["reference"])
        target = out / "validation" / Path(case["prediction"]).name
        write_image(labels_map, geometry, target)
        pairs.append((name, case["reference"], str(target)))
        valid = None if scheme.ignore_label is None else reference != scheme.ignore_label
        per_case.append({v: dice(_valid(scheme.target_mask(reference, v), valid),
                                 _valid(scheme.target_mask(labels_map, v), valid)) for v in labels})
    return {"cases": len(per_case), **_mean_figures(per_case, labels)}, pairs


def find_best_configuration(dataset: str | int, configurations: Sequence[str] | None = None,
                            trainer: str | None = None, folds: Sequence[str | int] | None = None,
                            ensembles: bool = True, log: Callable[[str], None] = print) -> dict:
    """Compare the dataset's trained configurations and their pairwise ensembles; write and return
    ``best_configuration.json`` (module docstring)."""
    results = paths.results_dataset_dir(dataset)
    models = _model_folders(results, list(configurations or []), trainer)
    if not models:
        raise InputError("no trained segmentation model folder here (train with segforge_train first)", results)
    folds = [str(f) for f in folds] if folds else _default_folds(models[0].plans.dataset_name, models)
    if not folds:
        raise InputError("no validated fold found: segforge_train validates each fold after training", results)
    plans = models[0].plans
    scheme = plans.label_scheme
    labels = scheme.targets  # label values, or regions (tuples of values)
    names = {v: k for k, v in scheme.classes}

    candidates, skipped, usable = [], [], []
    for model in models:
        cases = _validation_cases(model, folds)
        if isinstance(cases, str):
            skipped.append({"name": model.configuration.name, "model_folders": [model.path.name], "why": cases})
            continue
        usable.append((model, cases))
        candidates.append({"name": model.configuration.name, "model_folders": [model.path.name],
                           "ensemble_folder": None, **_single_figures(cases, labels)})
    if not usable:
        raise InputError("no configuration has all folds " + ", ".join(folds) + " validated: "
                         + "; ".join(f"{s['name']}: {s['why']}" for s in skipped), results)

    ensemble_pairs = {}
    if ensembles:
        for (a, cases_a), (b, cases_b) in itertools.combinations(usable, 2):
            name = f"{a.configuration.name} + {b.configuration.name}"
            folder_name = ensemble_folder_name([a.path.name, b.path.name])
            scored = _ensemble([a, b], [cases_a, cases_b], labels, results / ENSEMBLES_FOLDER / folder_name)
            if isinstance(scored, str):
                skipped.append({"name": name, "model_folders": [a.path.name, b.path.name], "why": scored})
                continue
            figures, pairs = scored
            ensemble_pairs[name] = pairs
            candidates.append({"name": name, "model_folders": [a.path.name, b.path.name],
                               "ensemble_folder": f"{ENSEMBLES_FOLDER}/{folder_name}", **figures})

    best = candidates[0]
    for candidate in candidates[1:]:
        if _nan(candidate["foreground_mean_dice"]) > _nan(best["foreground_mean_dice"]):
            best = candidate

    # postprocessing from the same cross-validation predictions: each single configuration, the chosen ensemble
    for candidate, (model, _) in zip(candidates, usable):
        decision = determine_postprocessing(model.path, folds, log=lambda *_: None)
        _add_postprocessing(candidate, decision, names)
    if best["ensemble_folder"]:
        decision = decide_postprocessing(ensemble_pairs[best["name"]], labels, scheme.ignore_label, names=names)
        decision.cross_validation["folds"] = folds
        decision.save(results / best["ensemble_folder"])
        _add_postprocessing(best, decision, names)

    others = [c for c in candidates if c is not best]
    runner_up = max(others, key=lambda c: _nan(c["foreground_mean_dice"]), default=None)
    why = (f"highest foreground mean Dice over {best['cases']} cross-validation cases (folds {', '.join(folds)}): "
           f"{best['name']} {_fmt(best['foreground_mean_dice'])}")
    if runner_up is not None:
        why += f", next {runner_up['name']} {_fmt(runner_up['foreground_mean_dice'])}"
    result = {
        "format": FORMAT, "dataset": plans.dataset_name, "folds": folds, "metric": METRIC,
        "labels": {target_key(v): names.get(v, target_key(v)) for v in labels},
        "candidates": candidates, "skipped": skipped,
        "best": {k: best[k] for k in ("name", "model_folders", "ensemble_folder", "foreground_mean_dice",
                                       "postprocessing", "foreground_mean_dice_postprocessed") if k in best},
        "why": why,
    }
    write_json_atomic(results / BEST_CONFIGURATION_FILE, result)
    log(format_best_table(result))
    log(f"best: {best['name']} ({why}) -> {results / BEST_CONFIGURATION_FILE}")
    return result


def _add_postprocessing(candidate: dict, decision, names) -> None:
    candidate["postprocessing"] = decision.describe(names)
    candidate["foreground_mean_dice_postprocessed"] = decision.cross_validation["final"]["foreground_mean_dice"]


def format_best_table(result: dict) -> str:
    """The candidates' figures, one row each, the chosen one marked; then what was skipped."""
    labels = result["labels"]
    header = (f"{'':2}{'candidate':<34} {'cases':>5} " + " ".join(f"{n[:12]:>12}" for n in labels.values())
              + f" {'foreground':>10} {'+ postproc.':>11}")
    lines = [header, "-" * len(header)]
    for c in result["candidates"]:
        mark = "* " if c["name"] == result["best"]["name"] else "  "
        lines.append(f"{mark}{c['name'][:34]:<34} {c['cases']:>5} "
                     + " ".join(f"{_fmt(c['mean_dice'][v]):>12}" for v in labels)
                     + f" {_fmt(c['foreground_mean_dice']):>10} {_fmt(c.get('foreground_mean_dice_postprocessed')):>11}")
    for s in result["skipped"]:
        lines.append(f"skipped: {s['name']}: {s['why']}")
    return "\n".join(lines)


def _valid(mask: np.ndarray, valid) -> np.ndarray:
    return mask if valid is None else mask & valid


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _num(value: float):
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
