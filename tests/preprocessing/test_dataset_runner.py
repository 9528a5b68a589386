import json
import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from preprocessing_cases import make_configuration

from segforge.errors import DatasetProblems, InputError
from segforge.io import Geometry, write_image
from segforge.planning.plans import Plans
from segforge.preprocessing import preprocess_dataset, preprocessing_version
from segforge.preprocessing.dataset_runner import TMP_PREFIX

DATASET = "Dataset901_Tiny"
CASES = ["case_000", "case_001", "case_002"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _write_raw(root, n_cases=3, bad_case: str | None = None):
    folder = root / DATASET
    geometry = Geometry((3.0, 0.8, 0.8), (5.0, -2.0, 1.0), np.eye(3).ravel(), (8, 24, 24))
    rng = np.random.default_rng(0)
    for i in range(n_cases):
        name = f"case_{i:03d}"
        image = np.zeros(geometry.shape, np.float32)
        image[1:7, 2:22, 3:20] = rng.normal(50, 10, (6, 20, 17))
        label = np.zeros(geometry.shape, np.uint8)
        label[2:6, 6:16, 6:14 + i] = 1
        label[3:5, 8:12, 8:11] = 2
        write_image(image, geometry, folder / "imagesTr" / f"{name}_0000.nii.gz")
        if name == bad_case:
            label = label[:, :-1]
            bad_geometry = Geometry(geometry.spacing, geometry.origin, geometry.direction, label.shape)
            write_image(label, bad_geometry, folder / "labelsTr" / f"{name}.nii.gz")
        else:
            write_image(label, geometry, folder / "labelsTr" / f"{name}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": n_cases, "file_ending": ".nii.gz",
    }))
    return folder


def _plans(**changes) -> Plans:
    configuration = replace(make_configuration(spacing=(3.0, 1.0, 1.0)), **changes)
    return Plans(DATASET, {"0": "MR"}, {"background": 0, "a": 1, "b": 2}, {"3d_fullres": configuration},
                 "3d_fullres", gpu_memory_gb=1.0)


@pytest.fixture
def env(folders):
    return folders


def _out(env):
    return env / "preprocessed" / DATASET / "3d_fullres"


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_writes_memory_mappable_cases_with_properties(env):
    _write_raw(env / "raw")
    plans = _plans()
    done = preprocess_dataset(901, plans, ["3d_fullres"], num_processes=1, progress=False)
    assert sorted(done["3d_fullres"]) == CASES
    out = _out(env)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{c}{suffix}" for c in CASES for suffix in (".npy", "_seg.npy", ".json"))
    data = np.load(out / "case_001.npy", mmap_mode="r", allow_pickle=False)
    seg = np.load(out / "case_001_seg.npy", mmap_mode="r", allow_pickle=False)
    props = json.loads((out / "case_001.json").read_text())
    assert data.dtype == np.float32 and seg.dtype == np.int16 and isinstance(data, np.memmap)
    assert data.shape[1:] == seg.shape == tuple(props["preprocessed_shape"])
    assert props["case"] == "case_001" and props["plans_version"] == plans.configuration().version()
    assert props["crop_box"] == [[1, 7], [2, 22], [3, 20]]
    assert set(props["class_locations"]) == {"1", "2"}


def test_resume_redoes_only_unfinished_cases_and_removes_temporaries(env):
    _write_raw(env / "raw")
    plans = _plans()
    preprocess_dataset(DATASET, plans, ["3d_fullres"], num_processes=1, progress=False)
    out = _out(env)
    (out / "case_001.json").unlink()  # killed after the arrays, before the JSON
    (out / "case_002.json").write_text('{"case": "case_002", "plans_ver')  # corrupt JSON
    stray = out / f"{TMP_PREFIX}deadbeef-case_000.npy"
    stray.write_bytes(b"half a file")
    before = _mtimes(out)
    done = preprocess_dataset(DATASET, plans, ["3d_fullres"], num_processes=1, progress=False)
    assert sorted(done["3d_fullres"]) == ["case_001", "case_002"]
    after = _mtimes(out)
    assert not any(name.startswith(TMP_PREFIX) for name in after)
    for name in ("case_000.npy", "case_000_seg.npy", "case_000.json"):
        assert after[name] == before[name]
    assert after["case_001.npy"] != before["case_001.npy"]
    json.loads((out / "case_002.json").read_text())
    assert preprocess_dataset(DATASET, plans, ["3d_fullres"], num_processes=1, progress=False) == {"3d_fullres": []}


def test_a_truncated_array_without_json_is_redone(env):
    _write_raw(env / "raw", n_cases=2)
    plans = _plans()
    preprocess_dataset(DATASET, plans, ["3d_fullres"], num_processes=1, progress=False)
    out = _out(env)
    good = np.load(out / "case_000.npy")
    (out / "case_000.json").unlink()
    (out / "case_000.npy").write_bytes((out / "case_000.npy").read_bytes()[:100])
    done = preprocess_dataset(DATASET, plans, ["3d_fullres"], num_processes=1, progress=False)
    assert done["3d_fullres"] == ["case_000"]
    np.testing.assert_array_equal(np.load(out / "case_000.npy"), good)
    (out / "case_001_seg.npy").unlink()  # JSON present but an array missing: not done either
    assert preprocess_dataset(DATASET, plans, ["3d_fullres"], num_processes=1, progress=False) == {
        "3d_fullres": ["case_001"]}


def test_changed_preprocessing_redoes_cases_but_training_settings_do_not(env):
    _write_raw(env / "raw", n_cases=2)
    preprocess_dataset(DATASET, _plans(), ["3d_fullres"], num_processes=1, progress=False)
    assert preprocess_dataset(DATASET, _plans(batch_size=7), ["3d_fullres"], num_processes=1,
                              progress=False) == {"3d_fullres": []}
    changed = _plans(spacing=[3.0, 1.2, 1.2])
    done = preprocess_dataset(DATASET, changed, ["3d_fullres"], num_processes=1, progress=False)
    assert sorted(done["3d_fullres"]) == ["case_000", "case_001"]
    props = json.loads((_out(env) / "case_000.json").read_text())
    assert props["preprocessing_version"] == preprocessing_version(changed.configuration())


def test_selected_cases_and_unknown_names(env):
    _write_raw(env / "raw")
    done = preprocess_dataset(DATASET, _plans(), ["3d_fullres"], num_processes=1, cases=["case_002"], progress=False)
    assert done == {"3d_fullres": ["case_002"]}
    with pytest.raises(InputError, match="no training case named case_404"):
        preprocess_dataset(DATASET, _plans(), ["3d_fullres"], cases=["case_404"], progress=False)


def test_a_bad_case_is_reported_after_the_others_are_written(env):
    _write_raw(env / "raw", bad_case="case_001")
    with pytest.raises(DatasetProblems) as info:
        preprocess_dataset(DATASET, _plans(), ["3d_fullres"], num_processes=1, progress=False)
    assert len(info.value.problems) == 1 and "case_001.nii.gz" in info.value.problems[0]
    assert "label grid differs" in info.value.problems[0]
    out = _out(env)
    assert (out / "case_000.json").exists() and (out / "case_002.json").exists()
    assert not (out / "case_001.json").exists()


def test_configurations_sharing_a_folder_must_preprocess_alike(env):
    _write_raw(env / "raw", n_cases=1)
    a = make_configuration(spacing=(3.0, 1.0, 1.0))
    b = replace(a, name="2d", patch_size=[32, 32], spacing=[3.0, 2.0, 2.0], data_identifier="3d_fullres")
    plans = Plans(DATASET, {"0": "MR"}, {"background": 0, "a": 1, "b": 2}, {"3d_fullres": a, "2d": b},
                  "3d_fullres", gpu_memory_gb=1.0)
    with pytest.raises(InputError, match="share the folder '3d_fullres'"):
        preprocess_dataset(DATASET, plans, ["3d_fullres", "2d"], progress=False)
    same = replace(b, spacing=list(a.spacing))
    plans.configurations["2d"] = same
    done = preprocess_dataset(DATASET, plans, ["3d_fullres", "2d"], num_processes=1, progress=False)
    assert done == {"3d_fullres": ["case_000"]}


def test_worker_pool_gives_the_same_arrays(env):
    _write_raw(env / "raw")
    done = preprocess_dataset(DATASET, _plans(), ["3d_fullres"], num_processes=2, progress=False)
    assert sorted(done["3d_fullres"]) == CASES
    out = _out(env)
    parallel = {c: np.load(out / f"{c}.npy") for c in CASES}
    for c in CASES:
        os.remove(out / f"{c}.json")
    preprocess_dataset(DATASET, _plans(), ["3d_fullres"], num_processes=1, progress=False)
    for c in CASES:
        np.testing.assert_array_equal(np.load(out / f"{c}.npy"), parallel[c])
