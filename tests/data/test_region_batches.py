"""The loader side of ``--augment-on gpu``: parameters first, only the source boxes read, compact dtypes."""

import dataclasses

import numpy as np
import torch

from helpers.fake_preprocessed import write_fake_dataset

from segforge.data.augmentation import AugmentationSettings, sample_region_size
from segforge.data.batch_augmentation import BatchAugmentation, unpack_boxes
from segforge.data.loader import close_loader, make_loader, worker_seeds
from segforge.data.patch_sampler import CaseStore, PatchSampler
from segforge.data.region_batches import RegionBatches, label_dtype

CASES = ["case_000", "case_001", "case_002"]
NOTHING = AugmentationSettings(p_rotation=0, p_scale=0, p_elastic=0, p_noise=0, p_blur=0, p_brightness=0,
                               p_contrast=0, p_low_resolution=0, p_gamma=0, p_gamma_inverted=0, mirror=False)


def _sampler(tmp_path, patch=(8, 16, 16), batch_size=3):
    folder = write_fake_dataset(tmp_path, n_cases=3)
    return PatchSampler(CaseStore(folder / "3d_fullres"), CASES, patch, batch_size)


def test_unaugmented_boxes_are_the_patches_in_float16_and_uint8(tmp_path):
    sampler = _sampler(tmp_path)
    batches = RegionBatches(sampler, BatchAugmentation((8, 16, 16), NOTHING), channels=1)
    item = batches.sample_batch(np.random.RandomState(4))
    plain = sampler.sample_batch(np.random.RandomState(4))  # the same cases and places: the same draws come first
    assert item["data"].dtype == np.float16 and item["target"].dtype == np.uint8
    assert item["box_sizes"].tolist() == [[8, 16, 16]] * 3 and item["keys"] == plain["keys"]
    boxes = unpack_boxes(torch.from_numpy(item["data"]), item["box_sizes"], 1)
    labels = unpack_boxes(torch.from_numpy(item["target"]), item["box_sizes"], 1)
    for b in range(3):
        assert np.array_equal(boxes[b].numpy(), plain["data"][b].astype(np.float16))
        assert np.array_equal(labels[b].numpy(), plain["seg"][b])
    data, target = batches.augmentation(boxes, labels, item["augmentation"])
    assert torch.equal(data, torch.from_numpy(plain["data"].astype(np.float16).astype(np.float32)))
    assert torch.equal(target.long(), torch.from_numpy(plain["seg"]).long())
    assert label_dtype(3) == np.uint8 and label_dtype(300) == np.int16


def test_boxes_are_tight_and_come_through_workers_reproducibly(tmp_path):
    patch = (8, 16, 16)
    sampler = _sampler(tmp_path, patch, batch_size=4)
    settings = dataclasses.replace(AugmentationSettings(), p_rotation=0.5, p_scale=0.5)
    batches = RegionBatches(sampler, BatchAugmentation(patch, settings), channels=1)
    volumes = [int(np.prod(s)) for _ in range(10) for s in batches.sample_batch(np.random)["box_sizes"]]
    region = int(np.prod(sample_region_size(patch, settings)))
    assert min(volumes) < int(np.prod(patch)) and max(volumes) <= region  # zooming in reads less than the patch
    assert np.mean(volumes) < 0.5 * region  # what the CPU pipeline reads for every sample
    runs = []
    for _ in range(2):
        loader = make_loader(batches, None, 1, seeds=worker_seeds(3, 0, 1))
        try:
            runs.append([next(loader) for _ in range(2)])
        finally:
            close_loader(loader)
    for a, b in zip(*runs):
        assert torch.equal(a["data"], b["data"]) and a["augmentation"].sample(0) == b["augmentation"].sample(0)
