import numpy as np
import torch

from helpers.fake_preprocessed import write_fake_dataset
from segforge.data.augmentation import (
    AugmentationSettings,
    is_anisotropic,
    sample_region_size,
    training_transforms,
    validation_transforms,
)
from segforge.data.loader import TrainingBatches, ValidationBatches, close_loader, make_loader, worker_seeds
from segforge.data.patch_sampler import CaseStore, PatchSampler


def test_region_size_covers_rotation_and_zoom():
    s = AugmentationSettings()
    assert sample_region_size((16, 16), AugmentationSettings(p_rotation=0, p_scale=0)) == [16, 16]
    region2d = sample_region_size((16, 16), s)
    assert region2d[0] >= int(16 * np.sqrt(2) * 1.4)  # 45 degrees is inside +-180, zoom-out 1.4
    aniso = sample_region_size((4, 32, 32), s)
    assert is_anisotropic((4, 32, 32)) and aniso[0] == 4 and aniso[1] > 32  # z untouched, plane rotated


def test_settings_are_one_plain_dict():
    d = AugmentationSettings().to_dict()
    assert d["p_rotation"] == 0.2 and d["scale"] == [0.7, 1.4] and "why" in d


def _batch(shape, seed=0):
    rng = np.random.RandomState(seed)
    seg = (rng.uniform(size=(2, 1) + shape) > 0.7).astype(np.int16)
    return {"data": rng.normal(size=(2, 1) + shape).astype(np.float32), "seg": seg, "keys": ["a", "b"]}


def test_training_pipeline_crops_to_patch_and_keeps_labels_integral():
    for patch in [(8, 12, 12), (3, 16, 16), (16, 16)]:
        region = tuple(sample_region_size(patch, AugmentationSettings()))
        np.random.seed(0)
        out = training_transforms(patch)(**_batch(region))
        assert out["data"].shape == (2, 1) + patch and out["data"].dtype == np.float32
        assert out["target"].shape == (2, 1) + patch and out["target"].dtype == np.int16
        assert set(np.unique(out["target"]).tolist()) <= {0, 1}


def test_validation_pipeline_is_identity():
    b = _batch((4, 6, 6))
    out = validation_transforms()(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in b.items()})
    np.testing.assert_array_equal(out["data"], b["data"])
    np.testing.assert_array_equal(out["target"], b["seg"])


def test_validation_batches_repeat_and_workers_keep_order(tmp_path):
    folder = write_fake_dataset(tmp_path, n_cases=2)
    sampler = PatchSampler(CaseStore(folder / "3d_fullres"), ["case_000", "case_001"], (8, 8, 8), batch_size=2)
    local = make_loader(ValidationBatches(sampler, 3, seed=5), validation_transforms(), 0)
    first = [next(local)["data"] for _ in range(6)]
    assert isinstance(first[0], torch.Tensor) and first[0].shape == (2, 1, 8, 8, 8)
    for a, b in zip(first[:3], first[3:]):
        torch.testing.assert_close(a, b)  # each epoch sees the same 3 batches
    workers = make_loader(ValidationBatches(sampler, 3, seed=5, num_workers=2), validation_transforms(), 2,
                          seeds=worker_seeds(1, 0, 2))
    try:
        for expected in first[:4]:
            torch.testing.assert_close(next(workers)["data"], expected)
    finally:
        close_loader(workers)


def test_seeded_training_workers_are_reproducible(tmp_path):
    folder = write_fake_dataset(tmp_path, n_cases=2)
    sampler = PatchSampler(CaseStore(folder / "3d_fullres"), ["case_000", "case_001"], (8, 8, 8), batch_size=2)
    runs = []
    for _ in range(2):
        loader = make_loader(TrainingBatches(sampler), validation_transforms(), 1, seeds=worker_seeds(7, 0, 1))
        try:
            runs.append([next(loader)["data"] for _ in range(3)])
        finally:
            close_loader(loader)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b)
    assert worker_seeds(7, 0, 2) != worker_seeds(7, 3, 2)


class _PythonRandomDraws:
    """Batches holding a draw of Python's ``random`` (what batchgenerators' noise std comes from)."""

    def __next__(self):
        import random

        return {"data": np.full((1, 1, 2), random.random(), np.float32), "target": np.zeros((1, 1, 2), np.int16)}

    def __iter__(self):
        return self


def test_workers_draw_distinct_reproducible_python_random_streams():
    runs = []
    for _ in range(2):
        loader = make_loader(_PythonRandomDraws(), None, 2, seeds=worker_seeds(5, 0, 2))
        try:
            runs.append([float(next(loader)["data"][0, 0, 0]) for _ in range(4)])  # workers 0, 1, 0, 1
        finally:
            close_loader(loader)
    assert runs[0] == runs[1]  # seeded: the same draws again
    assert len(set(runs[0])) == 4  # not the stream every forked worker inherited
