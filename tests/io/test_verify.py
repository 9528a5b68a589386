"""verify_dataset: every kind of bad raw dataset gives one clear line naming the file."""

import gzip
import json

import numpy as np
import pytest

from segforge.errors import DatasetProblems
from segforge.io import Geometry, write_image
from segforge.io.dataset import RawDataset
from segforge.io.verify import verify_dataset, verify_or_raise

GEOM = Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(), (8, 10, 12))


def make_raw(root, cases=("a", "b", "c"), channels=2):
    root.mkdir(parents=True)
    label = np.zeros(GEOM.shape, np.uint8)
    label[2:5, 3:6, 4:8] = 1
    for case in cases:
        for c in range(channels):
            write_image(np.full(GEOM.shape, c + 1.0, np.float32), GEOM, root / "imagesTr" / f"{case}_{c:04d}.nii.gz")
        write_image(label, GEOM, root / "labelsTr" / f"{case}.nii.gz")
    write_image(np.ones(GEOM.shape, np.float32), GEOM, root / "imagesTs" / "t_0000.nii.gz")
    write_image(np.ones(GEOM.shape, np.float32), GEOM, root / "imagesTs" / "t_0001.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {str(c): "MR" for c in range(channels)}, "labels": {"background": 0, "organ": 1},
        "numTraining": len(cases), "file_ending": ".nii.gz"}))
    return RawDataset.open(root)


def test_clean_dataset_has_no_problems(tmp_path):
    ds = make_raw(tmp_path / "Dataset001_Ok")
    assert verify_dataset(ds, num_processes=1) == []
    verify_or_raise(ds, num_processes=1)


def _problem(problems, file_part, text):
    hits = [p for p in problems if file_part in p and text in p]
    assert hits, f"no problem naming {file_part!r} with {text!r} in:\n" + "\n".join(problems)


def test_every_problem_reported_at_once(tmp_path):
    ds = make_raw(tmp_path / "Dataset002_Bad", cases=tuple("abcdefghij"))
    tr, lb = ds.root / "imagesTr", ds.root / "labelsTr"
    # a: label on a different grid
    write_image(np.zeros((8, 10, 11), np.uint8), Geometry.identity((8, 10, 11), (2, 1, 1)), lb / "a.nii.gz")
    # b: second channel missing
    (tr / "b_0001.nii.gz").unlink()
    # c: label file missing
    (lb / "c.nii.gz").unlink()
    # d: undeclared label value 3
    bad = np.zeros(GEOM.shape, np.uint8)
    bad[0, 0, 0] = 3
    write_image(bad, GEOM, lb / "d.nii.gz")
    # e: NaN voxels
    img = np.ones(GEOM.shape, np.float32)
    img[1, 1, 1] = np.nan
    img[1, 1, 2] = np.inf
    write_image(img, GEOM, tr / "e_0000.nii.gz")
    # f: empty file, g: corrupt file
    (tr / "f_0000.nii.gz").write_bytes(b"")
    (tr / "g_0000.nii.gz").write_bytes(gzip.compress(b"this is not a nifti file" * 20))
    # h: 2D image, i: 4D image
    import SimpleITK as sitk
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, 12), np.float32)), str(tr / "h_0000.nii.gz"))
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(np.zeros(GEOM.shape, np.float32))] * 2),
                    str(tr / "i_0000.nii.gz"))
    # j: channel 1 on a shifted origin
    write_image(np.ones(GEOM.shape, np.float32), Geometry((2.0, 1.0, 1.0), (5.0, 0.0, 0.0), np.eye(3).ravel(),
                                                          GEOM.shape), tr / "j_0001.nii.gz")
    data = json.loads((ds.root / "dataset.json").read_text())
    data["numTraining"] = 11
    (ds.root / "dataset.json").write_text(json.dumps(data))
    ds = RawDataset.open(ds.root)
    problems = verify_dataset(ds, num_processes=2, progress=False)
    _problem(problems, "labelsTr/a.nii.gz", "label grid differs from image a_0000.nii.gz (image vs label: shape (8, 10, 12) vs (8, 10, 11)")
    _problem(problems, "imagesTr/b_0001.nii.gz", "channel 1 file missing for case b")
    _problem(problems, "labelsTr/c.nii.gz", "label file missing for training case c")
    _problem(problems, "labelsTr/d.nii.gz", "label values [3] are not declared in dataset.json labels")
    _problem(problems, "imagesTr/e_0000.nii.gz", "1 NaN and 1 infinite voxels")
    _problem(problems, "imagesTr/f_0000.nii.gz", "empty file")
    _problem(problems, "imagesTr/g_0000.nii.gz", "cannot read image")
    _problem(problems, "imagesTr/h_0000.nii.gz", "2D image")
    _problem(problems, "imagesTr/i_0000.nii.gz", "4D image")
    _problem(problems, "imagesTr/j_0001.nii.gz", "grid differs from channel 0 file j_0000.nii.gz (origin")
    _problem(problems, "dataset.json", "numTraining is 11 but imagesTr holds 10 cases")
    assert len(problems) == 11, "\n".join(problems)
    with pytest.raises(DatasetProblems) as info:
        verify_or_raise(ds, num_processes=1, progress=False)
    assert len(info.value.problems) == 11


def test_split_and_float_labels(tmp_path):
    ds = make_raw(tmp_path / "Dataset003_Split", channels=1)
    for p in (ds.root / "imagesTs").glob("t_0001*"):
        p.unlink()
    lbl = np.zeros(GEOM.shape, np.float32)
    lbl[2, 2, 2] = 0.5
    write_image(lbl, GEOM, ds.root / "labelsTr" / "a.nii.gz")
    data = json.loads((ds.root / "dataset.json").read_text())
    data["segforge_split"] = {"train": ["a", "zz"], "val": ["b"], "test": ["t"]}
    (ds.root / "dataset.json").write_text(json.dumps(data))
    problems = verify_dataset(RawDataset.open(ds.root), num_processes=1, progress=False)
    _problem(problems, "dataset.json", "segforge_split train names cases not in imagesTr: zz")
    _problem(problems, "labelsTr/a.nii.gz", "non-integer values")
    assert len(problems) == 2, "\n".join(problems)
