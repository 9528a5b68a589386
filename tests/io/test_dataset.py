"""RawDataset: layout listing, dataset.json parsing, opening by id / name / path."""

import json

import numpy as np
import pytest

from segforge.errors import InputError
from segforge.io import Geometry, write_image
from segforge.io.dataset import RawDataset

GEOM = Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(), (8, 10, 12))


def make_raw(root, cases=("a", "b"), channels=1, test=("t",), ending=".nii.gz", extra_json=None):
    """A tiny raw dataset: every case an 8x10x12 volume with a cube of label 1."""
    root.mkdir(parents=True)
    label = np.zeros(GEOM.shape, np.uint8)
    label[2:5, 3:6, 4:8] = 1
    for folder, names in (("Tr", cases), ("Ts", test)):
        for case in names:
            for c in range(channels):
                write_image(np.full(GEOM.shape, c + 1.0, np.float32), GEOM, root / f"images{folder}" / f"{case}_{c:04d}{ending}")
            if folder == "Tr":
                write_image(label, GEOM, root / f"labels{folder}" / f"{case}{ending}")
    data = {"channel_names": {str(c): "CT" if c == 0 else f"ch{c}" for c in range(channels)},
            "labels": {"background": 0, "organ": 1}, "numTraining": len(cases), "file_ending": ending}
    data.update(extra_json or {})
    (root / "dataset.json").write_text(json.dumps(data))
    return root


def test_open_by_path_id_and_name(folders):
    root = make_raw(folders / "raw" / "Dataset901_Tiny", channels=2)
    for key in (901, "901", "Dataset901_Tiny", root, str(root)):
        ds = RawDataset.open(key)
        assert ds.root == root and ds.name == "Dataset901_Tiny"
    assert ds.channel_names == {"0": "CT", "1": "ch1"}
    assert ds.modality(0) == "CT" and ds.modality(1) == "ch1"
    assert ds.labels == {"background": 0, "organ": 1} and ds.file_ending == ".nii.gz"
    cases = ds.training_cases()
    assert [c.name for c in cases] == ["a", "b"]
    assert [p.name for p in cases[0].image_files] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert cases[0].label_file == root / "labelsTr" / "a.nii.gz"
    test = ds.test_cases()
    assert [c.name for c in test] == ["t"] and test[0].label_file is None
    assert ds.predefined_split() is None
    assert ds.stray_files() == []


def test_other_ending_split_and_decathlon_json(tmp_path):
    split = {"train": ["a"], "val": ["b"], "test": ["t"]}
    root = make_raw(tmp_path / "Dataset002_X", ending=".nrrd", extra_json={"segforge_split": split})
    data = json.loads((root / "dataset.json").read_text())
    data["labels"] = {"0": "background", "1": "organ"}  # Decathlon style: value -> name
    data["modality"] = data.pop("channel_names")
    (root / "dataset.json").write_text(json.dumps(data))
    ds = RawDataset.open(root)
    assert ds.labels == {"background": 0, "organ": 1} and ds.channel_names == {"0": "CT"}
    assert ds.file_ending == ".nrrd" and [c.name for c in ds.training_cases()] == ["a", "b"]
    assert ds.predefined_split() == split


def test_case_names_with_digits_and_stray_files(tmp_path):
    root = make_raw(tmp_path / "Dataset003_X", cases=("case_0001", "case_0002"))
    (root / "imagesTr" / "notes.txt").write_text("x")
    write_image(np.zeros(GEOM.shape, np.float32), GEOM, root / "imagesTr" / "nosuffix.nii.gz")
    write_image(np.zeros(GEOM.shape, np.float32), GEOM, root / "imagesTr" / "other_0000.nrrd")
    write_image(np.zeros(GEOM.shape, np.uint8), GEOM, root / "labelsTr" / "orphan.nii.gz")
    ds = RawDataset.open(root)
    assert [c.name for c in ds.training_cases()] == ["case_0001", "case_0002"]
    stray = "\n".join(ds.stray_files())
    assert "nosuffix.nii.gz: image name lacks the channel suffix _0000" in stray
    assert "other_0000.nrrd: file ending '.nrrd' differs" in stray
    assert "orphan.nii.gz: label file has no image in imagesTr" in stray
    assert "notes.txt" not in stray


def test_missing_folder_and_json_are_clear_errors(folders):
    tmp_path = folders / "raw"
    with pytest.raises(InputError, match="no dataset with id 905"):
        RawDataset.open(905)
    with pytest.raises(InputError, match="dataset folder not found"):
        RawDataset.open(tmp_path / "nope")
    (tmp_path / "Dataset904_Empty").mkdir(parents=True)
    with pytest.raises(InputError, match=r"Dataset904_Empty/dataset.json: dataset.json not found"):
        RawDataset.open(904)
    (tmp_path / "Dataset904_Empty" / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        RawDataset.open("Dataset904_Empty")
    (tmp_path / "Dataset904_Empty" / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}}))
    with pytest.raises(InputError, match='needs "labels"'):
        RawDataset.open(904)
    (tmp_path / "Dataset904_Empty" / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0}, "file_ending": ".png"}))
    with pytest.raises(InputError, match="file_ending '.png' is not one of"):
        RawDataset.open(904)
