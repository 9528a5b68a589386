import json

import pytest

from segforge.data.splits import fold_cases, kfold_splits, load_or_create_splits, parse_fold
from segforge.errors import InputError


def test_kfold_partitions_cases_and_is_fixed():
    cases = [f"c{i:02d}" for i in range(11)]
    folds = kfold_splits(list(reversed(cases)))
    assert len(folds) == 5
    vals = [c for f in folds for c in f["val"]]
    assert sorted(vals) == cases  # every case validated exactly once
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == set(cases) and not set(f["train"]) & set(f["val"])
    assert kfold_splits(cases) == folds  # order of input does not matter, seed fixed


def test_few_cases_give_fewer_folds():
    assert len(kfold_splits(["a", "b", "c"])) == 3
    with pytest.raises(InputError, match="at least 2"):
        kfold_splits(["a"])


def test_splits_written_once(tmp_path):
    cases = [f"c{i}" for i in range(6)]
    first = load_or_create_splits(tmp_path, cases)
    assert json.loads((tmp_path / "splits.json").read_text()) == first
    assert first["source"] == "kfold" and "why" in first
    assert first["cases"] == cases
    # a later call reads the file and does not re-split
    assert load_or_create_splits(tmp_path, list(reversed(cases))) == first
    # ... but refuses to silently leave out cases it was not made from (issue 18: a split frozen from an
    # interrupted preprocessing left 8 of 12 cases unused in every later training)
    with pytest.raises(InputError, match=r"splits.json: its folds were made from 6 cases but 7 are preprocessed "
                                         r"now: 1 case\(s\) in no fold \(c9\); delete it"):
        load_or_create_splits(tmp_path, cases + ["c9"])


def test_a_single_case_has_no_folds_but_fold_all(tmp_path):
    splits = load_or_create_splits(tmp_path, ["only"])
    assert splits["folds"] == [] and "fold 'all'" in splits["why"]
    assert load_or_create_splits(tmp_path, ["only"]) == splits
    assert fold_cases(splits, "all", ["only"]) == (["only"], ["only"])
    with pytest.raises(InputError, match=r"fold 0 does not exist: 1 training case: too few .* train fold 'all'"):
        fold_cases(splits, 0, ["only"])


def test_predefined_split_is_fold_0(tmp_path):
    cases = [f"c{i}" for i in range(6)]
    split = {"train": ["c0", "c1", "c2", "c3"], "val": ["c4"], "test": ["c5"]}
    splits = load_or_create_splits(tmp_path, cases, predefined=split)
    assert splits["source"] == "predefined"
    assert fold_cases(splits, 0, cases) == (["c0", "c1", "c2", "c3"], ["c4"])
    with pytest.raises(InputError, match="fold 1 does not exist"):
        fold_cases(splits, 1, cases)


def test_predefined_split_without_val_is_cross_validated_without_test_cases(tmp_path):
    cases = [f"c{i}" for i in range(8)]
    splits = load_or_create_splits(tmp_path, cases, predefined={"train": cases[:6], "test": cases[6:]})
    assert len(splits["folds"]) == 5
    assert {c for f in splits["folds"] for c in f["train"] + f["val"]} == set(cases[:6])


def test_fold_all_and_bad_folds():
    cases = ["a", "b", "c"]
    splits = {"folds": kfold_splits(cases)}
    assert fold_cases(splits, "all", cases) == (cases, cases)
    assert parse_fold("2") == 2 and parse_fold("ALL") == "all"
    with pytest.raises(InputError, match="fold must be"):
        parse_fold("x")
    with pytest.raises(InputError, match="not preprocessed"):
        fold_cases(splits, 0, ["a", "b"])


def test_corrupt_splits_file_is_reported(tmp_path):
    (tmp_path / "splits.json").write_text("{not json")
    with pytest.raises(InputError, match="delete it"):
        load_or_create_splits(tmp_path, ["a", "b"])
