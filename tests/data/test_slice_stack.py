"""2.5D input stacking: the neighbours of every slice, the edge slice repeated at the borders, in the
same channel order in training patches and in prediction."""

import numpy as np
import pytest
import torch

from segforge.data.patch_sampler import CaseStore, PatchSampler
from segforge.data.slice_stack import adjacent_slice_indices, stack_adjacent_slices


def test_indices_repeat_the_edge_slice_beyond_the_volume():
    assert adjacent_slice_indices(0, 5, 3).tolist() == [0, 0, 1]
    assert adjacent_slice_indices(2, 5, 3).tolist() == [1, 2, 3]
    assert adjacent_slice_indices(4, 5, 3).tolist() == [3, 4, 4]
    assert adjacent_slice_indices(1, 5, 5).tolist() == [0, 0, 1, 2, 3]
    assert adjacent_slice_indices(0, 1, 3).tolist() == [0, 0, 0]
    assert adjacent_slice_indices(np.array([0, 4]), 5, 3).tolist() == [[0, 0, 1], [3, 4, 4]]
    with pytest.raises(ValueError, match="odd"):
        adjacent_slice_indices(0, 5, 2)


def test_stack_by_hand_numpy_and_torch_alike():
    # channel c of slice z holds 100 c + z
    volume = (100 * np.arange(2)[:, None, None, None] + np.arange(4)[None, :, None, None]
              + np.zeros((2, 4, 2, 3))).astype(np.float32)
    stacked = stack_adjacent_slices(volume, 3)
    assert stacked.shape == (6, 4, 2, 3)
    # channel c * 3 + j at slice z = channel c of slice clamp(z + j - 1)
    expected = [[0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 3], [100, 100, 101, 102], [100, 101, 102, 103],
                [101, 102, 103, 103]]
    assert stacked[:, :, 0, 0].tolist() == expected
    assert torch.equal(stack_adjacent_slices(torch.from_numpy(volume), 3), torch.from_numpy(stacked))
    assert stack_adjacent_slices(volume, 1) is volume


def write_case(folder, n_slices=4):
    """Image channel c of slice z = 100 c + z; labels = z + 1 everywhere (a patch's labels say its slice)."""
    import json

    shape = (n_slices, 16, 16)
    image = (100 * np.arange(2)[:, None, None, None] + np.arange(n_slices)[None, :, None, None]
             + np.zeros((2, *shape))).astype(np.float32)
    seg = (np.arange(n_slices)[:, None, None] + 1 + np.zeros(shape)).astype(np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "c.npy", image)
    np.save(folder / "c_seg.npy", seg)
    (folder / "c.json").write_text(json.dumps({"class_locations": {}}))


def test_training_patches_stack_the_same_slices_as_prediction(tmp_path):
    write_case(tmp_path)
    sampler = PatchSampler(CaseStore(tmp_path), ["c"], (16, 16), batch_size=40, input_slices=3)
    batch = sampler.sample_batch(np.random.RandomState(0))
    assert batch["data"].shape == (40, 6, 16, 16) and batch["seg"].shape == (40, 1, 16, 16)
    whole = stack_adjacent_slices(np.load(tmp_path / "c.npy"), 3)
    seen = set()
    for data, seg in zip(batch["data"], batch["seg"]):
        z = int(seg[0, 0, 0]) - 1  # the predicted slice
        seen.add(z)
        np.testing.assert_array_equal(data, whole[:, z])
    assert seen == {0, 1, 2, 3}  # both borders were drawn


def test_stacking_is_only_for_2d_patches(tmp_path):
    write_case(tmp_path)
    with pytest.raises(ValueError, match="stacks slices for 2D patches"):
        PatchSampler(CaseStore(tmp_path), ["c"], (4, 16, 16), batch_size=1, input_slices=3)


def test_gpu_augmentation_boxes_stack_the_same_slices(tmp_path):
    """--augment-on gpu reads source boxes through PatchSampler.read: the stacked channels, unaugmented = the patch."""
    from segforge.data.augmentation import AugmentationSettings
    from segforge.data.batch_augmentation import BatchAugmentation, unpack_boxes
    from segforge.data.region_batches import RegionBatches

    write_case(tmp_path)
    nothing = AugmentationSettings(p_rotation=0, p_scale=0, p_elastic=0, p_noise=0, p_blur=0, p_brightness=0,
                                   p_contrast=0, p_low_resolution=0, p_gamma=0, p_gamma_inverted=0, mirror=False)
    sampler = PatchSampler(CaseStore(tmp_path), ["c"], (16, 16), batch_size=12, input_slices=3)
    batches = RegionBatches(sampler, BatchAugmentation((16, 16), nothing), channels=6)
    item = batches.sample_batch(np.random.RandomState(1))
    boxes = unpack_boxes(torch.from_numpy(item["data"]), item["box_sizes"], 6)
    labels = unpack_boxes(torch.from_numpy(item["target"]), item["box_sizes"], 1)
    data, target = batches.augmentation(boxes, labels, item["augmentation"])
    assert data.shape == (12, 6, 16, 16)
    whole = stack_adjacent_slices(np.load(tmp_path / "c.npy"), 3)
    seen = set()
    for d, t in zip(data.numpy(), target.numpy()):
        z = int(t[0, 0, 0]) - 1
        seen.add(z)
        np.testing.assert_array_equal(d, whole[:, z])
    assert {0, 3} <= seen
