"""Cross-validation splits: ``splits.json`` in ``segforge_preprocessed/DatasetNNN_Name/``.

Written once and then only read, so every configuration and every later run trains the
same folds. Format::

    {"source": "kfold" | "predefined", "seed": 12345, "why": "...",
     "folds": [{"train": [case, ...], "val": [case, ...]}, ...]}

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
    """Read ``splits.json``, or write it (atomically) from ``predefined`` or k-fold over ``case_names``."""
    path = Path(preprocessed_dir) / SPLITS_FILE
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
            _check_splits(splits)
        except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            raise InputError(f"splits file is not valid ({exc}); delete it to make new folds", path) from None
        return splits
    folds = predefined_splits(predefined, case_names) if predefined else None
    if folds is not None:
        splits = {"source": "predefined", "seed": SPLIT_SEED, "folds": folds,
                  "why": "the dataset brought its own train/val split (dataset.json segforge_split)"}
    else:
        splits = {"source": "kfold", "seed": SPLIT_SEED, "folds": kfold_splits(case_names),
                  "why": f"{min(DEFAULT_FOLDS, len(case_names))}-fold cross-validation of the sorted case "
                         f"names shuffled with seed {SPLIT_SEED}"}
    write_json_atomic(path, splits)
    return splits


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


def _check_splits(splits: dict) -> None:
    if not isinstance(splits.get("folds"), list) or not splits["folds"]:
        raise ValueError("no 'folds' list")
    for f in splits["folds"]:
        if not all(isinstance(c, str) for c in f["train"] + f["val"]):
            raise ValueError("case names must be strings")
