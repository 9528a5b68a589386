import json

import numpy as np
import pytest
import torch

from segforge.training.cascade_segmenter import CascadePatchSampler, CascadeSegmentationTrainer, crop_jitter
from segforge.cascade.grids import case_centroid_voxel
from segforge.data import CaseStore
from segforge.training.options import TrainingOptions

from helpers.cascade_dataset import make_cascade_dataset


@pytest.fixture
def dataset(tmp_path):
    torch.set_num_threads(1)
    plans = make_cascade_dataset(tmp_path / "preprocessed", n_cases=6)
    return tmp_path, plans


def test_patches_stay_in_the_crop_around_the_centroid(dataset):
    root, plans = dataset
    folder = root / "preprocessed" / plans.dataset_name / "cascade_fullres"
    store = CaseStore(folder)
    cases = ["case_000", "case_001", "case_002"]
    sampler = CascadePatchSampler(store, cases, [16, 16, 16], 2, [24, 24, 24], [0.0, 0.0, 0.0])
    rng = np.random.RandomState(0)
    for _ in range(40):
        case = cases[rng.randint(3)]
        centre = case_centroid_voxel(store.properties(case))
        force = rng.uniform() < 0.5
        lower = sampler.choose_lower_corner(case, np.array([64, 64, 64]), store.properties(case) if force else None, rng)
        box_lo = np.floor(centre + 0.5 - 12).astype(int)
        assert np.all(lower >= box_lo) and np.all(lower + 16 <= box_lo + 24), (lower, box_lo)
    # with jitter the boxes move, by about the asked spread
    sampler = CascadePatchSampler(store, cases, [16, 16, 16], 2, [24, 24, 24], [3.0, 3.0, 3.0])
    centre = case_centroid_voxel(store.properties("case_000"))
    shifts = np.array([sampler.crop_box("case_000", (64, 64, 64), rng)[:, 0] + 12 - centre for _ in range(300)])
    assert 2.0 < shifts.std(axis=0).mean() < 4.0


def test_jitter_comes_from_the_locator_when_measured(dataset):
    root, plans = dataset
    config = plans.configurations["cascade_fullres"]
    planned = crop_jitter(plans, config, 0)
    assert planned["source"].startswith("plans")
    np.testing.assert_allclose(planned["std_zyx_mm"], [2.0 / np.sqrt(3)] * 3)
    fold = root / "results" / plans.dataset_name / "LocatorTrainer__locator" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "locator_validation.json").write_text(json.dumps({"centroid_error": {"rms_zyx_mm": [1.0, 2.0, 3.0]}}))
    measured = crop_jitter(plans, config, 0)
    assert measured["std_zyx_mm"] == [1.0, 2.0, 3.0] and "locator_validation.json" in measured["source"]
    assert crop_jitter(plans, config, 1)["source"].startswith("plans")  # other folds keep the planned value
    (fold / "locator_validation.json").write_text(json.dumps({"centroid_error": {"rms_zyx_mm": [1.0, 20.0, 3.0]}}))
    capped = crop_jitter(plans, config, 0)
    assert capped["std_zyx_mm"] == [1.0, 8.0, 3.0] and "capped" in capped["why"]  # crop 32 voxels of 1 mm


def test_short_training_run(dataset):
    root, plans = dataset
    options = TrainingOptions(epochs=1, iters_per_epoch=1, val_iters=1, num_workers=0, progress_bar=False)
    out = CascadeSegmentationTrainer(plans, "cascade_fullres", 0, device="cpu", options=options, log=lambda m: None).run()
    assert out.parent.name == "CascadeSegmentationTrainer__cascade_fullres"
    assert (out / "checkpoint_final.pt").is_file()
    assert json.loads((out / "crop_jitter.json").read_text())["crop_size"] == [32, 32, 32]


def test_refuses_a_configuration_without_cascade(dataset):
    from segforge.errors import InputError

    _, plans = dataset
    plans.configurations["cascade_fullres"].cascade = None
    with pytest.raises(InputError, match="no cascade settings"):
        CascadeSegmentationTrainer(plans, "cascade_fullres", 0, device="cpu")
