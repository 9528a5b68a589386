"""Cross-validation splits: ``splits.json`` in ``segforge_preprocessed/DatasetNNN_Name/``.

Written once and then only read, so every configuration and every later run trains the
same folds. Format::

    {"source": "kfold" | "predefined", "seed": 12345, "why": "...",
     "cases": [every case the folds were made from],
     "folds": [{"train": [case, ...], "val": [case, ...]}, ...]}

The folds must cover the dataset's whole case list: a ``splits.json`` made from another
list (from a preprocessing that was interrupted, or before cases were added) is refused,
naming the cases it leaves out, instead of silently training on part of the data; the
trainer also refuses to start on an incomplete preprocessing
(:func:`check_preprocessing_complete`), so such a file is not made in the first place.

A dataset of one case has no folds (``"folds": []``): only fold ``"all"`` can be trained.
Fold ``"all"`` is not stored: it trains on every case and validates on every case (a
sanity check of the fit, as in nnU-Net).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from segforge.errors import InputError
from segforge.io.atomic import write_json_atomic

__all__ = [
    "SPLITS_FILE",
    "SPLIT_SEED",
    "kfold_splits",
    "predefined_splits",
    "load_or_create_splits",
    "fold_cases",
    "parse_fold",
    "check_preprocessing_complete",
]

SPLITS_FILE = "splits.json"
SPLIT_SEED = 12345
DEFAULT_FOLDS = 5


def parse_fold(fold: str | int) -> int | str:
    """``"0"`` -> ``0``; ``"all"`` stays ``"all"``; anything else is an :class:`InputError`."""
    text = str(fold).strip().lower()
    if text == "all":
        return "all"
    if text.isdigit():
        return int(text)
    raise InputError(f"fold must be a number (0, 1, ...) or 'all', got {fold!r}")


def kfold_splits(case_names: list[str], n_folds: int = DEFAULT_FOLDS, seed: int = SPLIT_SEED) -> list[dict]:
    """Shuffle the sorted case names with ``seed`` and cut them into ``n_folds`` near-equal parts.

    Fold ``k`` validates on part ``k`` and trains on the rest. Fewer cases than folds gives
    one fold per case.
    """
    cases = sorted(case_names)
    if len(cases) < 2:
        raise InputError(f"cross-validation needs at least 2 training cases, found {len(cases)}; use fold 'all'")
    n_folds = min(n_folds, len(cases))
    order = np.random.RandomState(seed).permutation(len(cases))
    parts = np.array_split(order, n_folds)
    folds = []
    for k in range(n_folds):
        val = sorted(cases[i] for i in parts[k])
        train = sorted(c for c in cases if c not in set(val))
        folds.append({"train": train, "val": val})
    return folds


def predefined_splits(split: dict, case_names: list[str]) -> list[dict] | None:
    """Folds from a dataset's own ``segforge_split`` (``{"train": [...], "val": [...], "test": [...]}``).

    With a non-empty ``val`` list that is fold 0 and the only fold; without one, the
    ``train`` cases (test cases left out) are cut into the usual k folds. Returns None when
    the split names no training case that was preprocessed.
    """
    available = set(case_names)
    train = sorted(c for c in split.get("train", []) if c in available)
    val = sorted(c for c in split.get("val", []) if c in available)
    if not train:
        return None
    if val:
        return [{"train": train, "val": val}]
    return kfold_splits(train)


def load_or_create_splits(preprocessed_dir: str | os.PathLike, case_names: list[str],
                          predefined: dict | None = None) -> dict:
    """Read ``splits.json`` (it must cover exactly ``case_names``), or write it (atomically) from
    ``predefined`` or k-fold over ``case_names``."""
    path = Path(preprocessed_dir) / SPLITS_FILE
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
            _check_splits(splits)
        except (json.JSONDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(f"splits file is not valid ({exc}); delete it to make new folds", path) from None
        _check_same_cases(splits, case_names, path)
        return splits
    folds = predefined_splits(predefined, case_names) if predefined else None
    if folds is not None:
        splits = {"source": "predefined", "seed": SPLIT_SEED, "folds": folds,
                  "why": "the dataset brought its own train/val split (dataset.json segforge_split)"}
    elif len(case_names) < 2:
        splits = {"source": "kfold", "seed": SPLIT_SEED, "folds": [],
                  "why": f"{len(case_names)} training case: too few for cross-validation; only fold 'all' trains"}
    else:
        splits = {"source": "kfold", "seed": SPLIT_SEED, "folds": kfold_splits(case_names),
                  "why": f"{min(DEFAULT_FOLDS, len(case_names))}-fold cross-validation of the sorted case "
                         f"names shuffled with seed {SPLIT_SEED}"}
    splits["cases"] = sorted(case_names)
    write_json_atomic(path, splits)
    return splits


def check_preprocessing_complete(preprocessed_dir: str | os.PathLike, data_folder: str | os.PathLike,
                                 done: list[str], version: str | None = None) -> None:
    """Refuse to train on an interrupted preprocessing: every training case of the fingerprint
    (``fingerprint.json``, written before preprocessing starts) must be in ``done``, and, with
    ``version``, every case's properties must carry that ``preprocessing_version``."""
    data_folder = Path(data_folder)
    fingerprint = Path(preprocessed_dir) / "fingerprint.json"
    expected: list[str] = []
    if fingerprint.is_file():
        try:
            expected = [c["name"] for c in json.loads(fingerprint.read_text())["cases"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"fingerprint is not valid ({exc}); run segforge_plan_and_preprocess again",
                             fingerprint) from None
    missing = sorted(set(expected) - set(done))
    if missing:
        raise InputError(f"preprocessing is incomplete: {len(missing)} of {len(expected)} cases are missing "
                         f"({_names(missing)}); run segforge_plan_and_preprocess again to finish it", data_folder)
    if version is None:
        return
    stale = []
    for case in done:
        try:
            made_with = json.loads((data_folder / f"{case}.json").read_text()).get("preprocessing_version")
        except (OSError, json.JSONDecodeError, AttributeError):
            made_with = "unreadable"
        if made_with is not None and made_with != version:
            stale.append(case)
    if stale:
        raise InputError(f"{len(stale)} of {len(done)} cases were preprocessed with other plans ({_names(stale)}); "
                         "run segforge_plan_and_preprocess again", data_folder)


def fold_cases(splits: dict, fold: int | str, case_names: list[str] | None = None) -> tuple[list[str], list[str]]:
    """``(train cases, val cases)`` of ``fold`` (a number or ``"all"``).

    ``case_names`` (the preprocessed cases) is used for fold ``"all"`` and to check that
    every case of the fold exists.
    """
    fold = parse_fold(fold)
    if fold == "all":
        cases = sorted(case_names if case_names is not None else
                       {c for f in splits["folds"] for c in f["train"] + f["val"]})
        return cases, cases
    folds = splits["folds"]
    if not folds:
        raise InputError(f"fold {fold} does not exist: {splits.get('why', 'splits.json has no folds')}; "
                         "train fold 'all'")
    if fold >= len(folds):
        raise InputError(f"fold {fold} does not exist: splits.json has folds 0..{len(folds) - 1} "
                         f"({splits.get('source', 'kfold')}); use one of those or 'all'")
    train, val = list(folds[fold]["train"]), list(folds[fold]["val"])
    if case_names is not None:
        missing = sorted(set(train + val) - set(case_names))
        if missing:
            raise InputError(f"splits.json names cases that are not preprocessed: {', '.join(missing[:5])}"
                             f"{' ...' if len(missing) > 5 else ''}; preprocess them or delete splits.json")
    return train, val


def _check_same_cases(splits: dict, case_names: list[str], path: Path) -> None:
    made_from = splits.get("cases")
    if made_from is None:  # older files: the folds' union (predefined splits may leave test cases out)
        if splits.get("source") == "predefined":
            return
        made_from = [c for f in splits["folds"] for c in f["val"]]
    missing, extra = sorted(set(case_names) - set(made_from)), sorted(set(made_from) - set(case_names))
    if missing or extra:
        parts = [f"{len(missing)} case(s) in no fold ({_names(missing)})"] if missing else []
        parts += [f"{len(extra)} case(s) no longer preprocessed ({_names(extra)})"] if extra else []
        raise InputError(f"its folds were made from {len(set(made_from))} cases but {len(case_names)} are "
                         f"preprocessed now: {'; '.join(parts)}; delete it to make folds over all cases "
                         "(folds trained with the old file are then not comparable)", path)


def _names(cases: list[str], at_most: int = 5) -> str:
    return ", ".join(cases[:at_most]) + (f" and {len(cases) - at_most} more" if len(cases) > at_most else "")


def _check_splits(splits: dict) -> None:
    if not isinstance(splits.get("folds"), list) or (not splits["folds"] and len(splits.get("cases", [])) > 1):
        raise ValueError("no 'folds' list")
    for f in splits["folds"]:
        if not all(isinstance(c, str) for c in f["train"] + f["val"]):
            raise ValueError("case names must be strings")
