import numpy as np
import pytest

from helpers.fake_preprocessed import write_fake_dataset
from segforge.data.patch_sampler import CaseStore, PatchSampler, list_preprocessed_cases, read_region
from segforge.errors import InputError


def test_read_region_pads_with_zeros_outside():
    a = np.arange(1, 1 + 4 * 5, dtype=np.float32).reshape(1, 4, 5)
    out = read_region(a, np.array([-1, 3]), np.array([3, 4]))
    assert out.shape == (1, 3, 4)
    assert np.all(out[:, 0] == 0)  # row -1
    assert np.all(out[:, :, 2:] == 0)  # columns 5, 6
    np.testing.assert_array_equal(out[0, 1:, :2], a[0, 0:2, 3:5])
    assert np.all(read_region(a, np.array([10, 10]), np.array([2, 2])) == 0)


@pytest.fixture()
def store(tmp_path):
    folder = write_fake_dataset(tmp_path, n_cases=3)
    return CaseStore(folder / "3d_fullres")


def test_cases_are_listed_and_memory_mapped(store):
    cases = list_preprocessed_cases(store.folder)
    assert cases == ["case_000", "case_001", "case_002"]
    assert isinstance(store.data("case_000"), np.memmap)
    assert store.seg("case_000").dtype == np.int16
    with pytest.raises(InputError, match="not found"):
        list_preprocessed_cases(store.folder / "missing")


def test_3d_batch_shapes_and_foreground_oversampling(store):
    cases = list_preprocessed_cases(store.folder)
    always_fg = PatchSampler(store, cases, (8, 8, 8), batch_size=4, oversample_foreground=1.0)
    rng = np.random.RandomState(0)
    batch = always_fg.sample_batch(rng)
    assert batch["data"].shape == (4, 1, 8, 8, 8) and batch["data"].dtype == np.float32
    assert batch["seg"].shape == (4, 1, 8, 8, 8) and batch["seg"].dtype == np.int16
    for _ in range(5):  # every forced patch holds foreground
        assert all(s.max() > 0 for s in always_fg.sample_batch(rng)["seg"])
    never = PatchSampler(store, cases, (4, 4, 4), batch_size=8, oversample_foreground=0.0)
    fg_fraction = np.mean([s.max() > 0 for _ in range(10) for s in never.sample_batch(rng)["seg"]])
    assert fg_fraction < 0.6  # random 4^3 patches in a 20x40x40 image mostly miss the small objects


def test_patch_matches_image_at_its_corner(store):
    sampler = PatchSampler(store, ["case_001"], (8, 8, 8), batch_size=1, oversample_foreground=0.0)
    rng = np.random.RandomState(3)
    lower = sampler.choose_lower_corner("case_001", np.array([20, 40, 40]), None, np.random.RandomState(3))
    d, s = sampler.sample_patch("case_001", False, rng)
    z, y, x = lower
    np.testing.assert_array_equal(d, store.data("case_001")[:, z:z + 8, y:y + 8, x:x + 8])
    np.testing.assert_array_equal(s[0], store.seg("case_001")[z:z + 8, y:y + 8, x:x + 8])


def test_larger_sample_region_is_centred_on_the_patch(store):
    sampler = PatchSampler(store, ["case_000"], (8, 8, 8), batch_size=2, sample_size=(12, 16, 16),
                           oversample_foreground=1.0)
    batch = sampler.sample_batch(np.random.RandomState(1))
    assert batch["data"].shape == (2, 1, 12, 16, 16)
    centre = batch["seg"][:, 0, 2:10, 4:12, 4:12]  # the final patch inside the region
    assert all(c.max() > 0 for c in centre)
    with pytest.raises(ValueError, match="sample_size"):
        PatchSampler(store, ["case_000"], (8, 8, 8), batch_size=1, sample_size=(4, 8, 8))


def test_2d_patches_come_from_one_slice(store):
    sampler = PatchSampler(store, ["case_002"], (16, 16), batch_size=3, oversample_foreground=1.0)
    batch = sampler.sample_batch(np.random.RandomState(0))
    assert batch["data"].shape == (3, 1, 16, 16) and batch["seg"].shape == (3, 1, 16, 16)
    assert all(s.max() > 0 for s in batch["seg"])
