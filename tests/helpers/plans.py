"""Tiny plans built in code: a few-stage U-Net over small patches, trainable on a CPU in seconds."""

from __future__ import annotations

from segforge.networks.topology import NetworkTopology
from segforge.planning.plans import ChannelNormalization, Configuration, Plans, ResamplingSettings

__all__ = ["TINY_DATASET", "tiny_topology", "tiny_configuration", "tiny_plans"]

TINY_DATASET = "Dataset999_Tiny"


def tiny_topology(dims: int = 3, features=(4, 8), deep_supervision: bool = True, **options) -> NetworkTopology:
    """``len(features)`` stages of 3x3(x3) convolutions, each after the first pooling by 2."""
    n = len(features)
    return NetworkTopology(features_per_stage=list(features), kernel_sizes=[[3] * dims] * n,
                           strides=[[1] * dims] + [[2] * dims] * (n - 1), deep_supervision=deep_supervision,
                           **options)


def tiny_configuration(name: str = "3d_fullres", patch=(8, 16, 16), features=(4, 8), spacing=(1.0, 1.0, 1.0),
                       batch_size: int = 2, channels: int = 1, kind: str = "segmentation",
                       median_shape=(20, 40, 40), **fields) -> Configuration:
    """A configuration of ``kind`` with a tiny U-Net (``len(patch)`` = 2 makes it 2D)."""
    return Configuration(name=name, kind=kind, spacing=list(spacing), patch_size=list(patch), batch_size=batch_size,
                         network=tiny_topology(len(patch), features), resampling=ResamplingSettings(),
                         normalization=[ChannelNormalization("zscore") for _ in range(channels)],
                         median_shape=list(median_shape), **fields)


def tiny_plans(*configurations: Configuration, labels: dict | None = None, channels: int = 1,
               dataset: str = TINY_DATASET, default: str | None = None) -> Plans:
    """Plans holding ``configurations`` (default: one tiny ``3d_fullres``); labels background + one class."""
    configurations = configurations or (tiny_configuration(channels=channels),)
    return Plans(dataset_name=dataset, channel_names={str(c): "MR" for c in range(channels)},
                 labels=labels or {"background": 0, "target": 1},
                 configurations={c.name: c for c in configurations},
                 default_configuration=default or configurations[0].name, gpu_memory_gb=1.0)
