"""Training batches for augmentation on the device: parameters first, then only the voxels they read.

For ``--augment-on gpu`` a loader worker does little: per sample it picks a case and a patch
location (:class:`~segforge.data.patch_sampler.PatchSampler`), draws the batch's augmentation
(:meth:`BatchAugmentation.draw <segforge.data.batch_augmentation.BatchAugmentation.draw>`),
and reads each sample's source box — the patch itself when the sample is not rotated, scaled
or deformed, else the box around the transformed patch — instead of the region any rotation
and zoom could need (:func:`~segforge.data.augmentation.sample_region_size`: 13x the patch
for nnU-Net's 128^3 plan). The boxes travel concatenated in one flat buffer per batch, images
as float16 (z-scored intensities keep 3 significant digits), labels as uint8 (int16 beyond
255 labels). Items::

    {"data": (sum C * box voxels,) float16, "target": (sum box voxels,) uint8,
     "box_sizes": (B, D) int64, "augmentation": AugmentationParameters, "keys": [case, ...]}

With a sampler of ``soft_classes`` K (pseudo-labels with probabilities) each label box has
``1 + K`` channels, the labels then :meth:`PatchSampler.read_soft`'s probabilities (give
``labels=np.float16``: labels stay exact below 2048); the spatial transform moves all of them
alike (nearest neighbour).

:func:`segforge.data.batch_augmentation.unpack_boxes` splits the buffers on the device.
"""

from __future__ import annotations

import numpy as np

from segforge.data.batch_augmentation import BatchAugmentation
from segforge.data.loader import RandomBatches
from segforge.data.patch_sampler import PatchSampler

__all__ = ["RegionBatches", "label_dtype"]


def label_dtype(num_classes: int):
    """uint8 while every label fits, else int16."""
    return np.uint8 if num_classes <= 256 else np.int16


class RegionBatches(RandomBatches):
    """Endless batches of source boxes and their drawn parameters.

    ``sampler`` must sample regions of exactly the patch size (its lower corners are the patches').
    Draws from the process-global ``np.random`` like :class:`~segforge.data.loader.TrainingBatches`.
    """

    def __init__(self, sampler: PatchSampler, augmentation: BatchAugmentation, channels: int,
                 labels=np.uint8, images=np.float16):
        if list(sampler.sample_size) != list(sampler.patch_size):
            raise ValueError("RegionBatches needs a sampler of patch-sized regions (sample_size = patch_size)")
        if list(sampler.patch_size) != list(augmentation.patch_size):
            raise ValueError(f"sampler patch {list(sampler.patch_size)} != augmentation patch {augmentation.patch_size}")
        self.sampler = sampler
        self.augmentation = augmentation
        self.channels = int(channels)
        self.labels = labels
        self.images = images

    def sample_batch(self, rng) -> dict:
        s = self.sampler
        picks = []
        for _ in range(s.batch_size):
            case = s.choose_case(rng)  # uniform, or by the sampler's case weights (--pseudo-labels)
            force_fg = rng.uniform() < s.oversample_foreground
            picks.append((case, *s.choose_location(case, force_fg, rng)))
        params = self.augmentation.draw(rng, s.batch_size, self.channels)
        data, target, sizes = [], [], []
        for b, (case, z, patch_lower) in enumerate(picks):
            lower, size = self.augmentation.source_box(params, b)
            d, t = s.read(case, z, patch_lower + lower, size, image_dtype=self.images, label_dtype=self.labels)
            if s.soft_classes:  # labels then class probabilities (pseudo-labels), one box of 1 + K channels
                t = np.concatenate([t, s.read_soft(case, z, patch_lower + lower, size, t[0]).astype(self.labels)])
            data.append(d.ravel())
            target.append(t.ravel())
            sizes.append(size)
        return {"data": np.concatenate(data), "target": np.concatenate(target),
                "box_sizes": np.asarray(sizes, dtype=np.int64), "augmentation": params,
                "keys": [p[0] for p in picks]}
