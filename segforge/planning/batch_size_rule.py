"""Batch size: as large as memory allows for small patches, within two limits.

* at least ``MIN_BATCH`` (2: instance norm and the foreground oversampling need >1 sample);
* at most the batch whose patches cover ``DATASET_FRACTION`` (5 %) of the dataset's voxels
  at the configuration's spacing (larger batches on small datasets overfit);
* at most ``MAX_BATCH_3D`` (16) / ``MAX_BATCH_2D`` (64): beyond that, more iterations
  help more than larger batches.
"""

from __future__ import annotations

import math

__all__ = ["MIN_BATCH", "MAX_BATCH_3D", "MAX_BATCH_2D", "DATASET_FRACTION", "choose_batch_size"]

MIN_BATCH = 2
MAX_BATCH_3D = 16
MAX_BATCH_2D = 64
DATASET_FRACTION = 0.05


def choose_batch_size(
    sample_bytes: int, budget_bytes: int, patch_size, dataset_voxels: int, dims: int
) -> tuple[int, str]:
    """``(batch, why)`` for one sample's memory estimate ``sample_bytes``."""
    by_memory = max(1, budget_bytes // max(sample_bytes, 1))
    cap = MAX_BATCH_3D if dims == 3 else MAX_BATCH_2D
    patch_voxels = math.prod(int(p) for p in patch_size)
    by_dataset = int(DATASET_FRACTION * dataset_voxels // patch_voxels)
    batch = max(MIN_BATCH, min(by_memory, cap, by_dataset))
    why = (
        f"memory allows {by_memory}, 5% of the dataset's {dataset_voxels} voxels allows {by_dataset}, "
        f"cap {cap} for {dims}d, minimum {MIN_BATCH} -> {batch}"
    )
    return int(batch), why
