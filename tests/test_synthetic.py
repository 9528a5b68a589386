"""Synthetic datasets: layout, determinism, and that each kind holds what it promises."""

import json

import numpy as np
import pytest
from scipy import ndimage

from segforge.cli.synthetic import main as synthetic_main
from segforge.errors import InputError
from segforge.io import read_image
from segforge.io.dataset import RawDataset
from segforge.synthetic import default_spacing, make_synthetic_dataset

SMALL = (24, 40, 40)


def _truth(folder):
    return json.loads((folder / "synthetic_truth.json").read_text())


def test_layout_and_dataset_json(tmp_path):
    folder = make_synthetic_dataset(901, "Organs", num_train=3, num_test=1, shape=SMALL, raw_root=tmp_path)
    assert folder == tmp_path / "Dataset901_Organs"
    ds = RawDataset.open(folder)
    assert ds.channel_names == {"0": "CT"}
    assert ds.labels == {"background": 0, "liver": 1, "gallbladder": 2, "kidney": 3, "lesion": 4}
    assert ds.dataset_json["numTraining"] == 3 and ds.file_ending == ".nii.gz"
    assert [c.name for c in ds.training_cases()] == ["case_000", "case_001", "case_002"]
    test_cases = ds.test_cases()
    assert [c.name for c in test_cases] == ["case_003"] and test_cases[0].label_file.is_file()
    truth = _truth(folder)
    assert {c: t["split"] for c, t in truth["cases"].items()} == {
        "case_000": "train", "case_001": "train", "case_002": "train", "case_003": "test"}
    assert not list(tmp_path.glob(".tmp*"))


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = make_synthetic_dataset(1, "A", num_train=2, num_test=1, shape=SMALL, seed=3, raw_root=tmp_path / "a")
    b = make_synthetic_dataset(1, "A", num_train=2, num_test=1, shape=SMALL, seed=3, raw_root=tmp_path / "b")
    c = make_synthetic_dataset(1, "A", num_train=2, num_test=1, shape=SMALL, seed=4, raw_root=tmp_path / "c")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 8  # 3 images, 3 labels, dataset.json, synthetic_truth.json
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "imagesTr/case_000_0000.nii.gz").read_bytes() != (c / "imagesTr/case_000_0000.nii.gz").read_bytes()


def test_more_test_cases_leave_training_cases_unchanged(tmp_path):
    a = make_synthetic_dataset(1, "A", num_train=2, num_test=0, shape=SMALL, raw_root=tmp_path / "a")
    b = make_synthetic_dataset(1, "A", num_train=2, num_test=2, shape=SMALL, raw_root=tmp_path / "b")
    rel = "imagesTr/case_001_0000.nii.gz"
    assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_ct_organs_hold_what_they_promise(tmp_path):
    folder = make_synthetic_dataset(2, "Ct", num_train=3, num_test=0, shape=SMALL, raw_root=tmp_path)
    truth = _truth(folder)
    nominal = default_spacing("organs")
    for case, t in truth["cases"].items():
        image, geometry = read_image(folder / "imagesTr" / f"{case}_0000.nii.gz")
        labels, label_geometry = read_image(folder / "labelsTr" / f"{case}.nii.gz")
        assert image.dtype == np.int16 and image.shape == SMALL
        assert label_geometry.same_grid(geometry)
        np.testing.assert_allclose(geometry.spacing, t["spacing"], rtol=1e-5)
        np.testing.assert_allclose(geometry.direction, t["direction"], atol=1e-5)
        ratio = np.asarray(geometry.spacing) / nominal
        assert np.all((ratio > 0.84) & (ratio < 1.16)) and geometry.spacing[1] == geometry.spacing[2]
        # HU: air inside the scanned cylinder, tissue in the body, padding (exactly 0) outside
        assert image[labels == 0].min() < -900
        assert abs(np.median(image[labels == 1]) - 140) < 20
        assert image[0, 0, 0] == 0 and (image == 0).mean() > 0.05
        # what synthetic_truth.json says is what the label file holds
        for value in ("1", "2", "3", "4"):
            assert (labels == int(value)).sum() == t["labels"][value]["voxels"] > 0
        centroid = np.argwhere(labels > 0).mean(axis=0)
        np.testing.assert_allclose(t["labels"]["union"]["centroid_world"], geometry.index_to_world(centroid),
                                   atol=1e-3)
        # gallbladder touches the liver; the lesion lies inside the liver; the kidneys are two components
        grown = ndimage.binary_dilation(labels == 2)
        assert np.any(grown & (labels == 1))
        around_lesion = ndimage.binary_dilation(labels == 4) & (labels != 4)
        assert around_lesion.any() and np.all(labels[around_lesion] == 1)
        assert ndimage.label(labels == 3, structure=np.ones((3, 3, 3)))[1] == 2


def test_mr_multichannel(tmp_path):
    folder = make_synthetic_dataset(3, "Mr", num_train=2, num_test=0, shape=SMALL, modality="MR", num_channels=2,
                                    raw_root=tmp_path)
    ds = RawDataset.open(folder)
    assert ds.channel_names == {"0": "T1", "1": "T2"}
    case = ds.training_cases()[0]
    t1, _ = read_image(case.image_files[0])
    t2, _ = read_image(case.image_files[1])
    labels, _ = read_image(case.label_file)
    assert t1.dtype == np.float32 and t2.dtype == np.float32
    body = t1 > 0
    assert 0.1 < body.mean() < 0.9 and np.array_equal(body, t2 > 0)  # background masked to 0 in both
    # a different contrast: the liver is brighter than the lesion in T1, darker in T2
    assert np.median(t1[labels == 1]) > np.median(t1[labels == 4])
    assert np.median(t2[labels == 1]) < np.median(t2[labels == 4])


def test_anisotropic_spacing(tmp_path):
    folder = make_synthetic_dataset(4, "Aniso", num_train=2, num_test=0, anisotropic=True, raw_root=tmp_path)
    for t in _truth(folder)["cases"].values():
        z, y, x = t["spacing"]
        assert 4.2 < z < 5.8 and 0.59 < y < 0.81 and y == x
        assert all(t["labels"][v]["voxels"] > 0 for v in ("1", "2", "3", "4"))


def test_small_target_is_small_and_moves(tmp_path):
    shape = (48, 96, 96)
    folder = make_synthetic_dataset(5, "Small", kind="small_target", num_train=6, num_test=0, shape=shape,
                                    raw_root=tmp_path)
    assert RawDataset.open(folder).labels == {"background": 0, "target": 1}
    positions = []
    for case, t in _truth(folder)["cases"].items():
        target = t["labels"]["1"]
        assert 0 < target["voxels"] < 0.002 * np.prod(shape)
        labels, _ = read_image(folder / "labelsTr" / f"{case}.nii.gz")
        idx = np.argwhere(labels == 1)
        extent_mm = (idx.max(axis=0) - idx.min(axis=0) + 1) * np.asarray(t["spacing"])
        assert np.all(extent_mm < 30) and np.all(extent_mm > 8), extent_mm
        positions.append(np.asarray(target["centroid_voxel"]) * t["spacing"])
    spread = np.ptp(np.asarray(positions), axis=0)
    assert spread[1:].max() > 30, spread  # several cm in the axial plane


def test_cli_writes_dataset_and_reports_bad_input(folders, capsys):
    code = synthetic_main(["-d", "7", "-n", "Cli", "--num-train", "2", "--num-test", "0", "--shape", "16", "32", "32",
                           "--modality", "MR", "--channels", "2", "--seed", "1"])
    assert code == 0
    assert (folders / "raw" / "Dataset007_Cli" / "imagesTr" / "case_001_0001.nii.gz").is_file()
    code = synthetic_main(["-d", "7", "-n", "bad name!"])
    assert code == 2
    assert "may only hold letters" in capsys.readouterr().err
    assert synthetic_main(["-d", "8", "-n", "X", "--shape", "4", "32", "32"]) == 2
    assert "at least 8 voxels" in capsys.readouterr().err


def test_replaces_only_synthetic_folders(tmp_path):
    folder = make_synthetic_dataset(1, "A", num_train=1, num_test=0, shape=SMALL, seed=1, raw_root=tmp_path)
    again = make_synthetic_dataset(1, "A", num_train=2, num_test=0, shape=SMALL, seed=1, raw_root=tmp_path)
    assert again == folder and len(list((folder / "labelsTr").iterdir())) == 2
    real = tmp_path / "Dataset002_Real"
    (real / "imagesTr").mkdir(parents=True)
    with pytest.raises(InputError, match="not a synthetic dataset"):
        make_synthetic_dataset(2, "Real", num_train=1, num_test=0, shape=SMALL, raw_root=tmp_path)
    assert (real / "imagesTr").is_dir()


def test_unknown_kind_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="choose one of organs, small_target"):
        make_synthetic_dataset(1, "A", kind="brain", raw_root=tmp_path)
