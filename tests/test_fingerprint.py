"""The fingerprint against known answers: synthetic_truth.json, numpy, and hand-made volumes."""

import json

import numpy as np
import pytest

from segforge.errors import InputError
from segforge.fingerprint import (
    extract_fingerprint,
    fingerprint_case,
    load_fingerprint,
    save_fingerprint,
    summarize_cases,
)
from segforge.io import Geometry, read_image, write_image
from segforge.io.dataset import RawDataset
from segforge.synthetic import make_synthetic_dataset

INTENSITY_KEYS = {"mean", "std", "min", "max", "p00_5", "p50", "p99_5"}
OBJECT_KEYS = {"voxels", "extent_mm", "bbox_voxels", "centroid_world", "centroid_voxel", "components"}


def _hand_made_dataset(root, cases, labels=None):
    """``cases``: name -> (image (Z, Y, X), label (Z, Y, X), geometry); one channel, CT."""
    folder = root / "Dataset950_Hand"
    for name, (image, label, geometry) in cases.items():
        write_image(image, geometry, folder / "imagesTr" / f"{name}_0000.nii.gz")
        write_image(label, geometry, folder / "labelsTr" / f"{name}.nii.gz")
    dataset_json = {"channel_names": {"0": "CT"}, "labels": labels or {"background": 0, "a": 1, "b": 2},
                    "numTraining": len(cases), "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    return RawDataset.open(folder)


@pytest.fixture(scope="module")
def organs(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    folder = make_synthetic_dataset(960, "Organs", num_train=3, num_test=1, shape=(24, 40, 40), modality="MR",
                                    num_channels=2, seed=5, raw_root=root)
    ds = RawDataset.open(folder)
    return ds, extract_fingerprint(ds, num_processes=1, progress=False)


def test_keys_are_the_contract(organs):
    _, fp = organs
    assert list(fp) == ["dataset_name", "channel_names", "labels", "cases", "intensity", "summary"]
    assert fp["dataset_name"] == "Dataset960_Organs" and fp["channel_names"] == {"0": "T1", "1": "T2"}
    case = fp["cases"][0]
    assert set(case) == {"name", "spacing", "shape", "shape_after_crop", "nonzero_fraction_removed", "crop_box",
                         "intensity", "objects"}
    assert len(case["intensity"]) == 2 and set(case["intensity"][1]) == INTENSITY_KEYS
    assert set(case["objects"]) == {"1", "2", "3", "4", "union"}
    assert all(set(o) == OBJECT_KEYS for o in case["objects"].values())
    assert set(fp["summary"]) == {
        "median_spacing", "median_shape", "median_shape_after_crop", "spacing_p10", "anisotropy",
        "median_nonzero_fraction_removed", "median_union_extent_mm", "p95_union_extent_mm",
        "median_union_bbox_fraction", "centroid_spread_mm"}
    json.dumps(fp)  # plain JSON types only


def test_objects_match_synthetic_truth(organs):
    ds, fp = organs
    truth = json.loads((ds.root / "synthetic_truth.json").read_text())["cases"]
    assert [c["name"] for c in fp["cases"]] == ["case_000", "case_001", "case_002"]  # training cases only
    for case in fp["cases"]:
        t = truth[case["name"]]
        np.testing.assert_allclose(case["spacing"], t["spacing"], rtol=1e-6)
        assert case["shape"] == t["shape"]
        half_voxel_mm = 0.5 * min(t["spacing"])
        for key, expected in t["labels"].items():
            got = case["objects"][key]
            assert got["voxels"] == expected["voxels"] > 0, key
            np.testing.assert_allclose(got["centroid_voxel"], expected["centroid_voxel"], atol=0.5)
            assert np.linalg.norm(np.subtract(got["centroid_world"], expected["centroid_world"])) < half_voxel_mm
        assert case["objects"]["3"]["components"] == 2  # two kidneys
        assert case["objects"]["1"]["components"] == 1
        # MR background is masked to 0, so cropping removes the corners around the body
        assert 0 < case["nonzero_fraction_removed"] < 1
    assert fp["summary"]["anisotropy"] >= 1.0


def test_intensity_matches_numpy_on_the_foreground(organs):
    ds, fp = organs
    case = ds.training_cases()[1]
    label, _ = read_image(case.label_file)
    for channel in range(2):
        image, _ = read_image(case.image_files[channel])
        values = image[label > 0].astype(np.float64)
        got = fp["cases"][1]["intensity"][channel]
        assert got["mean"] == pytest.approx(values.mean(), rel=1e-6)
        assert got["std"] == pytest.approx(values.std(), rel=1e-5)
        assert got["min"] == pytest.approx(values.min()) and got["max"] == pytest.approx(values.max())
        for key, q in (("p00_5", 0.5), ("p50", 50), ("p99_5", 99.5)):
            assert got[key] == pytest.approx(np.percentile(values, q), rel=1e-5)


def test_pooled_intensity_uses_a_bounded_sample(organs):
    ds, fp = organs
    # with room for every foreground voxel the pooled statistics are numpy's on all of them
    full = extract_fingerprint(ds, num_processes=1, progress=False, max_samples_per_case=10**9)
    values = []
    for case in ds.training_cases():
        label, _ = read_image(case.label_file)
        image, _ = read_image(case.image_files[0])
        values.append(image[label > 0])
    values = np.concatenate(values).astype(np.float64)
    assert full["intensity"][0]["mean"] == pytest.approx(values.mean(), rel=1e-6)
    assert full["intensity"][0]["p99_5"] == pytest.approx(np.percentile(values, 99.5), rel=1e-5)
    # a small sample: pooled statistics close to the full ones, per-case ones unchanged
    small = extract_fingerprint(ds, num_processes=1, progress=False, max_samples_per_case=300)
    assert small["cases"] == full["cases"]
    assert small["intensity"][0]["mean"] == pytest.approx(values.mean(), rel=0.05)
    assert small["intensity"][0] != full["intensity"][0]


def test_parallel_and_serial_give_the_same_fingerprint(organs):
    ds, serial = organs
    assert extract_fingerprint(ds, num_processes=2, progress=False) == serial


def test_hand_made_case_crop_box_and_objects(tmp_path):
    image = np.zeros((10, 12, 14), dtype=np.int16)
    image[2:8, 1:11, 3:12] = 40  # the scanned region; zero padding around it
    image[5, 5, 5] = 0  # an exact zero inside does not change the box
    label = np.zeros_like(image, dtype=np.uint8)
    label[3:5, 2:4, 4:6] = 1  # 8 voxels
    label[6, 8:10, 9:11] = 1  # 4 more, a second component
    label[3, 6, 7] = 2
    geometry = Geometry((2.0, 1.0, 0.5), (10.0, -5.0, 3.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1), image.shape)
    ds = _hand_made_dataset(tmp_path, {"hand": (image, label, geometry)})
    case = extract_fingerprint(ds, num_processes=1, progress=False)["cases"][0]
    assert case["crop_box"] == [[2, 8], [1, 11], [3, 12]]
    assert case["shape_after_crop"] == [6, 10, 9]
    assert case["nonzero_fraction_removed"] == pytest.approx(1 - 6 * 10 * 9 / (10 * 12 * 14))
    one = case["objects"]["1"]
    assert one["voxels"] == 12 and one["components"] == 2
    assert one["bbox_voxels"] == [[3, 7], [2, 10], [4, 11]]
    assert one["extent_mm"] == pytest.approx([4 * 2.0, 8 * 1.0, 7 * 0.5])
    expected = (np.argwhere(label[3:5, 2:4, 4:6] == 1).sum(0) + 8 * np.array([3, 2, 4])
                + np.argwhere(label[6:7, 8:10, 9:11] == 1).sum(0) + 4 * np.array([6, 8, 9])) / 12
    assert one["centroid_voxel"] == pytest.approx(expected)
    assert one["centroid_world"] == pytest.approx(geometry.index_to_world(expected))
    two = case["objects"]["2"]
    assert two["voxels"] == 1 and two["centroid_voxel"] == [3.0, 6.0, 7.0] and two["extent_mm"] == [2.0, 1.0, 0.5]
    # x is flipped by the direction: world x = 10 - 0.5 * 7
    assert two["centroid_world"] == pytest.approx([6.5, 1.0, 9.0])
    assert case["objects"]["union"]["voxels"] == 13 and case["objects"]["union"]["components"] == 3


def test_absent_label_and_no_foreground():
    image = np.ones((1, 4, 4, 4), dtype=np.float32)
    label = np.zeros((4, 4, 4), dtype=np.uint8)
    entry, samples = fingerprint_case("empty", image, label, Geometry.identity((4, 4, 4)), [0, 1])
    assert entry["objects"]["1"] == {"voxels": 0, "extent_mm": None, "bbox_voxels": None, "centroid_world": None,
                                     "centroid_voxel": None, "components": 0}
    assert entry["intensity"][0]["mean"] is None and samples.shape == (1, 0)
    summary = summarize_cases([entry])
    assert summary["median_union_extent_mm"] is None and summary["centroid_spread_mm"] is None


def test_summary_by_hand():
    def entry(spacing, shape, crop_shape, centroid, extent, bbox):
        union = {"voxels": 5, "extent_mm": extent, "bbox_voxels": bbox, "centroid_voxel": centroid}
        return {"spacing": spacing, "shape": shape, "shape_after_crop": crop_shape,
                "nonzero_fraction_removed": 1 - np.prod(crop_shape) / np.prod(shape), "objects": {"union": union}}

    cases = [entry([5.0, 1.0, 1.0], [10, 100, 100], [10, 50, 100], [2, 10, 10], [10.0, 20.0, 30.0],
                   [[0, 5], [0, 10], [0, 10]]),
             entry([3.0, 0.5, 0.5], [20, 100, 100], [20, 100, 100], [4, 40, 10], [20.0, 40.0, 60.0],
                   [[0, 10], [0, 10], [0, 10]])]
    s = summarize_cases(cases)
    assert s["median_spacing"] == [4.0, 0.75, 0.75]
    assert s["anisotropy"] == pytest.approx(4.0 / 0.75)
    assert s["median_shape"] == [15.0, 100.0, 100.0] and s["median_shape_after_crop"] == [15.0, 75.0, 100.0]
    assert s["median_nonzero_fraction_removed"] == pytest.approx(0.25)
    assert s["median_union_extent_mm"] == [15.0, 30.0, 45.0]
    assert s["median_union_bbox_fraction"] == pytest.approx((500 / 100000 + 1000 / 200000) / 2)
    # positions in the image: [10, 10, 10] and [12, 20, 5] mm; std of two values = half their distance
    assert s["centroid_spread_mm"] == pytest.approx([1.0, 5.0, 2.5])
    assert s["spacing_p10"] == pytest.approx([3.2, 0.55, 0.55])


def test_bad_labels_are_reported_with_the_file(tmp_path):
    image = np.full((4, 5, 6), 10, dtype=np.int16)
    label = np.zeros((4, 5, 6), dtype=np.uint8)
    label[1, 1, 1] = 7
    ds = _hand_made_dataset(tmp_path, {"bad": (image, label, Geometry.identity(image.shape))})
    with pytest.raises(InputError, match=r"labels.*bad\.nii\.gz.*\[7\] are not declared"):
        extract_fingerprint(ds, num_processes=1, progress=False)


def test_save_and_load(folders, organs):
    _, fp = organs
    with pytest.raises(InputError, match="no fingerprint yet"):
        load_fingerprint("Dataset960_Organs")
    path = save_fingerprint(fp)
    assert path == folders / "preprocessed" / "Dataset960_Organs" / "fingerprint.json"
    assert load_fingerprint(960) == fp and load_fingerprint("Dataset960_Organs") == fp
    path.write_text("{}")
    with pytest.raises(InputError, match="lacks dataset_name"):
        load_fingerprint(960)
